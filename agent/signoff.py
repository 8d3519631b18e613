"""Draft and signed summaries: what a clinician signs, and the rule that signed means immutable.

A :class:`Report` is the exportable content of one cited summary (sections with [E#] markers, the
evidence they cite, the models used, the pseudonymised study it is about). :class:`ReportStore`
keeps numbered versions per case under ``data_dir/reports/<case>/vNNNN.json``:

- a new draft replaces the newest version only while that version is still a draft;
- :meth:`ReportStore.sign` records the user, the UTC time and the SHA-256 of the content, and
  makes that version read-only; signing twice, or editing a signed version, is refused;
- editing after signing makes a new draft version that names the one it supersedes.

Loading a signed version re-checks its content hash, so a hand-edited file is reported, not shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from tools.errors import InputError, RadconsultError

DISCLAIMER = "Decision support, not a diagnosis. A qualified clinician must review every finding."
DEFAULT_INTENDED_USE = ("Research and decision-support models; not cleared as medical devices. "
                        "Outputs assist, and never replace, the reading clinician.")
_CASE_RE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


class SignoffError(RadconsultError):
    """A sign-off rule was broken (signing twice, editing a signed summary) or a stored version is corrupt."""


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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


class ReportStore:
    """Versions of each case's summary under ``root`` (normally ``settings.data_dir / "reports"``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, case_id: str) -> Path:
        if not _CASE_RE.match(case_id or ""):
            raise InputError(f"invalid case id {case_id!r}")
        return self.root / case_id

    def _lock(self, case_id: str) -> FileLock:
        d = self._dir(case_id)
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / ".lock"), timeout=10)

    def _path(self, case_id: str, version: int) -> Path:
        return self._dir(case_id) / f"v{version:04d}.json"

    def versions(self, case_id: str) -> list[int]:
        d = self._dir(case_id)
        if not d.is_dir():
            return []
        return sorted(int(p.stem[1:]) for p in d.glob("v[0-9][0-9][0-9][0-9].json"))

    def load(self, case_id: str, version: int | None = None) -> ReportVersion:
        """The given version (the newest when None); a signed version whose content no longer matches
        its recorded hash raises :class:`SignoffError`."""
        numbers = self.versions(case_id)
        if not numbers:
            raise InputError(f"case {case_id!r} has no summary yet: draft one first")
        version = numbers[-1] if version is None else version
        path = self._path(case_id, version)
        if not path.exists():
            raise InputError(f"case {case_id!r} has no summary version {version} (have {numbers})")
        try:
            rv = ReportVersion.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise SignoffError(f"summary {path.name} of case {case_id!r} is corrupt: {exc}") from exc
        if rv.is_signed and rv.content_hash != rv.report.content_hash():
            raise SignoffError(f"signed summary v{version} of case {case_id!r} was altered after signing "
                               "(content hash mismatch)")
        return rv

    def _write(self, rv: ReportVersion) -> None:
        path = self._path(rv.report.case_id, rv.version)
        if path.exists():
            os.chmod(path, 0o600)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rv.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        os.chmod(path, 0o400 if rv.is_signed else 0o600)

    def save_draft(self, report: Report, *, user: str | None = None) -> ReportVersion:
        """Store ``report`` as the case's current draft: replaces an unsigned newest version, or
        starts a new version superseding a signed one."""
        with self._lock(report.case_id):
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
        """Sign a draft version: records user, time and content hash; the version becomes immutable."""
        if not user:
            raise InputError("signing needs a named user (log in, or start the UI with users)")
        with self._lock(case_id):
            rv = self.load(case_id, version)
            if rv.is_signed:
                raise SignoffError(f"summary v{version} of case {case_id!r} is already signed by "
                                   f"{rv.signed_by} at {rv.signed_at}; edit it to make a new version")
            signed = replace(rv, status="signed", signed_by=user, signed_at=_now(),
                             content_hash=rv.report.content_hash())
            self._write(signed)
            return signed

    def edit(self, case_id: str, version: int, report: Report, *, user: str | None = None) -> ReportVersion:
        """Change a version's content: in place for a draft, a new superseding draft for a signed one."""
        if report.case_id != case_id:
            raise InputError("edited report belongs to another case")
        with self._lock(case_id):
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
