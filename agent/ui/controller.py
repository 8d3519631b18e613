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
from agent.comparison import current_study
from agent.signoff import ReportStore, ReportVersion
from agent.summary import build_report, evidence_ref
from agent.toolbox import TOOLS
from agent.ui import compare, render
from agent.ui.session import CaseView, QueuedQuestion, SessionState, stage_upload
from tools.errors import InputError, RadconsultError

if TYPE_CHECKING:
    from agent.protocol import ConsultationAPI
    from agent.results import TurnResult
    from agent.settings import Settings
    from agent.ui.health import StartupChecks
    from tools.pacs import PacsClient

log = logging.getLogger(__name__)

UNLOAD_GRACE_S = 300.0  # seconds after a browser disconnect before its uploads are deleted
# shown until the first token: the tools and a CPU model can take a minute before anything streams
WORKING = "⏳ _Working: running the tools, then writing a cited answer (on a CPU this can take a minute)…_"
QUEUED = "⏳ _Queued: answered as soon as the question before it is._"
NODULE_TYPES = {"solid": "solid", "part-solid": "part_solid", "ground-glass": "ground_glass"}  # shown -> stored
MEASURE_LABELS = ("long axis", "short axis")
STARTING = ("Starting up: the knowledge base and the language model are being prepared; a question the guideline "
            "rules answer is answered now, one that needs the model as soon as they are ready")


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
    measurements_html: str = ""
    measurement_choices: tuple[tuple[str, str], ...] = ()   # (label, "1"-based number) to remove one
    study_choices: tuple[tuple[str, str], ...] = ()         # (label, index) of the case's studies
    shown: str | None = None                                # the index of the study shown


@dataclass(frozen=True)
class MeasureUpdate:
    """The viewer after a click or a removal, and a line saying what happened."""

    viewer: ViewerPanel
    message: str


