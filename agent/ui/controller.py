"""The UI's behaviour without a browser: one method per user action, each doing its own audit records and
returning plain view models that the layout shows. Unit-tested with the real Consultation."""

from __future__ import annotations

import contextlib
import html
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.audit import AuditLog, text_hash
from agent.signoff import ReportStore, ReportVersion
from agent.summary import build_report, evidence_ref
from agent.toolbox import TOOLS
from agent.ui import render
from agent.ui.session import CaseView, SessionState, stage_upload
from tools.errors import InputError, RadconsultError

if TYPE_CHECKING:
    from agent.protocol import ConsultationAPI
    from agent.results import TurnResult
    from agent.settings import Settings

log = logging.getLogger(__name__)

UNLOAD_GRACE_S = 300.0  # seconds after a browser disconnect before its uploads are deleted
# shown until the first token: the tools and a CPU model can take a minute before anything streams
WORKING = "⏳ _Working: running the tools, then writing a cited answer (on a CPU this can take a minute)…_"
STARTING = ("Starting up: the knowledge base and the language model are being prepared; your question is "
            "answered as soon as they are ready")


@dataclass(frozen=True)
class ViewerPanel:
    """The viewer and the metadata beside it. ``depth`` > 1 shows the slice slider."""

    image: np.ndarray | None
    is_ct: bool
    preset: str
    depth: int
    slice_index: int
    overlay_available: bool
    overlay_on: bool
    caption: str
    metadata_html: str


@dataclass(frozen=True)
class CasePanel:
    """Everything shown about the session's current case."""

    choices: list[tuple[str, str]]
    case_id: str
    info_md: str
    viewer: ViewerPanel
    chat: list[dict[str, str]]
    evidence_html: str
    trace_html: str
    summary_status_html: str


@dataclass(frozen=True)
class AskUpdate:
    """One step of a turn on the page. ``None`` fields are left as they are; ``viewer`` refreshes it."""

    chat: list[dict[str, str]]
    status_html: str | None = None
    evidence_html: str | None = None
    trace_html: str | None = None
    viewer: ViewerPanel | None = None


@dataclass(frozen=True)
class SummaryPanel:
    """``markdown`` / ``edit_text`` None: leave the shown summary or editor as it is."""

    markdown: str | None
    status_html: str
    edit_text: str | None = None


@dataclass(frozen=True)
class ExportResult:
    path: Path | None
    status_html: str


def make_login(settings: Settings) -> Callable[[str, str], bool]:
    """The login check for the page (audited; a failed name is stored only as a hash)."""
    from agent.users import UserStore

    store, audit = UserStore(settings.users_path), AuditLog.from_settings(settings)

    def login(username: str, password: str) -> bool:
        ok = store.verify(username, password)
        if ok:
            audit.append("login", user=username)
        else:
            audit.append("login_failed", user=None, details={"name_sha256": text_hash(username or "")})
        return ok

    return login


