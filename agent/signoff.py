"""Draft and signed summaries: what a clinician signs, and the rule that signed means immutable.

A :class:`Report` is the exportable content of one cited summary (sections with [E#] markers, the
evidence they cite, the models used, the pseudonymised study it is about). :class:`ReportStore`
keeps numbered versions per case under ``data_dir/reports/<case>/vNNNN.json``:

- a new draft replaces the newest version only while that version is still a draft;
- :meth:`ReportStore.sign` records the user, the UTC time and the SHA-256 of the content, and
  makes that version read-only; signing twice, or editing a signed version, is refused;
- editing after signing makes a new draft version that names the one it supersedes.

Every stored version carries a ``seal``: HMAC-SHA256, under the integrity key (:mod:`agent.integrity`),
of every field of the file (content, status, signer, time, version, case). Every signature is also
appended to a keyed, anchored ledger (``reports/.signatures.jsonl``). So editing a version (the
signer included), flipping a signed version back to draft, overwriting it, or deleting it, is
reported by :meth:`ReportStore.load` and :meth:`ReportStore.verify`, and no save overwrites it.
Versions stored before the key existed have no seal: they are still checked by content hash, and
reported as unprotected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from agent.integrity import (
    ChainedLog,
    IntegrityError,
    IntegrityKey,
    VerifyReport,
    canonical,
    writable_hint,
    write_atomic,
)
from tools.errors import InputError, RadconsultError

if TYPE_CHECKING:
    from agent.settings import Settings

log = logging.getLogger(__name__)

DISCLAIMER = "Decision support, not a diagnosis. A qualified clinician must review every finding."
DEFAULT_INTENDED_USE = ("Research and decision-support models; not cleared as medical devices. "
                        "Outputs assist, and never replace, the reading clinician.")
# a case id never starts with a dot: never ".", ".." or the ledger's file name
_CASE_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$")
_VERSION_RE = re.compile(r"^v(\d{4})\.json$")
LEDGER_NAME = ".signatures.jsonl"
LEDGER_CHAIN = "signatures"
SEAL_DOMAIN = "report"


class SignoffError(RadconsultError):
    """A sign-off rule was broken (signing twice, editing a signed summary), or a stored version is
    corrupt, altered outside radconsult, rolled back or missing."""


@dataclass(frozen=True)
class EvidenceRef:
    """One cited evidence item as exported: a knowledge passage or a model result."""

    id: str                              # "E3"
    kind: str                            # "knowledge" | "classifier" | "image" | "calculator" | other tool name
    title: str = ""                      # short label shown in lists
    source: str | None = None            # document / guideline name, or model name
    section: str | None = None
    quote: str | None = None
    model: str | None = None
    model_version: str | None = None
    probability: float | None = None     # calibrated, 0..1
    probability_of: str | None = None    # the label the probability is for
    label: str | None = None             # the model's output label
    caution: str | None = None
    intended_use: str | None = None


@dataclass(frozen=True)
class StudyRef:
    """The source study, by pseudonymised UIDs only."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    sop_class_uid: str | None = None
    modality: str | None = None


@dataclass(frozen=True)
class MeasurementRef:
    """One length of a labelled lesion at one time point, as the SR's measurement groups carry it: the
    pseudonymised study, series and slice it was marked on, the two points (column, row) and the length.
    ``tracking_uid`` is the same for the lesion on every study (derived from the case and the label)."""

    lesion: str
    tracking_uid: str
    time_point: str                      # "current" | "prior"
    study: str                           # S1, S2 ... in the case
    axis: str                            # long axis | short axis | solid component
    length_mm: float
    p1: tuple[float, float]
    p2: tuple[float, float]
    evidence_id: str
    study_date: str | None = None        # YYYYMMDD after the date policy
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    nodule_type: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementRef:
        return cls(**{**data, "p1": tuple(data["p1"]), "p2": tuple(data["p2"])})


