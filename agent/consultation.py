"""The consultation API used by the CLI and the UI (it implements :class:`agent.protocol.ConsultationAPI`).

::

    consult = Consultation(settings)                # cheap; the LLM loads on the first question
    result = consult.ask("case-1", "Follow-up for a 7 mm solid nodule?", images=["cxr.dcm"], on_token=print)
    result.answer, result.citations, result.unsupported_sentences, result.tool_calls, result.timings
    summary = consult.summary("case-1")             # agent.summary.Summary (Markdown / JSON)

Each case id is one LangGraph thread in the SQLite checkpointer (``settings.cases_db_path``), so a case
survives restarts: follow-up questions see the earlier turns, the evidence ledger and the studies.
Images are loaded (and de-identified) by ``tools.imaging.load`` before anything else sees them; the
model sees studies only as S1, S2 ... and never the patient key.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.comparison import comparison_evidence
from agent.evidence import Evidence, Ledger
from agent.frame.model import CaseFrame
from agent.graph import AgentGraph, GraphLimits, TurnContext, turn_update
from agent.llm.base import ChatBackend, TokenCallback
from agent.llm.lazy import LazyBackend
from agent.prompts import render
from agent.results import ModelCard, StudyRecord, Timings, ToolCallRecord, TurnResult
from agent.services import build_services
from agent.toolbox import AttachedStudy, ToolContext, ToolServices, ToolSpec, toolset
from tools.errors import CaseBusyError, CaseStoreError, FileMissingError, InputError, RadconsultError
from tools.text_safety import neutralise

if TYPE_CHECKING:
    from agent.settings import Settings
    from agent.summary import Summary
    from tools.imaging import ImageStudy
    from tools.measure import Measurement

log = logging.getLogger(__name__)

def _hint_line(question: str, tools: dict[str, ToolSpec], has_patient: bool) -> str:
    from agent.routing import hint

    line = hint(question, tools, has_patient)
    return f"\n{line}" if line else ""


def _study_label(study: ImageStudy) -> str:
    m = study.metadata
    bits = [b for b in (m.modality, m.body_part, m.view_position, m.study_date) if b]
    return " ".join(str(b) for b in bits) or study.source_format


def measurement_evidence(measurements: Sequence[Measurement], records: list[dict[str, Any]],
                         ledger: Ledger) -> list[Evidence]:
    """Measurements as evidence of the turn, numbered after the case's ledger, with their provenance."""
    refs = {r.get("study_key"): r["ref"] for r in records}
    out = []
    for m in measurements:
        ref = refs.get(m.study_key, records[-1]["ref"] if records else "?")
        what = f"{m.lesion} {m.label}" if m.lesion and m.present else m.label if m.present else f"{m.lesion} not seen"
        out.append(ledger.add("measurement", "viewer", "measurement", title=f"{what} on study {ref}",
                              quote=m.describe(), facts={"study": ref, **m.to_dict()}))
    return out


def result_from_record(case_id: str, record: dict[str, Any], ledger: Ledger, model: str,
                       studies: list[dict[str, Any]], total_ms: float, saliency: tuple = ()) -> TurnResult:
    """A :class:`TurnResult` from a checkpointed turn record (the case's ledger as it stands)."""
    t = record["timings"]
    return TurnResult(
        case_id=case_id, question=record["question"], answer=record["answer"],
        marked_answer=record["marked_answer"], model=model,
        timings=Timings(ttft_ms=t.get("ttft_ms"), llm_ms=t.get("llm_ms"), tools_ms=t.get("tools_ms"),
                        total_ms=total_ms),
        tool_calls=tuple(ToolCallRecord.from_dict(c) for c in record["tool_calls"]),
        evidence=tuple(ledger.items), cited_ids=tuple(record["cited"]),
        unsupported_sentences=tuple(record["unsupported_sentences"]),
        attributed_sentences=tuple(record.get("attributed_sentences", [])),
        contradicted_sentences=tuple(record.get("contradicted_sentences", [])),
        citation_validity=record["citation_validity"], error=record.get("error"),
        studies=tuple(StudyRecord(s["ref"], s["label"]) for s in studies), saliency=saliency,
        frame=CaseFrame.from_dict(record["frame"]) if record.get("frame") else None,
        clarifying_question=record.get("clarifying_question"))