class UIController:
    """The page's actions over one consultation agent. Sessions are keyed by Gradio's session hash."""

    def __init__(self, agent: ConsultationAPI, settings: Settings) -> None:
        self.agent = agent
        self.settings = settings
        self.audit = AuditLog.from_settings(settings)
        self.reports = ReportStore.from_settings(settings)
        self.sessions_root = settings.cache_dir / "ui-sessions"
        self.cards = agent.model_cards()
        self._sessions: dict[str, SessionState] = {}
        self._lock = threading.Lock()
        self._login: Callable[[str, str], bool] | None = None

    # --- sessions ---------------------------------------------------------------------------------
    def session(self, state: SessionState | None, key: str | None) -> SessionState:
        """The browser's session (created on its first event)."""
        if isinstance(state, SessionState):
            state.touch()
            return state
        sess = SessionState(self.sessions_root)
        if key:
            with self._lock:
                self._sessions[key] = sess
        return sess

    def login(self, username: str, password: str) -> bool:
        if self._login is None:
            self._login = make_login(self.settings)
        return self._login(username, password)

    def unload(self, key: str | None) -> None:
        """The browser disconnected (closed, or a dropped connection it may resume): delete the session's
        files after a grace period unless it is used again meanwhile."""
        with self._lock:
            sess = self._sessions.get(key) if key else None
        if sess is None:
            return
        sess.closed_at = time.time()

        def reap() -> None:
            if sess.closed_at is not None and time.time() - sess.closed_at >= UNLOAD_GRACE_S - 1:
                with self._lock:
                    self._sessions.pop(key, None)
                sess.close()

        timer = threading.Timer(UNLOAD_GRACE_S, reap)
        timer.daemon = True
        timer.start()

    # --- case views -------------------------------------------------------------------------------
    def viewer(self, case: CaseView, preset: str = "Default", slice_index: int = 0,
               overlay: bool = False) -> ViewerPanel:
        study = case.study
        if study is None:
            return ViewerPanel(None, False, "Default", 1, 0, False, False, "", render.metadata_html(None))
        is_ct = (study.metadata.modality or "").upper() == "CT"
        depth = int(study.shape[0]) if study.is_volume else 1
        slice_index = int(np.clip(slice_index if slice_index else depth // 2, 0, max(0, depth - 1)))
        sal = case.saliency.array if overlay and case.saliency is not None else None
        caption = (f"Saliency overlay: **{case.saliency.label}** (where the model looked; not a segmentation)"
                   if sal is not None and case.saliency is not None else "")
        return ViewerPanel(render.render_view(study, preset if is_ct else "Default", slice_index, sal), is_ct,
                           preset if is_ct else "Default", depth, slice_index, case.saliency is not None,
                           sal is not None, caption, render.metadata_html(study))

    def _report(self, case: CaseView) -> ReportVersion | None:
        return self.reports.load(case.case_id, case.report_version) if case.report_version is not None else None

    def _summary_status(self, case: CaseView) -> str:
        try:
            return render.summary_status_html(self._report(case))
        except RadconsultError as exc:
            return f"⚠ {html.escape(str(exc))}"

    def case_panel(self, sess: SessionState) -> CasePanel:
        case = sess.case
        choices = []
        for cid, c in sorted(sess.cases.items(), key=lambda kv: kv[1].created):
            label = cid + (f"  ·  {c.patient_key[:12]}" if c.patient_key else "") + (
                f"  ·  {len(c.studies)} study" if c.studies else "")
            choices.append((label, cid))
        pk = case.patient_key
        info = (f"**Case** `{case.case_id}` · **Patient key** `{pk}`" if pk else
                f"**Case** `{case.case_id}` · no patient key yet (upload a study)")
        return CasePanel(choices, case.case_id, info, self.viewer(case), case.chat,
                         render.evidence_html(case.evidence), render.trace_html(case.tool_calls),
                         self._summary_status(case))

    def new_case(self, sess: SessionState, user: str | None) -> CasePanel:
        case = sess.new_case()
        self.audit.append("case_new", user=user, case_id=case.case_id)
        return self.case_panel(sess)

    def switch_case(self, sess: SessionState, case_id: str) -> CasePanel:
        if case_id in sess.cases:
            sess.current = case_id
        return self.case_panel(sess)

    # --- actions ----------------------------------------------------------------------------------
    def upload(self, sess: SessionState, user: str | None, paths: list[Path]) -> str:
        """Stage and load (de-identify) an upload into the current case; Gradio's own copy is deleted."""
        from agent.wiring import imaging_config
        from tools.imaging import load

        case = sess.case
        source = None
        try:
            source = stage_upload(paths, sess.dir, self.settings.max_upload_bytes)
            study = load(source, imaging_config(self.settings))
            case.studies.append(study)
            case.saliency = None
            msg = (f"✓ Loaded {study.source_format.upper()} {' x '.join(str(s) for s in study.shape)}"
                   + (f" · {len(study.warnings)} warning(s)" if study.warnings else ""))
            self.audit.append("upload", user=user, case_id=case.case_id,
                              details={"format": study.source_format, "files": len(paths),
                                       "ndim": len(study.shape), "study_key": study.study_key})
        except RadconsultError as exc:
            msg = f"⚠ Upload rejected: {exc}"
            self.audit.append("upload_rejected", user=user, case_id=case.case_id,
                              details={"error": type(exc).__name__, "files": len(paths)})
        finally:
            # The study is in memory now: no copy of the upload stays on disk, where a URL could reach it
            # (Gradio's own copy, and the staged one in the session's folder).
            for p in paths:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
            if source is not None:
                shutil.rmtree(source if source.is_dir() else source.parent, ignore_errors=True)
        return msg

    def ask(self, sess: SessionState, user: str | None, question: str) -> Iterator[AskUpdate]:
        """One turn: waits visibly for the warm-up, streams the answer, then shows evidence, trace and
        saliency, and writes the audit records."""
        case = sess.case
        question = (question or "").strip()
        if not question:
            yield AskUpdate(case.chat)
            return
        case.chat = [*case.chat, {"role": "user", "content": question}, {"role": "assistant", "content": WORKING}]
        t_start = time.perf_counter()
        while not self.agent.is_warm:  # first start: the question waits for the warm-up, visibly
            waited = time.perf_counter() - t_start
            yield AskUpdate(case.chat, f'<span class="rc-turn-busy" data-state="starting">{STARTING} '
                                       f'({waited:.0f} s)</span>')
            self.agent.wait_until_ready(1.0)
        yield AskUpdate(case.chat, '<span class="rc-turn-busy">Answering…</span>')
        cited: list[str] = []
        try:
            text, turn = "", None
            for piece in self.agent.stream(case.case_id, question, images=case.studies[case.sent_studies:],
                                           patient=case.patient_key):
                if isinstance(piece, str):
                    text += piece
                    case.chat[-1] = {"role": "assistant", "content": render.link_citations(text)}
                    yield AskUpdate(case.chat)
                else:
                    turn = piece
            if turn is None:
                raise RadconsultError("the agent finished without an answer")
            case.sent_studies = len(case.studies)
            cited = self._show_turn(case, turn)
            self._audit_turn(case, user, question, turn)
        except RadconsultError as exc:
            case.chat[-1] = {"role": "assistant", "content": f"⚠ {exc}"}
        except Exception as exc:  # noqa: BLE001 - the page must show a message, never hang
            log.exception("agent turn failed")
            case.chat[-1] = {"role": "assistant", "content": f"⚠ The assistant failed: {type(exc).__name__}. "
                                                             "See the server log."}
        failed = case.chat[-1]["content"].startswith("⚠")
        yield AskUpdate(case.chat, render.turn_done_html(time.perf_counter() - t_start, failed, cited),
                        render.evidence_html(case.evidence, set(cited)), render.trace_html(case.tool_calls),
                        self.viewer(case, "Default", 0, case.saliency is not None))

    def _show_turn(self, case: CaseView, turn: TurnResult) -> list[str]:
        """Put the turn's answer, evidence, trace and saliency into the case; the cited ids, in order."""
        for item in turn.evidence:
            case.evidence[item.id] = evidence_ref(item)
        case.tool_calls += list(turn.tool_calls)
        body = render.link_citations(turn.answer, set(case.evidence))
        if turn.unsupported_sentences:
            body += ("\n\n> ⚠ Without a citation (check before relying on it): "
                     + " · ".join(f"_{html.escape(s)}_" for s in turn.unsupported_sentences[:5]))
        case.chat[-1] = {"role": "assistant", "content": body}
        cited_maps = [m for m in turn.saliency if m.evidence_id in turn.cited_ids] or list(turn.saliency)
        if cited_maps:
            case.saliency = cited_maps[-1]
        if turn.error:
            log.warning("turn ended with an error: %s", turn.error)
        return sorted(set(render.CITE_RE.findall(turn.answer)) & set(case.evidence), key=lambda e: int(e[1:]))

    def _audit_turn(self, case: CaseView, user: str | None, question: str, turn: TurnResult) -> None:
        versions = {"llm": self.agent.model_name}
        versions.update({e.model: str(e.model_version or "") for e in case.evidence.values() if e.model})
        for call in turn.tool_calls:
            if call.name in TOOLS:
                self.audit.append(TOOLS.get(call.name).audit_action, user=user, case_id=case.case_id,
                                  model_versions=versions, evidence_ids=call.evidence_ids,
                                  details={"tool": call.name, "ok": call.ok, "auto": call.auto})
        self.audit.append("answer", user=user, case_id=case.case_id, model_versions=versions,
                          evidence_ids=turn.cited_ids,
                          details={"question_sha256": text_hash(question), "answer_sha256": text_hash(turn.answer),
                                   "unsupported": len(turn.unsupported_sentences),
                                   "contradicted": len(turn.contradicted_sentences)})

    # --- summary and sign-off ---------------------------------------------------------------------
    def draft(self, sess: SessionState, user: str | None) -> SummaryPanel:
        """Draft the case's summary as a new version (a signed one is never replaced)."""
        from agent.exports import to_markdown

        case = sess.case
        try:
            current = self._report(case)
            note = "Signed summaries are immutable: this draft is a new version." if current and current.is_signed \
                else ""
            summary = self.agent.summary(case.case_id)
            for item in self.agent.evidence(case.case_id):  # model facts for the Findings' citations
                case.evidence[item.id] = evidence_ref(item)
            report = build_report(summary, case.case_id, case.patient_key, self.agent.evidence(case.case_id),
                                  case.study, self.cards)
            rv = self.reports.save_draft(report, user=user)
            case.report_version = rv.version
            self.audit.append("summary", user=user, case_id=case.case_id,
                              evidence_ids=[e.id for e in rv.report.evidence],
                              details={"version": rv.version, "content_sha256": rv.report.content_hash()})
            body = (f"_{note}_\n\n" if note else "") + render.link_citations(to_markdown(rv))
            return SummaryPanel(body, self._summary_status(case), render.sections_to_text(rv.report.sections))
        except RadconsultError as exc:
            return SummaryPanel(f"⚠ {exc}", self._summary_status(case))

    def save_edit(self, sess: SessionState, user: str | None, text: str) -> SummaryPanel:
        """Save the clinician's edit as a new version (editing a signed version leaves it unchanged)."""
        from agent.exports import to_markdown

        case = sess.case
        try:
            current = self._report(case)
            if current is None:
                raise InputError("draft a summary first")
            new = replace(current.report, sections=render.text_to_sections(text))
            rv = self.reports.edit(case.case_id, current.version, new, user=user)
            case.report_version = rv.version
            self.audit.append("summary", user=user, case_id=case.case_id,
                              evidence_ids=[e.id for e in rv.report.evidence],
                              details={"version": rv.version, "edited": True, "supersedes": rv.supersedes,
                                       "content_sha256": rv.report.content_hash()})
            note = (f"_Signed v{current.version} is unchanged; this edit is v{rv.version}._\n\n"
                    if current.is_signed else "")
            return SummaryPanel(note + render.link_citations(to_markdown(rv)), self._summary_status(case))
        except RadconsultError as exc:
            return SummaryPanel(None, f"⚠ {html.escape(str(exc))}<br>" + self._summary_status(case))

    def sign(self, sess: SessionState, user: str | None) -> SummaryPanel:
        """Sign the current version as the logged-in clinician."""
        from agent.exports import to_markdown

        case = sess.case
        try:
            if case.report_version is None:
                raise InputError("draft a summary first")
            if not user:
                raise InputError("signing needs a logged-in clinician: start the UI with users "
                                 "(`radconsult users add NAME`)")
            rv = self.reports.sign(case.case_id, case.report_version, user=user)
            self.audit.append("sign", user=user, case_id=case.case_id,
                              evidence_ids=[e.id for e in rv.report.evidence],
                              details={"version": rv.version, "content_sha256": rv.content_hash})
            return SummaryPanel(render.link_citations(to_markdown(rv)), self._summary_status(case))
        except RadconsultError as exc:
            return SummaryPanel(None, f"⚠ {html.escape(str(exc))}<br>" + self._summary_status(case))

    def export(self, sess: SessionState, user: str | None, fmt: str) -> ExportResult:
        """Write the current version as Markdown, PDF or DICOM SR into the session's folder."""
        from agent.exports import export

        case = sess.case
        try:
            rv = self._report(case)
            if rv is None:
                raise InputError("draft a summary first")
            path = export(rv, fmt, sess.dir / "exports")
            self.audit.append("export", user=user, case_id=case.case_id,
                              evidence_ids=[e.id for e in rv.report.evidence],
                              details={"format": fmt, "version": rv.version, "status": rv.status})
            return ExportResult(path, self._summary_status(case))
        except RadconsultError as exc:
            return ExportResult(None, f"⚠ {html.escape(str(exc))}<br>" + self._summary_status(case))
