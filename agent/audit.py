"""Append-only, hash-chained audit log (JSONL) of every user action, without PHI.

One JSON object per line. Each record carries ``prev_hash`` (the ``hash`` of the record before it,
64 zeros for the first) and its own ``hash``: SHA-256 of the record's canonical JSON without the
``hash`` field. A sidecar ``<log>.head`` file holds the count and the last hash, so that deleting
the newest records (which a chain alone cannot show) is detected too.

What a record may hold: the action, the user name, the UTC time, the pseudonymous case id, model
names and versions, evidence ids, and ``details`` of scalars (counts, sizes, formats, SHA-256
hashes of free text via :func:`text_hash`). Never a question's text, a file name, a patient name
or any other identifier: the caller passes hashes, and :meth:`AuditLog.append` rejects values
that are not scalars or are longer than :data:`MAX_DETAIL_CHARS`.

Concurrent writers (several UI workers, the CLI) are serialised by a lock file beside the log.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from tools.errors import InputError, RadconsultError

GENESIS_HASH = "0" * 64
MAX_DETAIL_CHARS = 128
ACTIONS = frozenset({
    "login", "login_failed", "logout", "case_new", "upload", "upload_rejected", "inspect", "classify", "search",
    "calculate",
    "answer", "summary", "export", "sign", "user_add", "user_remove", "ui_start",
    "pacs_find", "pacs_open", "pacs_send",
})


class AuditError(RadconsultError):
    """The audit log cannot be written or read."""


def text_hash(text: str) -> str:
    """SHA-256 hex digest of free text (a question, a file name): lets an auditor match a
    disputed text to its record without the log ever holding the text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(record: Mapping[str, object]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: Mapping[str, object]) -> str:
    """SHA-256 of the record's canonical JSON, ``hash`` field excluded."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


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


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`: ``ok`` only when every record and the head anchor agree."""

    path: str
    records: int
    ok: bool
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "records": self.records, "ok": self.ok, "problems": list(self.problems)}


class AuditLog:
    """The audit log at ``path`` (normally ``settings.audit_log_path``). Cheap to construct."""

    def __init__(self, path: Path, *, lock_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=lock_timeout_s)

    def _last(self) -> tuple[int, str]:
        """(seq, hash) of the newest record, from the head file, checked against the log's last line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS_HASH
        with self.path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            pos = fh.tell()
            chunk = b""
            while pos > 0 and chunk.count(b"\n") < 2:
                step = min(4096, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
        lines = [ln for ln in chunk.splitlines() if ln.strip()]
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, IndexError) as exc:
            raise AuditError(f"audit log {self.path} ends with an unreadable record; run "
                             "`radconsult audit verify`") from exc

    def append(self, action: str, *, user: str | None, case_id: str | None = None,
               model_versions: Mapping[str, str] | None = None, evidence_ids: Iterable[str] = (),
               details: Mapping[str, object] | None = None) -> dict[str, object]:
        """Append one record and return it. ``user`` is the login name (``None``: anonymous loopback)."""
        if action not in ACTIONS:
            raise InputError(f"unknown audit action {action!r}; expected one of {sorted(ACTIONS)}")
        clean = _check_details(details or {})
        versions = {str(k): str(v) for k, v in (model_versions or {}).items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                seq, prev = self._last()
                record: dict[str, object] = {
                    "seq": seq + 1,
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "action": action,
                    "user": user,
                    "case_id": case_id,
                    "model_versions": versions,
                    "evidence_ids": [str(e) for e in evidence_ids],
                    "details": clean,
                    "prev_hash": prev,
                }
                record["hash"] = record_hash(record)
                line = _canonical(record) + b"\n"
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                tmp = self.head_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"records": record["seq"], "hash": record["hash"]}))
                os.replace(tmp, self.head_path)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc
        return record

    def records(self) -> list[dict[str, object]]:
        """Every record, oldest first (unverified: use :func:`verify` for integrity)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out


def verify(path: Path) -> VerifyReport:
    """Check every record's hash, the chain of ``prev_hash`` and consecutive ``seq`` numbers, and the
    head anchor. Detects an edited, inserted, reordered or deleted record (the newest included)."""
    path = Path(path)
    log = AuditLog(path)
    problems: list[str] = []
    count = 0
    prev = GENESIS_HASH
    expected_seq = 1
    if path.exists():
        with log._lock:
            lines = path.read_text(encoding="utf-8").splitlines()
            head_text = log.head_path.read_text() if log.head_path.exists() else None
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                problems.append(f"line {lineno}: empty line")
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                problems.append(f"line {lineno}: not valid JSON")
                continue
            count += 1
            if not isinstance(rec, dict) or "hash" not in rec:
                problems.append(f"line {lineno}: not an audit record")
                continue
            if record_hash(rec) != rec["hash"]:
                problems.append(f"line {lineno} (seq {rec.get('seq')}): content does not match its hash (edited)")
            if rec.get("prev_hash") != prev:
                problems.append(f"line {lineno} (seq {rec.get('seq')}): chain broken (a record before it was "
                                "edited, inserted or deleted)")
            if rec.get("seq") != expected_seq:
                problems.append(f"line {lineno}: sequence number {rec.get('seq')}, expected {expected_seq}")
            prev = str(rec["hash"])
            expected_seq = (rec["seq"] + 1) if isinstance(rec.get("seq"), int) else expected_seq + 1
    else:
        head_text = log.head_path.read_text() if log.head_path.exists() else None
    if head_text is None:
        if count:
            problems.append("head anchor file missing: the newest records cannot be checked for deletion")
    else:
        try:
            head = json.loads(head_text)
            if head.get("records") != expected_seq - 1 or head.get("hash") != prev:
                problems.append(f"log ends at record {expected_seq - 1} but the head anchor says "
                                f"{head.get('records')}: newest records deleted or the log replaced")
        except ValueError:
            problems.append("head anchor file unreadable")
    return VerifyReport(path=str(path), records=count, ok=not problems, problems=tuple(problems))