@dataclass(frozen=True)
class PacsPanel:
    """The "Open from PACS" panel: a message, the studies found and the chosen study's series, as
    (label, original UID) choices; ``None`` leaves a list as it is."""

    message: str
    studies: list[tuple[str, str]] | None = None
    series: list[tuple[str, str]] | None = None
    series_value: str | None = None


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
    can_send: bool = False          # the "Send to PACS" button is enabled


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

    def __init__(self, agent: ConsultationAPI, settings: Settings, health: StartupChecks | None = None) -> None:
        self.agent = agent
        self.settings = settings
        self.health = health  # the start-up checks `radconsult ui` runs (None: not run, e.g. in tests)
        self.audit = AuditLog.from_settings(settings)
        self.reports = ReportStore.from_settings(settings)
        self.sessions_root = settings.cache_dir / "ui-sessions"
        self.cards = agent.model_cards()
        self._sessions: dict[str, SessionState] = {}
        self._lock = threading.Lock()
        self._login: Callable[[str, str], bool] | None = None

    def health_banner(self) -> tuple[str, bool]:
        """(the banner of failed start-up checks, whether the checks have finished)."""
        if self.health is None:
            return "", True
        return self.health.banner_html(), self.health.done

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
        study = case.shown_study
        if study is None:
            return ViewerPanel(None, False, "Default", 1, 0, False, False, "", render.metadata_html(None),
                               render.measurements_html(case.measurements, case.sent_measurements))
        is_ct = (study.metadata.modality or "").upper() == "CT"
        depth = int(study.shape[0]) if study.is_volume else 1
        slice_index = int(np.clip(slice_index if slice_index else depth // 2, 0, max(0, depth - 1)))
        sal = case.saliency.array if overlay and case.saliency is not None and study is case.study else None
        caption = (f"Saliency overlay: **{case.saliency.label}** (where the model looked; not a segmentation)"
                   if sal is not None and case.saliency is not None else "")
        image = render.render_view(study, preset if is_ct else "Default", slice_index, sal,
                                   min_side=render.VIEW_MIN_SIDE)
        pending = case.pending_point[1] if case.pending_point and case.pending_point[0] == slice_index else None
        image = render.draw_measurements(image, study, case.measurements, slice_index, pending)
        refs = self._measured_studies(case)
        choices = tuple((render.measurement_label(n, m, refs[n - 1]), str(n))
                        for n, m in enumerate(case.measurements, start=1))
        return ViewerPanel(image, is_ct, preset if is_ct else "Default", depth, slice_index, case.saliency is not None,
                           sal is not None, caption, render.metadata_html(study),
                           render.measurements_html(case.measurements, case.sent_measurements, refs), choices,
                           tuple(compare.study_choices(case.studies)), str(case.studies.index(study)))

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
                         self._summary_status(case), self.can_send(case))

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
            case.shown = None
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
        """One question, start to end: :meth:`submit`, then :meth:`drain` (the page calls them apart)."""
        yield self.submit(sess, question)
        yield from self.drain(sess, user)

    def submit(self, sess: SessionState, question: str) -> AskUpdate:
        """Take a question at once: it is shown in the chat and answered now, or after the question being
        answered when one is (a question sent meanwhile is queued, never dropped)."""
        case = sess.case
        question = (question or "").strip()
        if not question:
            return AskUpdate(case.chat)
        waiting = sess.answering or bool(sess.queue)
        case.chat = [*case.chat, {"role": "user", "content": question},
                     {"role": "assistant", "content": QUEUED if waiting else WORKING}]
        sess.queue.append(QueuedQuestion(case.case_id, question, len(case.chat) - 1))
        if not waiting:  # the status of the last turn goes at once: this one has started
            status = "Answering…" if self.agent.is_warm else STARTING
            return AskUpdate(case.chat, f'<span class="rc-turn-busy" data-state="{"answering" if self.agent.is_warm else "starting"}">{status}</span>')
        return AskUpdate(case.chat, f'<span class="rc-turn-busy" data-state="queued">Answering… '
                                    f'{len(sess.queue)} question(s) queued</span>')

    def drain(self, sess: SessionState, user: str | None) -> Iterator[AskUpdate]:
        """Answer the session's queued questions in order, streaming each. Returns at once when another call
        is already answering them (it takes the new ones too)."""
        if sess.answering:
            return
        sess.answering = True
        try:
            while sess.queue:
                item = sess.queue.pop(0)
                case = sess.cases.get(item.case_id)
                if case is not None:
                    yield from self._answer(sess, case, user, item)
        finally:
            sess.answering = False

    def _answer(self, sess: SessionState, case: CaseView, user: str | None, item: QueuedQuestion) -> Iterator[AskUpdate]:
        """One turn: waits visibly for the warm-up, streams the answer into the question's place in the chat,
        then shows evidence, trace and saliency, and writes the audit records."""
        question, slot = item.question, item.slot
        case.chat[slot] = {"role": "assistant", "content": WORKING}
        t_start = time.perf_counter()

        def queued() -> str:
            return f" ({len(sess.queue)} more queued)" if sess.queue else ""

        if not self.agent.is_warm:
            # first start: a question the rules answer goes ahead; one that needs the model or a search waits
            # inside the turn for the warm-up, and the status says why it may take a while
            yield AskUpdate(sess.case.chat, f'<span class="rc-turn-busy" data-state="starting">{STARTING}</span>')
        else:
            yield AskUpdate(sess.case.chat, f'<span class="rc-turn-busy">Answering…{queued()}</span>')
        cited: list[str] = []
        measured = case.unsent_measurements
        try:
            text, turn = "", None
            for piece in self.agent.stream(case.case_id, question, images=case.studies[case.sent_studies:],
                                           patient=case.patient_key, measurements=measured):
                if isinstance(piece, str):
                    text += piece
                    case.chat[slot] = {"role": "assistant", "content": render.link_citations(text)}
                    yield AskUpdate(sess.case.chat)
                else:
                    turn = piece
            if turn is None:
                raise RadconsultError("the agent finished without an answer")
            case.sent_studies = len(case.studies)
            if not turn.error:
                case.sent_measurements += measured
            cited = self._show_turn(case, turn, slot)
            self._audit_turn(case, user, question, turn)
        except RadconsultError as exc:
            case.chat[slot] = {"role": "assistant", "content": f"⚠ {exc}"}
        except Exception as exc:  # noqa: BLE001 - the page must show a message, never hang
            log.exception("agent turn failed")
            case.chat[slot] = {"role": "assistant", "content": f"⚠ The assistant failed: {type(exc).__name__}. "
                                                               "See the server log."}
        failed = case.chat[slot]["content"].startswith("⚠")
        shown = sess.case
        yield AskUpdate(shown.chat, render.turn_done_html(time.perf_counter() - t_start, failed, cited) + queued(),
                        render.evidence_html(shown.evidence, set(cited)), render.trace_html(shown.tool_calls),
                        self.viewer(shown, "Default", 0, shown.saliency is not None))

    def mark_point(self, sess: SessionState, shown: tuple[float, float] | None, *, preset: str = "Default",
                   slice_index: int = 0, overlay: bool = False, nodule_type: str | None = "solid",
                   label: str = "long axis", lesion: str = "") -> MeasureUpdate:
        """A click on the shown slice at ``shown`` (x, y in the shown image's pixels). The first click marks one
        end; the second, on the same slice, measures the length (:func:`tools.measure.measure`) and keeps it in
        the case until the next question takes it to the assistant. ``lesion`` names the lesion (the same label on
        the prior and the current study is how they are compared)."""
        from tools.measure import measure

        case = sess.case
        study = case.shown_study

        def view() -> ViewerPanel:
            return self.viewer(case, preset, slice_index, overlay)

        if study is None:
            return MeasureUpdate(view(), "⚠ Open or upload a study first, then click both ends of the length.")
        if shown is None:
            return MeasureUpdate(view(), "⚠ Click on the image itself.")
        depth = int(study.shape[0]) if study.is_volume else 1
        slice_index = int(np.clip(slice_index if slice_index else depth // 2, 0, max(0, depth - 1)))
        point = render.to_pixel(study, shown, min_side=render.VIEW_MIN_SIDE)
        pending = case.pending_point
        if pending is None or pending[0] != slice_index:
            case.pending_point = (slice_index, point)
            return MeasureUpdate(view(), f"First end at ({point[0]:.0f}, {point[1]:.0f}) on slice {slice_index}: "
                                         "click the other end.")
        case.pending_point = None
        try:
            if label not in MEASURE_LABELS:
                raise InputError(f"the label must be one of {', '.join(MEASURE_LABELS)}")
            if nodule_type is not None and nodule_type not in NODULE_TYPES:
                raise InputError(f"the type must be one of {', '.join(NODULE_TYPES)}")
            m = measure(study, slice_index, pending[1], point, label=label,
                        nodule_type=NODULE_TYPES[nodule_type] if nodule_type else None, lesion=lesion or None)
        except RadconsultError as exc:
            return MeasureUpdate(view(), f"⚠ Not measured: {exc}")
        case.measurements.append(m)
        n = len(case.measurements)
        warn = "".join(f" ⚠ {w}." for w in m.warnings)
        label_text = render.measurement_label(n, m, self._measured_studies(case)[-1])
        return MeasureUpdate(view(), f"✓ {label_text}: goes with the next question.{warn}")

    def remove_measurement(self, sess: SessionState, which: str | None, *, preset: str = "Default",
                           slice_index: int = 0, overlay: bool = False) -> MeasureUpdate:
        """Remove measurement number ``which`` ("1"-based; "all": every one). One the assistant already has stays
        in its evidence; it is only no longer shown or sent."""
        case = sess.case
        case.pending_point = None
        if which == "all":
            count = len(case.measurements)
            case.measurements.clear()
            msg = f"Removed {count} measurement(s)." if count else "No measurement to remove."
        else:
            try:
                n = int(which or "")
                if not 1 <= n <= len(case.measurements):
                    raise ValueError
            except ValueError:
                return MeasureUpdate(self.viewer(case, preset, slice_index, overlay),
                                     "⚠ Choose a measurement from the list to remove.")
            gone = case.measurements.pop(n - 1)
            msg = f"Removed M{n} ({gone.label} {gone.length_mm:.1f} mm); the others are renumbered."
        return MeasureUpdate(self.viewer(case, preset, slice_index, overlay), msg)

    # --- comparison with prior studies -----------------------------------------------------------------
    @staticmethod
    def _measured_studies(case: CaseView) -> list[str | None]:
        """Each measurement's study as S1, S2 ... when the case has several studies (else None: one study)."""
        if len(case.studies) < 2:
            return [None] * len(case.measurements)
        return [compare.study_ref(case.studies, m.study_key) for m in case.measurements]

    def show_study(self, sess: SessionState, index: str | None, *, preset: str = "Default", slice_index: int = 0,
                   overlay: bool = False) -> MeasureUpdate:
        """Show study number ``index`` (0-based, as in :attr:`ViewerPanel.study_choices`) to measure on it; the
        slice is the one at the position of the slice shown before, where both series give positions."""
        case = sess.case
        before = case.shown_study
        try:
            n = int(index or "")
            if not 0 <= n < len(case.studies):
                raise ValueError
        except ValueError:
            return MeasureUpdate(self.viewer(case, preset, slice_index, overlay), "⚠ Choose one of the case's studies.")
        case.shown, case.pending_point = n, None
        target = case.studies[n]
        linked = compare.linked_slice(before, slice_index, target) if before is not None and before is not target \
            else None
        label = dict((v, k) for k, v in compare.study_choices(case.studies))[str(n)]
        if linked is not None:
            msg = (f"Showing {label}: slice {linked}, at the position of slice {slice_index} of the study shown before "
                   "(linked by Image Position; check the level, the patient lies differently in each study).")
        else:
            msg = f"Showing {label}" + (": its slices are not linked by position (the series do not give positions)."
                                        if target.is_volume and before is not target else ".")
            linked = slice_index if target is before else 0
        return MeasureUpdate(self.viewer(case, preset, linked, overlay), msg)

    def mark_not_seen(self, sess: SessionState, lesion: str, *, preset: str = "Default", slice_index: int = 0,
                      overlay: bool = False) -> MeasureUpdate:
        """Record that lesion ``lesion`` is not seen on the shown study (new since this prior, or resolved now)."""
        from tools.measure import mark_absent

        case = sess.case
        study = case.shown_study
        view = self.viewer(case, preset, slice_index, overlay)
        if study is None:
            return MeasureUpdate(view, "⚠ Open or upload a study first.")
        try:
            m = mark_absent(study, lesion)
        except RadconsultError as exc:
            return MeasureUpdate(view, f"⚠ Not recorded: {exc}")
        case.measurements.append(m)
        label = render.measurement_label(len(case.measurements), m, self._measured_studies(case)[-1])
        return MeasureUpdate(self.viewer(case, preset, slice_index, overlay),
                             f"✓ {label}: goes with the next question.")

    def _pacs_roles(self, sess: SessionState, found: list) -> dict:
        """Each found study's place beside the current one: the study of this case opened from the PACS when it
        is among them, else the newest (agent.pacs.study_roles_for). Nothing when the body parts cannot be read."""
        from agent.pacs import study_roles_for

        opened = [s for s in found if sess.pacs_opened.get(s.study_uid) == sess.current]
        current = max(opened, key=lambda s: (s.study_date, s.study_time)).study_uid if opened else None
        try:
            with self._pacs_client() as client:
                return study_roles_for(client, found, current)
        except RadconsultError as exc:
            log.info("priors not marked: %s", exc)
            return {}

    def _show_turn(self, case: CaseView, turn: TurnResult, slot: int = -1) -> list[str]:
        """Put the turn's answer (at ``slot`` in the chat), evidence, trace and saliency into the case; the
        cited ids, in order."""
        for item in turn.evidence:
            case.evidence[item.id] = evidence_ref(item)
        case.tool_calls += list(turn.tool_calls)
        body = render.link_citations(turn.answer, set(case.evidence))
        if turn.unsupported_sentences:
            body += ("\n\n> ⚠ Without a citation (check before relying on it): "
                     + " · ".join(f"_{html.escape(s)}_" for s in turn.unsupported_sentences[:5]))
        case.chat[slot] = {"role": "assistant", "content": body}
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
                                   "contradicted": len(turn.contradicted_sentences),
                                   "failed": turn.error is not None})

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
                                  current_study(case.studies), self.cards)
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

    # --- the PACS ---------------------------------------------------------------------------------
    @property
    def pacs_enabled(self) -> bool:
        return bool(self.settings.pacs_url)

    def _pacs_client(self) -> PacsClient:
        from agent.wiring import pacs_config
        from tools.pacs import PacsClient

        if not self.pacs_enabled:
            raise InputError("no PACS is configured (settings.pacs_url)")
        return PacsClient(pacs_config(self.settings))

    def pacs_search(self, sess: SessionState, user: str | None, *, accession: str = "", patient_id: str = "",
                    date: str = "", modality: str = "") -> PacsPanel:
        """Search the PACS; the studies found are listed for the clinician to choose. What was typed goes to the
        PACS and, hashed, to the audit log (:func:`agent.pacs.audit_find`); nowhere else."""
        from agent.pacs import audit_find

        sess.pacs_studies, sess.pacs_series = {}, {}
        try:
            with self._pacs_client() as client:
                found = client.find(accession=accession or None, patient_id=patient_id or None, date=date or None,
                                    modality=modality or None)
        except RadconsultError as exc:
            return PacsPanel(f"⚠ Search failed: {exc}", [], [])
        audit_find(self.audit, user, accession=accession or None, patient_id=patient_id or None, date=date or None,
                   modality=modality or None, results=len(found))
        sess.pacs_studies = {s.study_uid: s for s in found}
        if not found:
            return PacsPanel("No study matches the search.", [], [])
        roles = self._pacs_roles(sess, found) if patient_id else {}
        return PacsPanel(f"{len(found)} study(ies) found: choose one." + (
            f" {sum(r.role == 'prior' for r in roles.values())} prior(s) of the current study are marked; open one "
            "into this case to measure the same lesion on it." if roles else ""),
            [(compare.found_label(render.study_label(s), roles.get(s.study_uid)), s.study_uid) for s in found], [])

    def pacs_choose_study(self, sess: SessionState, study_uid: str | None) -> PacsPanel:
        """List the image series of a study from the last search (one series: chosen already)."""
        from agent.pacs import study_choices

        sess.pacs_series = {}
        if not study_uid:
            return PacsPanel("", None, [])
        if study_uid not in sess.pacs_studies:
            return PacsPanel("⚠ Choose a study from the search results.", None, [])
        try:
            with self._pacs_client() as client:
                series = study_choices(client, study_uid)
        except RadconsultError as exc:
            return PacsPanel(f"⚠ The study's series could not be listed: {exc}", None, [])
        sess.pacs_series = {s.series_uid: s for s in series}
        if not series:
            return PacsPanel("⚠ The study holds no image series (only reports or other objects).", None, [])
        choices = [(render.series_label(s), s.series_uid) for s in series]
        if len(series) == 1:
            return PacsPanel("One image series: open it.", None, choices, series[0].series_uid)
        return PacsPanel(f"{len(series)} image series: choose one to open.", None, choices)

    def pacs_open(self, sess: SessionState, user: str | None, study_uid: str | None,
                  series_uid: str | None) -> PacsPanel:
        """Retrieve the chosen series and attach it, de-identified, to the current case exactly like an upload;
        on any error nothing is attached."""
        from agent.pacs import audit_open, open_series

        case = sess.case
        if not study_uid or study_uid not in sess.pacs_studies:
            return PacsPanel("⚠ Search, then choose a study.")
        if not series_uid or series_uid not in sess.pacs_series:
            return PacsPanel("⚠ Choose one of the study's series to open.")
        try:
            with self._pacs_client() as client:
                opened = open_series(self.settings, client, study_uid, series_uid)
        except RadconsultError as exc:
            return PacsPanel(f"⚠ Not opened: {exc}")
        study = opened.study
        case.studies.append(study)
        case.saliency = None
        case.pending_point = None
        case.shown = None
        sess.pacs_opened[study_uid] = case.case_id
        if study.study_uid:
            case.pacs_study_uids.add(study.study_uid)
        audit_open(self.audit, user, study, images=opened.images, skipped=len(opened.notes), files_written=False,
                   case_id=case.case_id)
        notes = "".join(f"<br>Note: {html.escape(n)}" for n in opened.notes)
        return PacsPanel(f"✓ Opened {opened.images} image(s) from the PACS: {study.metadata.modality or '?'} "
                         f"{' x '.join(str(x) for x in study.shape)} ({opened.seconds:.1f} s), de-identified"
                         + notes)

    def can_send(self, case: CaseView) -> bool:
        """True when the case's current summary version is signed and its study was opened from the PACS."""
        if not self.pacs_enabled:
            return False
        try:
            rv = self._report(case)
        except RadconsultError:
            return False
        return bool(rv is not None and rv.is_signed and rv.report.study is not None
                    and rv.report.study.study_uid in case.pacs_study_uids)

    def send_to_pacs(self, sess: SessionState, user: str | None) -> str:
        """Send the current signed version to the PACS as a DICOM SR filed under the original study, once;
        a second send of the same version is a no-op that says so. Returns the status line (HTML)."""
        from agent.pacs import SentLog, audit_send, check_signed, send_report
        from agent.wiring import reid_map

        case = sess.case
        try:
            rv = self._report(case)
            if rv is None:
                raise InputError("draft and sign a summary first")
        except RadconsultError as exc:
            return f"⚠ {html.escape(str(exc))}<br>" + self._summary_status(case)
        try:
            check_signed(self.reports, rv)
            if rv.report.study is None or rv.report.study.study_uid not in case.pacs_study_uids:
                raise InputError("the study of this summary was not opened from the PACS: only those are sent back")
            with self._pacs_client() as client:
                result = send_report(rv, reid_map(self.settings), client, SentLog.for_settings(self.settings))
        except RadconsultError as exc:  # NotSignedError, PacsError (down, 401, rejected), no map entry
            audit_send(self.audit, user, rv, result=None, error=exc)
            return f"⚠ Not sent: {html.escape(str(exc))}<br>" + self._summary_status(case)
        audit_send(self.audit, user, rv, result=result)
        if result.already_sent:
            msg = (f'<span class="rc-pacs-sent" data-state="already">v{rv.version} was already sent to the PACS at '
                   f"{html.escape(result.sent_at)}: nothing was sent again.</span>")
        else:
            msg = (f'<span class="rc-pacs-sent" data-state="sent">✓ Sent v{rv.version} to the PACS, filed under '
                   f"the original study ({result.seconds:.1f} s).</span>")
        return msg + "<br>" + self._summary_status(case)
