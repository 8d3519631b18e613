"""The PACS connection settings of :mod:`tools.pacs`: where the PACS is, how to log in, how far to trust it.

Built from the settings by ``agent.wiring.pacs_config``, which reads the credential from a file or an
environment variable; here it travels only inside a :class:`Secret`, whose repr and str hide it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tools.errors import SettingsError

MiB = 1024 * 1024


class Secret:
    """A credential. Its repr and str hide the value; only :meth:`reveal` gives it (to the HTTP session)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class PacsAuth:
    """HTTP basic (``username`` + ``secret`` password) or a bearer token (``secret``)."""

    kind: str                     # "basic" | "bearer"
    secret: Secret = field(repr=False)
    username: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("basic", "bearer"):
            raise SettingsError(f"PACS authentication must be basic or bearer, not {self.kind!r}")
        if self.kind == "basic" and not self.username:
            raise SettingsError("PACS basic authentication needs a user name (the secret is 'user:password')")
        if not self.secret.reveal():
            raise SettingsError("the PACS credential is empty")


@dataclass(frozen=True)
class PacsConfig:
    """Where the PACS is and how far to trust it. Built from the settings by ``agent.wiring.pacs_config``.

    ``url``: the DICOMweb root (e.g. ``https://pacs.example.org/dicom-web``); ``timeout_s``: connect and read
    limit per request, seconds; ``max_instances`` / ``max_series_bytes``: the largest series retrieved.
    """

    url: str
    auth: PacsAuth | None = None
    timeout_s: float = 30.0
    max_instances: int = 2000
    max_series_bytes: int = 512 * MiB

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError("the PACS URL must be http(s)://host[:port]/path of its DICOMweb root")
        if parts.username or parts.password:
            raise SettingsError("put PACS credentials in pacs_auth_file or pacs_auth_env, never in the URL")
        if not (self.timeout_s > 0 and self.max_instances > 0 and self.max_series_bytes > 0):
            raise SettingsError("PACS timeout and limits must be positive")

    @property
    def host(self) -> str:
        """The PACS by host and port only: what messages show."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
