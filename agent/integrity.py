"""Keyed integrity for what must not be forged: the audit log and the ledger of signed summaries.

Three parts, one key:

- :class:`IntegrityKey`: 32 random bytes in their own file (mode 0600, directory 0700), at
  ``settings.integrity_key_file`` (by default ``data_dir/keys/integrity.key``; put it elsewhere
  with ``RADCONSULT_INTEGRITY_KEY_PATH``). Every MAC is HMAC-SHA256 under it, with a domain label
  ("audit", "signatures", "report", "anchor") so that a MAC made for one purpose never verifies
  for another.
- the anchor, ``integrity.anchor`` beside the key: per chain, how many records exist and the MAC of
  the newest one, itself MACed. It is created together with the key and lives apart from the logs,
  so that truncating a log, or deleting it altogether, is an error and not "OK: 0 records".
- :class:`ChainedLog`: JSON lines, each carrying ``seq``, ``prev_mac`` (the MAC of the record
  before it) and ``mac`` (HMAC of every other field). Editing, inserting, reordering or deleting
  any record, or forging one, needs the key.

Writers create the key on first use, but only where nothing shows that records existed before
(no anchor and no keyed record in the log): a deleted key is reported, never silently replaced.
Readers (:meth:`ChainedLog.verify`) take no lock and write nothing, so verification works on a
read-only data directory.

What this cannot do (README, "Audit log and signed summaries"): anyone who can read the key can
forge everything; anyone who can write the key's directory as well as the data directory can roll
both back to an earlier copy, or delete all of it, which then looks like a new installation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from tools.errors import RadconsultError

log = logging.getLogger(__name__)

KEY_BYTES = 32
GENESIS = "0" * 64
ANCHOR_NAME = "integrity.anchor"


class IntegrityError(RadconsultError):
    """The integrity key, the anchor or a chained log is missing, unreadable, or does not match."""


def canonical(record: Mapping[str, object]) -> bytes:
    """The record as canonical JSON bytes (sorted keys, no spaces, UTF-8): what a MAC is computed over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (temporary file, fsync, rename): readers see the old or the new
    content, never a mix. Raises OSError (disk full, read-only file system)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def append_line(path: Path, line: bytes) -> None:
    """Append one complete line to ``path`` and fsync it. On a short or failed write (disk full) the
    file is cut back to its old length, so a torn record is never left behind. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:  # pragma: no cover - the write failed and so does the repair
                log.error("could not cut back a partial record in %s", path)
            raise
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- the key -------------------------------------------------------------------------------------
class IntegrityKey:
    """The HMAC key at ``path``. Cheap to construct; the file is read on first use and cached."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple[int, int], bytes] | None = None

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def anchor_path(self) -> Path:
        return self.directory / ANCHOR_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> bytes:
        """The key bytes; :class:`IntegrityError` when the file is missing, unreadable or malformed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise IntegrityError(f"the integrity key {self.path} is missing; restore it from a backup "
                                 "(without it the audit log and signed summaries cannot be checked)") from None
        except OSError as exc:
            raise IntegrityError(f"cannot read the integrity key {self.path}: {_os_reason(exc)}") from None
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        if st.st_mode & 0o077:
            log.warning("the integrity key %s is readable by other users; run: chmod 600 %s",
                        self.path, self.path)
        try:
            key = bytes.fromhex(self.path.read_text(encoding="ascii").strip())
        except OSError as exc:
            raise IntegrityError(f"cannot read the integrity key {self.path}: {_os_reason(exc)}; "
                                 "run radconsult as the user that owns it") from None
        except ValueError:
            raise IntegrityError(f"the integrity key {self.path} is corrupt; restore it from a backup") from None
        if len(key) != KEY_BYTES:
            raise IntegrityError(f"the integrity key {self.path} has {len(key)} bytes, expected {KEY_BYTES}; "
                                 "restore it from a backup")
        self._cache = (stamp, key)
        return key

    def mac(self, domain: str, payload: bytes) -> str:
        """HMAC-SHA256 (hex) of ``payload`` under the key, for ``domain`` ("audit", "report", ...)."""
        return hmac.new(self.load(), domain.encode("ascii") + b"\x00" + payload, hashlib.sha256).hexdigest()

    def mac_ok(self, domain: str, payload: bytes, mac: object) -> bool:
        return isinstance(mac, str) and hmac.compare_digest(self.mac(domain, payload), mac)

    def anchor_lock(self, timeout_s: float = 10.0) -> FileLock:
        return FileLock(str(self.directory / (ANCHOR_NAME + ".lock")), timeout=timeout_s)

    def create(self) -> None:
        """Make a new key and an empty anchor. The caller holds :meth:`anchor_lock` and has checked that
        nothing protected by an earlier key exists (see :meth:`ChainedLog.append`)."""
        key = secrets.token_bytes(KEY_BYTES)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key.hex() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, self.path)  # never overwrites an existing key
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        self._cache = None
        write_anchor(self, Anchor(created=now_utc(), chains={}))
        log.info("created a new integrity key at %s", self.path)


# --- the anchor ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainHead:
    """How many records a chain has (the ``seq`` of its newest record) and that record's MAC."""

    records: int = 0
    last: str = GENESIS


