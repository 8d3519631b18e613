"""Clinician accounts for the UI: salted bcrypt hashes in ``settings.users_path`` (mode 0600).

The file is JSON ``{"users": {NAME: {"hash": "$2b$...", "created": ISO-8601}}}``. Writes are atomic
(temporary file + rename) under a lock, so the CLI and a running UI can share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
from filelock import FileLock, Timeout

from tools.errors import InputError, RadconsultError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, never silently truncated
BCRYPT_ROUNDS = 12


class UserStoreError(RadconsultError):
    """The users file cannot be read or written."""


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"invalid user name {name!r}: 1-64 characters, a letter first, then letters, "
                         "digits, '.', '_' or '-'")
    return name


def validate_password(password: str) -> bytes:
    raw = (password or "").encode("utf-8")
    if len(password or "") < MIN_PASSWORD_CHARS:
        raise InputError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise InputError(f"password too long: at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    return raw


class UserStore:
    """The users file. ``rounds`` is the bcrypt cost (2**rounds iterations; tests use 4)."""

    def __init__(self, path: Path, *, rounds: int = BCRYPT_ROUNDS) -> None:
        self.path = Path(path)
        self.rounds = rounds
        self._lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=10)
        self._dummy: bytes | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = data["users"]
            if not isinstance(users, dict):
                raise TypeError("users is not an object")
            return users
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise UserStoreError(f"users file {self.path} is unreadable: {exc}") from exc

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"users": users}, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, dict[str, str]]]:
        """The users, under the lock; what the block leaves in the dict is written back atomically.
        A read-only or full disk becomes a :class:`UserStoreError` that says what to do."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                users = self._read()
                yield users
                self._write(users)
        except Timeout:
            raise UserStoreError(f"the users file {self.path} is locked by another process; try again") from None
        except OSError as exc:
            import errno

            what = ("the disk is full: free space, then try again" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "make the data directory writable, or set RADCONSULT_DATA_DIR to a writable place")
            raise UserStoreError(f"cannot write the users file {self.path}: {exc.strerror or exc}; {what}") from None

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        """Create a user (or change the password with ``replace=True``)."""
        validate_name(name)
        raw = validate_password(password)
        hashed = bcrypt.hashpw(raw, bcrypt.gensalt(rounds=self.rounds)).decode("ascii")
        with self._writing() as users:
            if name in users and not replace:
                raise InputError(f"user {name!r} already exists (use --replace to set a new password)")
            users[name] = {"hash": hashed, "created": datetime.now(UTC).isoformat(timespec="seconds")}

    def remove(self, name: str) -> None:
        with self._writing() as users:
            if name not in users:
                raise InputError(f"no user {name!r}")
            del users[name]

    def names(self) -> list[str]:
        return sorted(self._read())

    def has_users(self) -> bool:
        return bool(self._read())

    def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            self._dummy = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(rounds=self.rounds))
        return self._dummy

    def verify(self, name: str, password: str) -> bool:
        """True when ``name`` exists and ``password`` matches; constant work for unknown names."""
        users = self._read()
        entry = users.get(name or "")
        raw = (password or "").encode("utf-8")[:MAX_PASSWORD_BYTES + 1]
        if entry is None or len(raw) > MAX_PASSWORD_BYTES:
            bcrypt.checkpw(b"x", self._dummy_hash())  # same work as a real check: no user-name oracle
            return False
        try:
            return bcrypt.checkpw(raw, entry["hash"].encode("ascii"))
        except (ValueError, KeyError):
            return False
