"""Append-only audit log (JSONL) of every user action, without PHI, chained by HMAC under a key kept apart.

One JSON object per line. Each record carries ``seq``, ``prev_mac`` (the MAC of the record before it,
64 zeros for the first) and ``mac``: HMAC-SHA256, under the integrity key, of every other field
(:mod:`agent.integrity`). The anchor beside the key remembers how many records exist and the newest
one's MAC, so deleting the newest records, or the whole log, is detected too. Logs written before
the key existed (``hash``/``prev_hash``, unkeyed SHA-256) are verified as such, reported, and sealed
under the key by the next record.

What a record may hold: the action, the user name, the UTC time, the pseudonymous case id, model
names and versions, evidence ids, and ``details`` of scalars (counts, sizes, formats, SHA-256
hashes of free text via :func:`text_hash`). Never a question's text, a file name, a patient name
or any other identifier: the caller passes hashes, and :meth:`AuditLog.append` rejects values
that are not scalars or are longer than :data:`MAX_DETAIL_CHARS`.

Concurrent writers (several UI workers, the CLI) are serialised by a lock file beside the log;
:func:`verify` takes no lock and writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent.integrity import GENESIS, ChainedLog, IntegrityError, IntegrityKey, VerifyReport, now_utc
from tools.errors import InputError

if TYPE_CHECKING:
    from agent.settings import Settings

GENESIS_HASH = GENESIS
MAX_DETAIL_CHARS = 128
CHAIN = "audit"
ACTIONS = frozenset({
    "login", "login_failed", "logout", "case_new", "upload", "upload_rejected", "inspect", "classify", "search",
    "calculate", "answer", "summary", "export", "sign", "user_add", "user_remove", "ui_start", "audit_reset",
    "pacs_find", "pacs_open", "pacs_send",
})

__all__ = ["ACTIONS", "AuditError", "AuditLog", "VerifyReport", "text_hash", "verify"]


class AuditError(IntegrityError):
    """The audit log cannot be written or read, or fails its integrity check."""


def text_hash(text: str) -> str:
    """SHA-256 hex digest of free text (a question, a file name): lets an auditor match a
    disputed text to its record without the log ever holding the text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_details(details: Mapping[str, object]) -> dict[str, object]:
    clean: dict[str, object] = {}
    for key, value in details.items():
        if not isinstance(key, str) or len(key) > 64:
            raise InputError(f"audit detail key {key!r} is not a short string")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InputError(f"audit detail {key!r} must be a scalar (got {type(value).__name__}); "
                             "hash free text with text_hash()")
        if isinstance(value, str) and len(value) > MAX_DETAIL_CHARS:
            raise InputError(f"audit detail {key!r} is {len(value)} characters (limit {MAX_DETAIL_CHARS}); "
                             "free text must be hashed with text_hash(), never logged")
        clean[key] = value
    return clean


class AuditLog:
    """The audit log at ``path`` (normally ``settings.audit_log_path``), MACed under ``key``. Cheap to
    construct: build it with :meth:`from_settings` in entry points."""

    def __init__(self, path: Path, *, key: IntegrityKey, lock_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.key = key
        self._chain = ChainedLog(self.path, key, CHAIN, lock_timeout_s=lock_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(settings.audit_log_path, key=IntegrityKey(settings.integrity_key_file))

    def append(self, action: str, *, user: str | None, case_id: str | None = None,
               model_versions: Mapping[str, str] | None = None, evidence_ids: Iterable[str] = (),
               details: Mapping[str, object] | None = None) -> dict[str, object]:
        """Append one record and return it. ``user`` is the login name (``None``: anonymous loopback).
        Raises :class:`AuditError` when the log cannot be written or no longer matches its anchor
        (nothing is then appended: run ``radconsult audit verify``)."""
        if action not in ACTIONS:
            raise InputError(f"unknown audit action {action!r}; expected one of {sorted(ACTIONS)}")
        clean = _check_details(details or {})
        versions = {str(k): str(v) for k, v in (model_versions or {}).items()}
        body = {"time": now_utc(), "action": action, "user": user, "case_id": case_id,
                "model_versions": versions, "evidence_ids": [str(e) for e in evidence_ids], "details": clean}
        try:
            return self._chain.append(body)
        except AuditError:
            raise
        except IntegrityError as exc:
            raise AuditError(f"audit record not written: {exc}") from None

    def check_writable(self) -> None:
        """Fail now, with :class:`AuditError`, if an append would be refused (a log that no longer matches
        its anchor, a missing key, a read-only directory): call it before a change that must be audited."""
        try:
            self._chain.check_writable()
        except IntegrityError as exc:
            raise AuditError(f"nothing was changed, because the audit log cannot record it: {exc}") from None

    def records(self) -> list[dict[str, object]]:
        """Every record, oldest first (unverified: use :meth:`verify` for integrity)."""
        return self._chain.records()

    def verify(self) -> VerifyReport:
        """See :func:`verify`."""
        return self._chain.verify()

    def reset(self) -> tuple[Path | None, VerifyReport]:
        """Archive a log that fails verification (``<name>.broken-<UTC time>``) and start a new chain.
        The caller records an ``audit_reset`` record in the new chain (see ``radconsult audit reset``)."""
        return self._chain.reset()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (an archived log), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, key: IntegrityKey) -> VerifyReport:
    """Check every record's MAC, the chain of ``prev_mac``, consecutive ``seq`` numbers and the anchor
    beside the key. Detects an edited, forged, inserted, reordered or deleted record (the newest
    included), and a missing or emptied log after records existed. Read-only: takes no lock."""
    return AuditLog(path, key=key).verify()