@dataclass(frozen=True)
class Anchor:
    """What the key's directory remembers about every chain. ``created``: when the key was made."""

    created: str
    chains: dict[str, ChainHead] = field(default_factory=dict)

    def head(self, chain: str) -> ChainHead:
        return self.chains.get(chain, ChainHead())

    def body(self) -> dict[str, Any]:
        return {"created": self.created,
                "chains": {k: {"records": v.records, "last": v.last} for k, v in sorted(self.chains.items())}}


def read_anchor(key: IntegrityKey) -> Anchor | None:
    """The anchor beside the key (None when there is no anchor file); :class:`IntegrityError` when it
    is unreadable or its MAC does not match (edited, or made with another key)."""
    path = key.anchor_path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrityError(f"cannot read the integrity anchor {path}: {_os_reason(exc)}") from None
    try:
        data = json.loads(text)
        body = {"created": str(data["created"]),
                "chains": {str(k): {"records": int(v["records"]), "last": str(v["last"])}
                           for k, v in dict(data["chains"]).items()}}
        mac = data["mac"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(f"the integrity anchor {path} is unreadable") from None
    if not key.mac_ok("anchor", canonical(body), mac):
        raise IntegrityError(f"the integrity anchor {path} does not match the key: it was edited, or the "
                             "key was replaced")
    return Anchor(created=body["created"],
                  chains={k: ChainHead(v["records"], v["last"]) for k, v in body["chains"].items()})


def write_anchor(key: IntegrityKey, anchor: Anchor) -> None:
    body = anchor.body()
    data = {**body, "mac": key.mac("anchor", canonical(body))}
    write_atomic(key.anchor_path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


# --- chained logs --------------------------------------------------------------------------------
def legacy_hash(record: Mapping[str, object]) -> str:
    """The unkeyed SHA-256 of records written before keyed chains (``hash`` field excluded)."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def is_keyed(record: Mapping[str, object]) -> bool:
    return "mac" in record


@dataclass(frozen=True)
class VerifyReport:
    """Result of a verification: ``ok`` only when no problem was found. ``warnings`` are facts worth
    knowing that do not mean tampering (records older than the key, an interrupted write)."""

    path: str
    records: int
    ok: bool
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    head: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "records": self.records, "ok": self.ok, "problems": list(self.problems),
                "warnings": list(self.warnings), "head": dict(self.head)}


@dataclass
class _Line:
    lineno: int
    record: dict[str, Any] | None
    problem: str | None = None


class ChainedLog:
    """A JSON-lines log at ``path`` whose records are chained by HMAC under ``key``; ``chain`` names
    it in the anchor ("audit", "signatures"). Writers are serialised by a lock file beside the log."""

    def __init__(self, path: Path, key: IntegrityKey, chain: str, *, lock_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.key = key
        self.chain = chain
        self.lock_timeout_s = lock_timeout_s

    # --- reading -----------------------------------------------------------------------------
    def _lines(self) -> Iterator[_Line]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise IntegrityError(f"cannot read {self.path}: {_os_reason(exc)}") from None
        parts = raw.split(b"\n")
        torn = parts[-1] != b""
        if not torn:
            parts = parts[:-1]
        for i, part in enumerate(parts, start=1):
            last = i == len(parts)
            if not part.strip():
                yield _Line(i, None, "empty line")
                continue
            try:
                rec = json.loads(part)
            except ValueError:
                yield _Line(i, None, "an incomplete last record (a write was interrupted)" if last and torn
                            else "not valid JSON")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
                yield _Line(i, None, "not a log record")
                continue
            yield _Line(i, rec)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (unverified: use :meth:`verify`)."""
        return [ln.record for ln in self._lines() if ln.record is not None]

    def record_ok(self, rec: Mapping[str, Any]) -> bool:
        """True when a keyed record's MAC matches (needs the key)."""
        body = {k: v for k, v in rec.items() if k != "mac"}
        return self.key.mac_ok(self.chain, canonical(body), rec.get("mac"))

    def _tail(self) -> tuple[dict[str, Any] | None, bool]:
        """(newest record or None, whether the file ends in a torn write). Reads only the file's end."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                pos = fh.tell()
                chunk = b""
                while pos > 0 and chunk.count(b"\n") < 3:
                    step = min(65536, pos)
                    pos -= step
                    fh.seek(pos)
                    chunk = fh.read(step) + chunk
        except FileNotFoundError:
            return None, False
        torn = bool(chunk) and not chunk.endswith(b"\n")
        lines = [ln for ln in chunk.split(b"\n") if ln.strip()]
        if torn:
            lines = lines[:-1]
        if not lines:
            if pos > 0:
                raise IntegrityError(f"{self.path} ends with an unreadable record; run `radconsult audit verify`")
            return None, torn
        try:
            rec = json.loads(lines[-1])
            if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
                raise ValueError("not a record")
        except ValueError:
            raise IntegrityError(f"{self.path} ends with an unreadable record; run `radconsult audit verify`") from None
        return rec, torn

    # --- writing -----------------------------------------------------------------------------
    def _prepare(self) -> tuple[Anchor, int, str]:
        """(anchor, next seq, prev MAC) for the next record, after checking that the log's end agrees
        with the anchor; creates the key and anchor on first use. Caller holds both locks."""
        tail, torn = self._tail()
        if torn:
            self._cut_torn_tail()
        if not self.key.exists():
            anchor_file = self.key.anchor_path.exists()
            if tail is not None and is_keyed(tail):
                raise IntegrityError(f"the integrity key {self.key.path} is missing but {self.path} holds "
                                     f"keyed records; restore the key from a backup")
            if anchor_file:
                raise IntegrityError(f"the integrity key {self.key.path} is missing but its anchor exists: "
                                     "records were protected by it; restore the key from a backup")
            self.key.create()
        anchor = read_anchor(self.key)
        if anchor is None:
            raise IntegrityError(f"the integrity anchor {self.key.anchor_path} is missing: it records how many "
                                 "records existed; restore it from a backup, or run `radconsult audit verify`")
        head = anchor.head(self.chain)
        if tail is None:
            if head.records:
                raise IntegrityError(f"{self.path} is missing or empty, but {head.records} records existed; "
                                     "restore it from a backup, or archive the evidence with "
                                     "`radconsult audit reset`")
            return anchor, 1, GENESIS
        seq = int(tail["seq"])
        if is_keyed(tail):
            if not self.record_ok(tail):
                raise IntegrityError(f"the newest record of {self.path} does not match its MAC (forged or edited); "
                                     "run `radconsult audit verify`")
            if seq < head.records or (seq == head.records and tail["mac"] != head.last):
                raise IntegrityError(f"{self.path} ends at record {seq} but {head.records} records existed: the "
                                     "newest records were deleted or the log replaced; run `radconsult audit verify`")
            return anchor, seq + 1, str(tail["mac"])
        # a log from before keyed chains: seal it, after checking its unkeyed chain end to end
        if head.records:
            raise IntegrityError(f"{self.path} ends with an unkeyed record although {head.records} keyed records "
                                 "existed: the log was replaced; run `radconsult audit verify`")
        problems = self._verify_legacy_prefix([ln for ln in self._lines()])[2]
        if problems:
            raise IntegrityError(f"{self.path} is in the old unkeyed format and fails its own check "
                                 f"({problems[0]}); run `radconsult audit verify`")
        return anchor, seq + 1, str(tail.get("hash"))

    def _cut_torn_tail(self) -> None:
        """Remove an incomplete last line (a write that never finished, so never acknowledged)."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        log.warning("removing an incomplete last record (%d bytes) from %s", len(data) - keep, self.path)
        with self.path.open("r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())

    def check_writable(self) -> None:
        """Run the checks :meth:`append` runs before writing (creating the key on first use), and write
        nothing: lets a caller fail closed before it changes anything that the log must then record."""
        self._locked(lambda anchor, seq, prev: None)

    def _locked(self, step: Any) -> Any:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.key.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=self.lock_timeout_s), \
                    self.key.anchor_lock(self.lock_timeout_s):
                return step(*self._prepare())
        except Timeout:
            raise IntegrityError(f"{self.path} is locked by another process; try again") from None
        except OSError as exc:
            raise IntegrityError(f"cannot write {self.path}: {_os_reason(exc)}; "
                                 f"{writable_hint(exc)}") from None

    def append(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``body`` (JSON-able; must not use ``seq``, ``prev_mac`` or ``mac``) and return the stored
        record. Raises :class:`IntegrityError` when the log and its anchor disagree (fail closed: nothing
        is appended to a log that may have been tampered with), or when the disk refuses the write."""
        if {"seq", "prev_mac", "mac"} & set(body):
            raise ValueError("seq, prev_mac and mac are set by the log")

        def write(anchor: Anchor, seq: int, prev: str) -> dict[str, Any]:
            record: dict[str, Any] = {"seq": seq, **body, "prev_mac": prev}
            record["mac"] = self.key.mac(self.chain, canonical(record))
            append_line(self.path, canonical(record) + b"\n")
            try:
                chains = dict(anchor.chains)
                chains[self.chain] = ChainHead(seq, str(record["mac"]))
                write_anchor(self.key, Anchor(anchor.created, chains))
            except OSError as exc:
                # the record itself is stored and valid; verify tolerates records past the anchor
                log.warning("record %d of %s is stored but the anchor could not be updated: %s",
                            seq, self.path, _os_reason(exc))
            return record

        return self._locked(write)

    # --- verification ------------------------------------------------------------------------
    def _verify_legacy_prefix(self, lines: list[_Line]) -> tuple[int, str, list[str]]:
        """Check the unkeyed records at the start: (count, last hash, problems)."""
        problems: list[str] = []
        prev, count = GENESIS, 0
        for ln in lines:
            rec = ln.record
            if rec is None or is_keyed(rec):
                break
            count += 1
            if legacy_hash(rec) != rec.get("hash"):
                problems.append(f"line {ln.lineno}: content does not match its hash (edited)")
            if rec.get("prev_hash") != prev:
                problems.append(f"line {ln.lineno}: chain broken (a record before it was edited, inserted or deleted)")
            if rec.get("seq") != count:
                problems.append(f"line {ln.lineno}: sequence number {rec.get('seq')}, expected {count}")
            prev = str(rec.get("hash"))
        return count, prev, problems

    def verify(self) -> VerifyReport:
        """Check every record's MAC, the chain, consecutive ``seq`` numbers and the anchor. Takes no lock
        and writes nothing. Detects an edited, forged, inserted, reordered or deleted record (the newest
        included) and a missing or emptied log after records existed."""
        problems: list[str] = []
        warnings: list[str] = []
        # the anchor first, the log second: an append racing with us only adds records past the anchor
        key_ok, anchor = False, None
        if self.key.exists():
            try:
                self.key.load()
                key_ok = True
                anchor = read_anchor(self.key)
                if anchor is None:
                    problems.append(f"the integrity anchor {self.key.anchor_path} is missing: it records how "
                                    "many records existed (deleted?)")
            except IntegrityError as exc:
                problems.append(str(exc))
        try:
            lines = list(self._lines())
        except IntegrityError as exc:
            return VerifyReport(str(self.path), 0, False, tuple(problems + [str(exc)]))
        records = [ln.record for ln in lines if ln.record is not None]
        keyed = [r for r in records if is_keyed(r)]
        if not key_ok and not problems and (keyed or self.key.anchor_path.exists()):
            problems.append(f"the integrity key {self.key.path} is missing: the records cannot be checked; "
                            "restore it from a backup")
        n_legacy, prev, legacy_problems = self._verify_legacy_prefix(lines)
        problems += legacy_problems
        if n_legacy:
            if keyed:
                warnings.append(f"records 1-{n_legacy} predate the integrity key (unkeyed SHA-256 chain); they "
                                f"are protected since record {n_legacy + 1} sealed them")
            else:
                warnings.append(f"all {n_legacy} records are in the old unkeyed format: the chain is intact but "
                                "anyone who could write the data directory could have forged it; the next "
                                "audited action seals it under the integrity key")
        expected = n_legacy + 1
        seen_keyed = False
        by_seq: dict[int, str] = {}
        for ln in lines[n_legacy:]:
            rec = ln.record
            if rec is None:
                problems.append(f"line {ln.lineno}: {ln.problem}")
                continue
            if not is_keyed(rec):
                problems.append(f"line {ln.lineno}: an unkeyed record after keyed ones (inserted)")
                continue
            seen_keyed = True
            seq = rec.get("seq")
            if key_ok and not self.record_ok(rec):
                problems.append(f"line {ln.lineno} (seq {seq}): does not match its MAC (edited or forged)")
            if rec.get("prev_mac") != prev:
                problems.append(f"line {ln.lineno} (seq {seq}): chain broken (a record before it was edited, "
                                "inserted or deleted)")
            if seq != expected:
                problems.append(f"line {ln.lineno}: sequence number {seq}, expected {expected}")
            prev = str(rec.get("mac"))
            expected = (seq + 1) if isinstance(seq, int) else expected + 1
            if isinstance(seq, int):
                by_seq[seq] = prev
        last_seq = expected - 1
        head: dict[str, object] = {"records": last_seq, "last_mac": prev if (seen_keyed or n_legacy) else GENESIS}
        if anchor is not None:
            want = anchor.head(self.chain)
            head["anchor_records"] = want.records
            head["key_created"] = anchor.created
            if want.records and not lines:
                problems.append(f"the log is missing or empty, but {want.records} records existed (anchor)")
            elif last_seq < want.records:
                problems.append(f"the log ends at record {last_seq} but {want.records} records existed "
                                "(anchor): the newest records were deleted or the log replaced")
            elif want.records and by_seq.get(want.records) != want.last:
                problems.append(f"record {want.records} is not the one the anchor remembers: the log was replaced")
            elif last_seq > want.records:
                warnings.append(f"{last_seq - want.records} record(s) after the anchor's record {want.records}: "
                                "written by an append that was interrupted or is still running")
        return VerifyReport(str(self.path), len(records), not problems, tuple(problems), tuple(warnings), head)

    def reset(self) -> tuple[Path | None, VerifyReport]:
        """Archive a log that fails verification (renamed ``<name>.broken-<UTC time>``, kept for
        investigation) and set the chain's anchor back to zero records. Refuses when the log verifies.
        Returns (archive path or None, the report that justified it)."""
        report = self.verify()
        if report.ok:
            raise IntegrityError(f"{self.path} verifies: nothing to reset")
        try:
            self.key.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=self.lock_timeout_s), \
                    self.key.anchor_lock(self.lock_timeout_s):
                archive = None
                if self.path.exists():
                    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                    archive = self.path.with_name(f"{self.path.name}.broken-{stamp}")
                    os.replace(self.path, archive)
                if not self.key.exists():
                    self.key.anchor_path.unlink(missing_ok=True)
                    self.key.create()
                try:
                    anchor = read_anchor(self.key)
                except IntegrityError:
                    anchor = None
                chains = dict(anchor.chains) if anchor else {}
                chains[self.chain] = ChainHead()
                write_anchor(self.key, Anchor(anchor.created if anchor else now_utc(), chains))
        except Timeout:
            raise IntegrityError(f"{self.path} is locked by another process; try again") from None
        except OSError as exc:
            raise IntegrityError(f"cannot reset {self.path}: {_os_reason(exc)}; {writable_hint(exc)}") from None
        return archive, report


def writable_hint(exc: OSError) -> str:
    """What to do about a failed write: free space (disk full) or make the data directory writable."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free space, then try again"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the data directory writable, or set RADCONSULT_DATA_DIR to a writable place"
    return "check the data directory"
