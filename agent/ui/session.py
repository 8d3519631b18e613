"""What one browser session holds: its cases, their studies, chat and evidence, and a private upload folder.

Two browsers never share a case. The session's folder (uploads as staged, exports) is deleted when the
session ends (see :func:`cleanup_state`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tools.errors import FileTooLargeError, InputError

if TYPE_CHECKING:
    from agent.results import SaliencyMap, ToolCallRecord
    from agent.signoff import EvidenceRef
    from tools.imaging import ImageStudy
    from tools.measure import Measurement
    from tools.pacs import SeriesSummary, StudySummary

CASE_PREFIX = "case-"


@dataclass
class CaseView:
    """One case in one browser session. ``studies`` are loaded ImageStudy objects, newest last."""

    case_id: str
    created: float = field(default_factory=time.time)
    studies: list[ImageStudy] = field(default_factory=list)
    sent_studies: int = 0                       # how many studies the agent has already been given
    chat: list[dict[str, str]] = field(default_factory=list)
    evidence: dict[str, EvidenceRef] = field(default_factory=dict)   # "E1" -> what the panel shows
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    saliency: SaliencyMap | None = None         # where the cited classifier looked, on the current study
    report_version: int | None = None
    measurements: list[Measurement] = field(default_factory=list)       # marked in the viewer, in order
    sent_measurements: list[Measurement] = field(default_factory=list)  # already given to the agent
    pending_point: tuple[int, tuple[float, float]] | None = None       # (slice, first point) of a length
    pacs_study_uids: set[str] = field(default_factory=set)  # pseudonymised UIDs of studies opened from the PACS
    shown: int | None = None                    # index of the study in the viewer (None: the newest attached)

    @property
    def unsent_measurements(self) -> list[Measurement]:
        """Measurements the agent has not been given yet (they go with the next question)."""
        return [m for m in self.measurements if m not in self.sent_measurements]

    @property
    def patient_key(self) -> str | None:
        return next((s.patient_key for s in reversed(self.studies) if s.patient_key), None)

    @property
    def study(self) -> ImageStudy | None:
        return self.studies[-1] if self.studies else None

    @property
    def shown_study(self) -> ImageStudy | None:
        """The study in the viewer: the one chosen (a prior, to measure the same lesion), else the newest attached."""
        if self.shown is not None and 0 <= self.shown < len(self.studies):
            return self.studies[self.shown]
        return self.study


@dataclass(frozen=True)
class QueuedQuestion:
    """A question sent from the page, waiting for its turn: its case, and where its answer goes in that
    case's chat (the assistant message placed right after it when it was sent)."""

    case_id: str
    question: str
    slot: int


class SessionState:
    """Everything one browser session holds; ``close()`` deletes its upload directory."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.cases: dict[str, CaseView] = {}
        self.current: str = self.new_case().case_id
        self.closed_at: float | None = None   # set when the browser disconnects; cleared on the next event
        # the last PACS search and the chosen study's series, by original UID: shown to the clinician and
        # used to check what the page sends back; never part of a case
        self.pacs_studies: dict[str, StudySummary] = {}
        self.pacs_series: dict[str, SeriesSummary] = {}
        self.pacs_opened: dict[str, str] = {}   # original study UID -> the case it was opened into (priors)
        # questions sent while another is answered wait here, in order; ``answering`` while one is
        self.queue: list[QueuedQuestion] = []
        self.answering = False

    def touch(self) -> None:
        """The browser is (back) in use: cancel a pending cleanup, recreate the directory if needed."""
        self.closed_at = None
        self.dir.mkdir(parents=True, exist_ok=True)

    def new_case(self) -> CaseView:
        case = CaseView(case_id=CASE_PREFIX + uuid.uuid4().hex[:10])
        self.cases[case.case_id] = case
        self.current = case.case_id
        return case

    @property
    def case(self) -> CaseView:
        return self.cases[self.current]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __deepcopy__(self, memo: dict) -> SessionState:  # gr.State deep-copies initial values only
        return self


def cleanup_state(value: object) -> None:
    """gr.State's delete callback: the session's files go with it."""
    if isinstance(value, SessionState):
        value.close()


def _safe_extract(zip_path: Path, dest: Path, max_bytes: int, max_members: int = 5000) -> list[Path]:
    """Extract a zip without path traversal, links or a decompression bomb (total ``max_bytes``)."""
    from tools.imaging.archive import extract_zip

    return extract_zip(zip_path, dest, max_bytes, max_members)


def stage_upload(paths: list[Path], session_dir: Path, max_bytes: int) -> Path:
    """Copy uploaded files into a fresh directory of the session (sizes checked first); return the
    one file to load, or the directory when the upload is a series (several files or a zip)."""
    if not paths:
        raise InputError("no file uploaded")
    total = 0
    for p in paths:
        if not p.is_file():
            raise InputError("an uploaded file is missing")
        total += p.stat().st_size
    if total > max_bytes:
        raise FileTooLargeError(f"upload is {total / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB "
                                "(settings.max_upload_bytes)")
    dest = Path(tempfile.mkdtemp(prefix="upload-", dir=session_dir))
    staged: list[Path] = []
    try:
        for i, p in enumerate(paths):
            if p.suffix.lower() == ".zip":
                staged += _safe_extract(p, dest, max_bytes)
            else:
                name = re.sub(r"[^A-Za-z0-9._-]", "_", p.name)[-80:] or "upload"
                target = dest / f"{i:05d}_{name}"
                shutil.copyfile(p, target)
                staged.append(target)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # nothing half-staged stays behind
        raise
    return staged[0] if len(staged) == 1 else dest