@dataclass(frozen=True)
class Report:
    """The content of one summary. ``sections`` are (heading, Markdown text with [E#] markers)."""

    case_id: str
    title: str = "Second-opinion summary"
    patient_key: str | None = None
    sections: tuple[tuple[str, str], ...] = ()
    evidence: tuple[EvidenceRef, ...] = ()
    models: tuple[dict[str, str], ...] = ()   # {"name", "version", "intended_use"}
    study: StudyRef | None = None
    disclaimer: str = DISCLAIMER
    measurements: tuple[MeasurementRef, ...] = ()   # labelled lesions measured on the studies (SR groups)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.measurements:  # reports from before labelled measurements keep their content hash
            del data["measurements"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        study = data.get("study")
        return cls(
            case_id=data["case_id"],
            title=data.get("title", "Second-opinion summary"),
            patient_key=data.get("patient_key"),
            sections=tuple((str(h), str(t)) for h, t in data.get("sections", ())),
            evidence=tuple(EvidenceRef(**e) for e in data.get("evidence", ())),
            models=tuple(dict(m) for m in data.get("models", ())),
            study=StudyRef(**{**study, "sop_instance_uids": tuple(study.get("sop_instance_uids", ()))})
            if study else None,
            disclaimer=data.get("disclaimer", DISCLAIMER),
            measurements=tuple(MeasurementRef.from_dict(m) for m in data.get("measurements", ())),
        )

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the content: what a signature vouches for."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def intended_use_lines(self) -> list[str]:
        lines = [f"{m.get('name', 'model')} {m.get('version', '')}".strip() + ": "
                 + (m.get("intended_use") or DEFAULT_INTENDED_USE) for m in self.models]
        return lines or [DEFAULT_INTENDED_USE]


@dataclass(frozen=True)
class ReportVersion:
    """One stored version. ``status`` is "draft" or "signed"; signed fields are None on drafts."""

    report: Report
    version: int
    created_at: str
    created_by: str | None = None
    status: str = "draft"
    signed_by: str | None = None
    signed_at: str | None = None
    content_hash: str | None = None
    supersedes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_signed(self) -> bool:
        return self.status == "signed"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["report"] = self.report.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportVersion:
        return cls(**{**data, "report": Report.from_dict(data["report"])})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Stored:
    """One version file as read: the parsed version, the raw JSON and whether its seal matched."""

    rv: ReportVersion
    data: dict[str, Any]
    sealed: bool  # False: a version written before the integrity key (no seal)


class ReportStore:
    """Versions of each case's summary under ``root`` (normally ``settings.reports_dir``), sealed under
    ``key``. Build it with :meth:`from_settings` in entry points."""

    def __init__(self, root: Path, *, key: IntegrityKey) -> None:
        self.root = Path(root)
        self.key = key
        self.ledger = ChainedLog(self.root / LEDGER_NAME, key, LEDGER_CHAIN)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReportStore:
        return cls(settings.reports_dir, key=IntegrityKey(settings.integrity_key_file))

    def _dir(self, case_id: str) -> Path:
        if not _CASE_RE.match(case_id or ""):
            raise InputError(f"invalid case id {case_id!r}")
        return self.root / case_id

    def _lock(self, case_id: str) -> FileLock:
        d = self._dir(case_id)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SignoffError(f"cannot write summaries under {self.root}: {exc.strerror or exc}; "
                               f"{writable_hint(exc)}") from None
        return FileLock(str(d / ".lock"), timeout=10)

    def _path(self, case_id: str, version: int) -> Path:
        return self._dir(case_id) / f"v{version:04d}.json"

    def _seal(self, data: dict[str, Any]) -> str:
        return self.key.mac(SEAL_DOMAIN, canonical({k: v for k, v in data.items() if k != "seal"}))

    # --- the ledger of signatures ----------------------------------------------------------------
    def signatures(self, case_id: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """Ledger entries whose MAC matches, by (case, version): every version ever signed here."""
        if not self.ledger.path.exists():
            return {}
        try:
            self.key.load()
        except IntegrityError as exc:
            raise SignoffError(str(exc)) from None
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for rec in self.ledger.records():
            if (case_id is None or rec.get("case_id") == case_id) and self.ledger.record_ok(rec):
                out[(str(rec.get("case_id")), int(rec.get("version", 0)))] = rec
        return out

    def _file_versions(self, case_id: str) -> list[int]:
        d = self._dir(case_id)
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _VERSION_RE.match(p.name)))

    def versions(self, case_id: str) -> list[int]:
        """Version numbers of a case: those on disk and those the ledger says were signed."""
        signed = {v for (c, v) in self.signatures(case_id) if c == case_id}
        return sorted(set(self._file_versions(case_id)) | signed)

    # --- reading ---------------------------------------------------------------------------------
    def _read(self, case_id: str, version: int) -> _Stored:
        path = self._path(case_id, version)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError("not an object")
            rv = ReportVersion.from_dict({k: v for k, v in data.items() if k != "seal"})
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SignoffError(f"cannot read summary {path.name} of case {case_id!r}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SignoffError(f"summary {path.name} of case {case_id!r} is corrupt: {exc}") from None
        if "seal" in data:
            try:
                ok = self.key.mac_ok(SEAL_DOMAIN, canonical({k: v for k, v in data.items() if k != "seal"}),
                                     data["seal"])
            except IntegrityError as exc:
                raise SignoffError(str(exc)) from None
            if not ok:
                raise SignoffError(f"summary v{version} of case {case_id!r} was altered outside radconsult "
                                   "(its seal does not match)")
            sealed = True
        else:
            sealed = False
            if rv.is_signed and rv.content_hash != rv.report.content_hash():
                raise SignoffError(f"signed summary v{version} of case {case_id!r} was altered after signing "
                                   "(content hash mismatch)")
        if rv.version != version or rv.report.case_id != case_id:
            raise SignoffError(f"summary file {case_id}/{path.name} holds v{rv.version} of case "
                               f"{rv.report.case_id!r}: it was moved or copied outside radconsult")
        return _Stored(rv, data, sealed)

    def load(self, case_id: str, version: int | None = None) -> ReportVersion:
        """The given version (the newest when None). Raises :class:`SignoffError` for a version altered
        outside radconsult, a signed version rolled back to draft, or a signed version that is missing."""
        numbers = self.versions(case_id)
        if not numbers:
            raise InputError(f"case {case_id!r} has no summary yet: draft one first")
        version = numbers[-1] if version is None else version
        signed = self.signatures(case_id).get((case_id, version))
        try:
            stored = self._read(case_id, version)
        except FileNotFoundError:
            if signed is not None:
                raise SignoffError(f"signed summary v{version} of case {case_id!r} (signed by "
                                   f"{signed.get('signed_by')} at {signed.get('signed_at')}) is missing: it was "
                                   "deleted outside radconsult; restore it from a backup") from None
            raise InputError(f"case {case_id!r} has no summary version {version} (have {numbers})") from None
        if signed is not None and (not stored.rv.is_signed or stored.data.get("seal") != signed.get("seal")):
            raise SignoffError(f"summary v{version} of case {case_id!r} was signed by {signed.get('signed_by')} "
                               f"at {signed.get('signed_at')}, but the stored file is "
                               f"{'a draft' if not stored.rv.is_signed else 'another version'}: it was replaced "
                               "outside radconsult; restore it from a backup")
        return stored.rv

    # --- writing ---------------------------------------------------------------------------------
    def _write(self, rv: ReportVersion) -> str:
        """Store ``rv`` sealed; never replaces a signed version. Returns the seal."""
        path = self._path(rv.report.case_id, rv.version)
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if isinstance(old, dict) and old.get("status") == "signed":
                raise SignoffError(f"refusing to overwrite signed summary v{rv.version} of case "
                                   f"{rv.report.case_id!r}")
        data = rv.to_dict()
        data["seal"] = self._seal(data)
        try:
            write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
            os.chmod(path, 0o400 if rv.is_signed else 0o600)
        except OSError as exc:
            raise SignoffError(f"summary v{rv.version} of case {rv.report.case_id!r} not saved: "
                               f"{exc.strerror or exc}; {writable_hint(exc)}") from None
        return data["seal"]

    def _record_signature(self, rv: ReportVersion, seal: str) -> None:
        self.ledger.append({"case_id": rv.report.case_id, "version": rv.version, "seal": seal,
                            "signed_by": rv.signed_by, "signed_at": rv.signed_at,
                            "content_hash": rv.content_hash})

    def _reconcile(self, case_id: str) -> None:
        """Put signed, sealed versions of a case that the ledger lacks (a sign-off interrupted between
        writing the file and the ledger) into the ledger. Only a holder of the key can seal a file."""
        ledger = self.signatures(case_id)
        for v in self._file_versions(case_id):
            if (case_id, v) in ledger:
                continue
            try:
                stored = self._read(case_id, v)
            except (SignoffError, FileNotFoundError):
                continue
            if stored.sealed and stored.rv.is_signed:
                log.warning("recording the interrupted sign-off of v%d of case %s in the ledger", v, case_id)
                self._record_signature(stored.rv, str(stored.data["seal"]))

    @contextlib.contextmanager
    def _locked(self, case_id: str) -> Iterator[None]:
        """Hold the case's lock (one writer per case across processes)."""
        lock = self._lock(case_id)
        try:
            lock.acquire()
        except Timeout:
            raise SignoffError(f"the summaries of case {case_id!r} are being changed by another process; "
                               "try again") from None
        except OSError as exc:
            raise SignoffError(f"cannot lock the summaries of case {case_id!r}: {exc.strerror or exc}; "
                               f"{writable_hint(exc)}") from None
        try:
            yield
        finally:
            lock.release()

    def _guard(self, case_id: str) -> None:
        """Fail closed before writing: the ledger and its anchor must agree; interrupted sign-offs of the
        case are recorded first."""
        try:
            self._reconcile(case_id)
            self.ledger.check_writable()
        except IntegrityError as exc:
            raise SignoffError(f"the signature ledger fails its check, so nothing is saved: {exc}") from None

    def save_draft(self, report: Report, *, user: str | None = None) -> ReportVersion:
        """Store ``report`` as the case's current draft: replaces an unsigned newest version, or
        starts a new version superseding a signed one."""
        with self._locked(report.case_id):
            self._guard(report.case_id)
            numbers = self.versions(report.case_id)
            supersedes = None
            if numbers:
                latest = self.load(report.case_id, numbers[-1])
                if latest.is_signed:
                    version, supersedes = numbers[-1] + 1, numbers[-1]
                else:
                    version, supersedes = numbers[-1], latest.supersedes
            else:
                version = 1
            rv = ReportVersion(report=report, version=version, created_at=_now(), created_by=user,
                               supersedes=supersedes)
            self._write(rv)
            return rv

    def sign(self, case_id: str, version: int, *, user: str) -> ReportVersion:
        """Sign a draft version: records user, time and content hash, seals the file and adds the
        signature to the ledger; the version becomes immutable."""
        if not user:
            raise InputError("signing needs a named user (log in, or start the UI with users)")
        with self._locked(case_id):
            self._guard(case_id)
            rv = self.load(case_id, version)
            if rv.is_signed:
                raise SignoffError(f"summary v{version} of case {case_id!r} is already signed by "
                                   f"{rv.signed_by} at {rv.signed_at}; edit it to make a new version")
            signed = replace(rv, status="signed", signed_by=user, signed_at=_now(),
                             content_hash=rv.report.content_hash())
            seal = self._write(signed)
            try:
                self._record_signature(signed, seal)
            except IntegrityError as exc:
                # the signed file is sealed and stored; the next change to this case records it
                log.warning("signed v%d of case %s is stored but not yet in the ledger: %s", version, case_id, exc)
            return signed

    def edit(self, case_id: str, version: int, report: Report, *, user: str | None = None) -> ReportVersion:
        """Change a version's content: in place for a draft, a new superseding draft for a signed one."""
        if report.case_id != case_id:
            raise InputError("edited report belongs to another case")
        with self._locked(case_id):
            self._guard(case_id)
            rv = self.load(case_id, version)
            numbers = self.versions(case_id)
            if not rv.is_signed:
                new = replace(rv, report=report, created_at=_now(), created_by=user)
            else:
                if numbers[-1] != version and not self.load(case_id, numbers[-1]).is_signed:
                    raise SignoffError(f"case {case_id!r} already has a newer draft v{numbers[-1]}; edit that")
                new = ReportVersion(report=report, version=numbers[-1] + 1, created_at=_now(),
                                    created_by=user, supersedes=version)
            self._write(new)
            return new

    # --- verification ----------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Check every stored version's seal and every ledger entry against the files: reports a version
        altered, moved, rolled back to draft, overwritten or deleted outside radconsult, and a ledger
        that was edited, truncated or deleted. Read-only: takes no lock."""
        problems: list[str] = []
        warnings: list[str] = []
        chain = self.ledger.verify()
        problems += [f"signature ledger: {p}" for p in chain.problems]
        warnings += [f"signature ledger: {w}" for w in chain.warnings]
        try:
            ledger = self.signatures() if chain.records else {}
        except SignoffError as exc:
            ledger = {}
            if not chain.problems:
                problems.append(str(exc))
        files: dict[tuple[str, int], _Stored] = {}
        count = 0
        legacy_signed = 0
        cases = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for d in cases:
            if not _CASE_RE.match(d.name):
                warnings.append(f"{d.name}: not a case folder (ignored)")
                continue
            for v in self._file_versions(d.name):
                count += 1
                try:
                    stored = self._read(d.name, v)
                except (SignoffError, FileNotFoundError) as exc:
                    problems.append(str(exc))
                    continue
                files[(d.name, v)] = stored
                if not stored.sealed:
                    if stored.rv.is_signed:
                        legacy_signed += 1
                elif stored.rv.is_signed and (d.name, v) not in ledger:
                    warnings.append(f"signed v{v} of case {d.name!r} is sealed but not yet in the ledger (an "
                                    "interrupted sign-off); the next change to the case records it")
        if legacy_signed:
            warnings.append(f"{legacy_signed} summaries were signed before the integrity key existed: their "
                            "content matches its hash, but the signer, the time and their existence are not "
                            "protected")
        for (case_id, v), entry in sorted(ledger.items()):
            who = f"signed by {entry.get('signed_by')} at {entry.get('signed_at')}"
            stored = files.get((case_id, v))
            if stored is None:
                if not self._path(case_id, v).exists():
                    problems.append(f"signed summary v{v} of case {case_id!r} ({who}) is missing: deleted")
            elif not stored.rv.is_signed:
                problems.append(f"signed summary v{v} of case {case_id!r} ({who}) is now a draft: rolled back")
            elif stored.data.get("seal") != entry.get("seal"):
                problems.append(f"signed summary v{v} of case {case_id!r} ({who}) was replaced by another file")
        head = {"signatures": len(ledger), **{f"ledger_{k}": v for k, v in chain.head.items()}}
        return VerifyReport(str(self.root), count, not problems, tuple(problems), tuple(warnings), head)