class Consultation:
    """Consultations by case id, with memory. Thread-safe: turns are serialised by one lock."""

    def __init__(self, settings: Settings, backend: ChatBackend | None = None,
                 tools: dict[str, ToolSpec] | None = None, services: ToolServices | None = None,
                 checkpoint_path: Path | None = None, read_frames: bool = True) -> None:
        self.settings = settings
        self._read_frames = read_frames
        self._backend = backend
        self._owns_backend = backend is None  # made here from the settings: closed here too
        self._services = services
        self._tools = tools
        self._checkpoint_path = checkpoint_path or settings.cases_db_path
        self._graph: AgentGraph | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._studies: dict[tuple[str, str], ImageStudy] = {}
        self._ready = threading.Event()  # cleared while warm_up() runs: a turn waits for it
        self._ready.set()

    # --- lazy parts ------------------------------------------------------------------------------
    @property
    def backend(self) -> ChatBackend:
        if self._backend is None:
            from agent.llm import make_backend

            self._backend = make_backend(self.settings)
        return self._backend

    @property
    def model_name(self) -> str:
        return self._backend.name if self._backend is not None else self.settings.llm

    @property
    def services(self) -> ToolServices:
        if self._services is None:
            self._services = build_services(self.settings)
        return self._services

    @property
    def tools(self) -> dict[str, ToolSpec]:
        if self._tools is None:
            self._tools = toolset(self.services.classifiers)
        return self._tools

    def _get_graph(self) -> AgentGraph:
        if self._graph is None:
            from langgraph.checkpoint.sqlite import SqliteSaver

            self._checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self._checkpoint_path), check_same_thread=False)
            limits = GraphLimits(max_tool_rounds=self.settings.max_tool_rounds,
                                 tool_timeout_s=self.settings.tool_timeout_s,
                                 prose_tokens=min(self.settings.llm_max_tokens, self.settings.llm_prose_tokens))
            if self._owns_backend:
                from agent.llm import parse_spec

                parse_spec(self.settings.llm)  # a malformed setting is said at once, whether a turn needs the model
            # the model is built (and its worker started) only when a turn needs it: the rules answer many alone
            backend = LazyBackend(lambda: self.backend, self.model_name)
            self._graph = AgentGraph(backend, self.tools, limits, SqliteSaver(self._conn), self._read_frames)
        return self._graph

    def _config(self, case_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": case_id},
                "recursion_limit": 8 * self.settings.max_tool_rounds + 16}

    def state(self, case_id: str) -> dict[str, Any]:
        """The checkpointed state of a case ({} for a new case)."""
        snap = self._get_graph().compiled.get_state(self._config(case_id))
        return dict(snap.values or {})

    # --- studies ---------------------------------------------------------------------------------
    def _load_images(self, case_id: str, images: Sequence[Any], first_ref: int) -> list[dict[str, Any]]:
        """Load and attach ``images``. The case record keeps the ref, a label and the pseudonymous keys;
        never the file path, which often carries a patient's name (the studies live in this process)."""
        from agent.wiring import imaging_config
        from tools.imaging import ImageStudy, load

        records = []
        for i, item in enumerate(images):
            ref = f"S{first_ref + i}"
            study = item if isinstance(item, ImageStudy) else load(Path(item).expanduser(), imaging_config(self.settings))
            self._studies[(case_id, ref)] = study
            records.append({"ref": ref, "label": _study_label(study), "patient_key": study.patient_key,
                            "study_key": study.study_key, "study_date": study.metadata.study_date,
                            "modality": study.metadata.modality, "body_part": study.metadata.body_part})
        return records

    def _attached(self, case_id: str, records: list[dict[str, Any]]) -> list[AttachedStudy]:
        """The case's studies held by this process; after a restart their pixels are gone (the tools then
        ask for the study to be attached again) while their evidence stays in the case."""
        return [AttachedStudy(rec["ref"], self._studies.get((case_id, rec["ref"])), rec.get("label", ""))
                for rec in records]

    # --- the turn --------------------------------------------------------------------------------
    def ask(self, case_id: str, question: str, images: Sequence[ImageStudy | str | Path] | None = None,
            patient: str | None = None, on_token: TokenCallback | None = None,
            summary: bool = False, measurements: Sequence[Measurement] = ()) -> TurnResult:
        """Answer one question in case ``case_id``. Errors of the LLM end the turn with a message, not a raise.

        Raises :class:`InputError` for an empty question or an unreadable image (nothing was asked then).
        ``summary=True`` also drafts the case's summary into the result. ``measurements`` (lengths marked on
        the viewer or given with ``ask --measure``) become evidence of this turn, and the case frame reads
        the nodule's size from them.
        """
        from tools.imaging import ImageStudy

        question = (question or "").strip()
        if not question:
            raise InputError("the question is empty")
        if not case_id or len(case_id) > 128:
            raise InputError("a case id of 1-128 characters is required")
        question = question[: self.settings.max_query_chars * 2]
        for item in images or []:
            if not isinstance(item, ImageStudy) and not Path(item).expanduser().exists():
                raise FileMissingError(f"image not found: {Path(item).name}")
        with self._lock, self._case_lock(case_id):
            t0 = time.perf_counter()
            result = self._turn(case_id, question, list(images or []), patient, on_token, t0, list(measurements))
            if summary and result.error is None:
                result = _with_summary(result, self.summary(case_id))
            return result

    @contextlib.contextmanager
    def _case_lock(self, case_id: str) -> Iterator[None]:
        """One turn per case at a time, across processes (two `radconsult ask --case X` at once): a second
        turn is refused at once, before anything is read or written, rather than branch the case."""
        import hashlib

        from filelock import FileLock, Timeout

        locks = self._checkpoint_path.parent / "case-locks"
        name = hashlib.sha256(case_id.encode()).hexdigest()[:24]  # the case id may carry anything
        lock = FileLock(str(locks / f"{name}.lock"), timeout=0, is_singleton=False)
        try:
            locks.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise CaseBusyError(f"case {case_id!r} is answering another question; ask again when it has "
                                "finished") from None
        except OSError as exc:
            raise CaseStoreError(f"cannot write the case database's lock in {locks} ({exc.strerror}); make the "
                                 "data directory writable, or set RADCONSULT_DATA_DIR to a writable place") from None
        try:
            yield
        finally:
            lock.release()

    def _turn(self, case_id: str, question: str, images: list[Any], patient: str | None,
              on_token: TokenCallback | None, t0: float, measurements: list[Measurement]) -> TurnResult:
        graph = self._get_graph()
        prior = self.state(case_id)
        old_records = prior.get("studies", [])
        new_records = self._load_images(case_id, images, len(old_records) + 1)
        records = old_records + new_records
        patient_key = patient or prior.get("patient_key") or next(
            (r.get("patient_key") for r in reversed(records) if r.get("patient_key")), None)
        tool_ctx = ToolContext(self.services, self._attached(case_id, records), patient_key, question)
        before = Ledger.from_dicts(prior.get("evidence", []))
        measured = measurement_evidence(measurements, records, Ledger(list(before.items)))
        # a comparison that cannot be made (different patients, no study date) stops the turn here, before
        # anything is written
        measured += comparison_evidence(measured, before, records)
        studies_text = ", ".join(f"{r['ref']} ({r['label']})" for r in records) or "no image attached"
        if measured:
            studies_text += "; measured: " + "; ".join(f"[{e.id}] {e.quote}" for e in measured)
        user = {"role": "user", "question": question,
                "content": render("user_turn", question=neutralise(question)[0], studies=studies_text,
                                  patient="available" if patient_key else "none",
                                  hint=_hint_line(question, self.tools, bool(patient_key))).rstrip()}
        update = turn_update(patient_key, user, new_records, len(prior.get("messages", [])),
                             len(prior.get("evidence", [])))
        update["evidence"] = [e.to_dict() for e in measured]
        try:
            final = graph.compiled.invoke(update, self._config(case_id),
                                          context=TurnContext(tool_ctx, on_token, started=t0,
                                                              wait_ready=self.wait_until_ready))
        except RadconsultError as exc:  # raised outside a node (e.g. the model failed to load)
            log.error("turn failed: %s", exc)
            return self._error_result(case_id, question, str(exc), t0)
        ledger = Ledger.from_dicts(final.get("evidence", []))
        return result_from_record(case_id, final["turns"][-1], ledger, self.model_name, records,
                                  round((time.perf_counter() - t0) * 1000, 1), tuple(tool_ctx.saliency))

    def stream(self, case_id: str, question: str, images: Sequence[ImageStudy | str | Path] | None = None,
               patient: str | None = None, measurements: Sequence[Measurement] = ()) -> Iterator[str | TurnResult]:
        """Generator form of :meth:`ask`: yields text pieces as they are generated, then the TurnResult."""
        q: queue.Queue[Any] = queue.Queue()
        done = object()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = self.ask(case_id, question, images, patient, on_token=q.put,
                                         measurements=measurements)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc
            finally:
                q.put(done)

        threading.Thread(target=work, daemon=True, name="radconsult-turn").start()
        while (item := q.get()) is not done:
            yield item
        if "error" in box:
            raise box["error"]
        yield box["result"]

    def _error_result(self, case_id: str, question: str, message: str, t0: float) -> TurnResult:
        answer = f"I could not complete this answer: {message}"
        return TurnResult(case_id, question, answer, answer, self.model_name,
                          Timings(total_ms=round((time.perf_counter() - t0) * 1000, 1)), error=message)

    # --- start-up -------------------------------------------------------------------------------
    @property
    def is_warm(self) -> bool:
        """True once :meth:`warm_up` has finished (or was never started)."""
        return self._ready.is_set()

    def wait_until_ready(self, timeout_s: float | None = None) -> bool:
        """Block until a running warm-up has finished; True when ready (False on ``timeout_s``)."""
        return self._ready.wait(timeout_s)

    def start_warm_up(self) -> threading.Thread:
        """Run :meth:`warm_up` in a background thread. ``is_warm`` is False from this call on, so a
        question that arrives before the thread has even started still waits for it."""
        self._ready.clear()
        thread = threading.Thread(target=self.warm_up, name="radconsult-warm-up", daemon=True)
        thread.start()
        return thread

    def warm_up(self) -> list[str]:
        """Prepare what the first question would otherwise wait for: the bundled knowledge base, the LLM
        and its fixed prompt prefix. Errors are logged and returned, never raised (the turn that needs
        the part reports it then). A question asked meanwhile waits for it only before the model or a search
        runs (on 2 cores the knowledge-base build and the model's prompt prefix would starve it until it timed
        out); one the rules and a calculator answer does not wait."""
        self._ready.clear()
        problems: list[str] = []
        try:
            for what, step in (("knowledge base", self.services.knowledge.ensure_ready),
                               ("language model", self._warm_llm)):
                t0 = time.perf_counter()
                try:
                    step()
                    log.info("warm-up: %s ready in %.1f s", what, time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - a background start-up step must never crash
                    log.warning("warm-up: %s not ready: %s", what, exc)
                    problems.append(f"{what}: {exc}")
        finally:
            self._ready.set()
        return problems

    def _warm_llm(self) -> None:
        messages = [{"role": "system", "content": render("system")}, {"role": "user", "content": "Hello"}]
        self.backend.chat(messages, [t.schema() for t in self.tools.values()], max_tokens=1)

    # --- case views ------------------------------------------------------------------------------
    def history(self, case_id: str) -> list[TurnResult]:
        """The turns of a case, oldest first (timings as recorded; no saliency maps)."""
        state = self.state(case_id)
        ledger = Ledger.from_dicts(state.get("evidence", []))
        return [result_from_record(case_id, rec, ledger, self.model_name, state.get("studies", []), 0.0)
                for rec in state.get("turns", [])]

    def evidence(self, case_id: str) -> list[Evidence]:
        return Ledger.from_dicts(self.state(case_id).get("evidence", [])).items

    def model_cards(self) -> list[ModelCard]:
        """The cards of the installed classifiers (name, version, intended use), for the page and exports."""
        try:
            bundles = self.services.classifiers.models()
        except RadconsultError as exc:
            log.info("model cards unavailable: %s", exc)
            return []
        return [ModelCard(b.name, b.version, str(b.card().get("intended_use") or "")) for b in bundles]

    def summary(self, case_id: str, impression: bool = True) -> Summary:
        """The cited diagnostic summary of a case (the LLM writes only the Impression)."""
        from agent.summary import build_summary

        with self._lock:
            state = self.state(case_id)
            if not state.get("turns"):
                raise InputError(f"case '{case_id}' has no questions yet")
            return build_summary(state, backend=self.backend if impression else None, model_name=self.model_name)

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._owns_backend and self._backend is not None:
            self._backend.close()  # a worker process holding the model ends with the consultation
            self._backend = None


def _with_summary(result: TurnResult, summary: Summary) -> TurnResult:
    import dataclasses

    return dataclasses.replace(result, summary=summary)
