"""The consultation API used by the CLI and the UI.

::

    consult = Consultation(settings)                # cheap; the LLM loads on the first question
    result = consult.ask("case-1", "Follow-up for a 7 mm solid nodule?", images=["cxr.dcm"],
                         patient=None, on_token=print_piece)
    result.answer, result.citations, result.unsupported_sentences, result.tool_calls, result.timings
    summary = consult.summary("case-1")             # agent.summary.Summary (Markdown / JSON)

Each case id is one LangGraph thread in the SQLite checkpointer (``settings.cases_db_path``), so a case
survives restarts: follow-up questions see the earlier turns, the evidence ledger and the studies.
Images are loaded (and de-identified) by ``tools.imaging.load`` before anything else sees them; the
model sees studies only as S1, S2 ... and never the patient key.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.evidence import Evidence, Ledger
from agent.graph import TurnRuntime, build_graph
from agent.llm.base import ChatBackend, TokenCallback
from agent.prompts import render
from agent.tools_adapter import AgentTool, AttachedStudy, ToolContext, build_tools
from tools.errors import InputError, LLMError, RadconsultError

if TYPE_CHECKING:
    from agent.settings import Settings
    from agent.summary import Summary
    from tools.imaging import ImageStudy

log = logging.getLogger(__name__)

DISCLAIMER = "Decision support, not a diagnosis: a clinician must review every statement."


@dataclass
class TurnResult:
    """One answered question. ``answer`` is as written; ``marked_answer`` flags unsupported sentences."""

    case_id: str
    question: str
    answer: str
    marked_answer: str
    citations: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    unsupported_sentences: list[str]
    citation_validity: float | None
    model: str
    timings: dict[str, float | None]
    error: str | None = None
    studies: list[dict[str, Any]] = field(default_factory=list)
    # sentences the model left uncited that the verifier attributed to the one item supporting them
    attributed_sentences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "question": self.question, "answer": self.answer,
                "marked_answer": self.marked_answer, "citations": self.citations, "tool_calls": self.tool_calls,
                "unsupported_sentences": self.unsupported_sentences, "citation_validity": self.citation_validity,
                "model": self.model, "timings": self.timings, "error": self.error, "studies": self.studies,
                "attributed_sentences": self.attributed_sentences, "disclaimer": DISCLAIMER}


def _hint_line(question: str, tools: dict[str, Any], has_patient: bool) -> str:
    from agent.routing import hint

    line = hint(question, tools, has_patient)
    return f"\n{line}" if line else ""


def _study_label(study: ImageStudy) -> str:
    m = study.metadata
    bits = [b for b in (m.modality, m.body_part, m.view_position, m.study_date) if b]
    return " ".join(str(b) for b in bits) or study.source_format


class Consultation:
    """Consultations by case id, with memory. Thread-safe: turns are serialised by one lock."""

    def __init__(self, settings: Settings, backend: ChatBackend | None = None,
                 tools: dict[str, AgentTool] | None = None, checkpoint_path: Path | None = None) -> None:
        self.settings = settings
        self._backend = backend
        self._tools = tools
        self._checkpoint_path = checkpoint_path or settings.cases_db_path
        self._graph: Any = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._runtime: TurnRuntime | None = None
        self._studies: dict[tuple[str, str], ImageStudy] = {}
        self._warming = threading.Event()  # set while warm_up() runs

    # --- lazy parts ------------------------------------------------------------------------------
    @property
    def backend(self) -> ChatBackend:
        if self._backend is None:
            from agent.llm import make_backend

            self._backend = make_backend(self.settings)
        return self._backend

    @property
    def model_name(self) -> str:
        return getattr(self._backend, "name", None) or self.settings.llm

    @property
    def tools(self) -> dict[str, AgentTool]:
        if self._tools is None:
            self._tools = build_tools(self.settings)
        return self._tools

    def _get_graph(self) -> Any:
        if self._graph is None:
            from langgraph.checkpoint.sqlite import SqliteSaver

            self._checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self._checkpoint_path), check_same_thread=False)
            saver = SqliteSaver(self._conn)
            self._graph = build_graph(self.backend, self.tools, self.settings, lambda: self._runtime, saver)
        return self._graph

    def _config(self, case_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": case_id},
                "recursion_limit": 6 * self.settings.max_tool_rounds + 12}

    def state(self, case_id: str) -> dict[str, Any]:
        """The checkpointed state of a case ({} for a new case)."""
        snap = self._get_graph().get_state(self._config(case_id))
        return dict(snap.values or {})

    # --- studies ---------------------------------------------------------------------------------
    def _load_images(self, case_id: str, images: list[Any], first_ref: int) -> tuple[list[dict[str, Any]],
                                                                                     list[AttachedStudy]]:
        """Load and attach ``images``. The case record keeps the ref, a label and the pseudonymous keys;
        never the file path, which often carries a patient's name (the studies live in this process)."""
        from agent.wiring import imaging_config
        from tools.imaging import ImageStudy, load

        records, attached = [], []
        for i, item in enumerate(images):
            ref = f"S{first_ref + i}"
            study = item if isinstance(item, ImageStudy) else load(Path(item).expanduser(), imaging_config(self.settings))
            self._studies[(case_id, ref)] = study
            label = _study_label(study)
            records.append({"ref": ref, "label": label, "patient_key": study.patient_key,
                            "study_key": getattr(study, "study_key", None)})
            attached.append(AttachedStudy(ref, study, label))
        return records, attached

    def _restore_studies(self, case_id: str, records: list[dict[str, Any]]) -> list[AttachedStudy]:
        """The case's studies held by this process; after a restart their pixels are gone (the tools then
        ask for the study to be attached again) while their evidence stays in the case."""
        return [AttachedStudy(rec["ref"], self._studies.get((case_id, rec["ref"])), rec.get("label", ""))
                for rec in records]

    # --- the turn --------------------------------------------------------------------------------
    def ask(self, case_id: str, question: str, images: list[Any] | None = None, patient: str | None = None,
            on_token: TokenCallback | None = None) -> TurnResult:
        """Answer one question in case ``case_id``. Errors of the LLM end the turn with a message, not a raise.

        Raises :class:`InputError` for an empty question or an unreadable image (nothing was asked then).
        """
        question = (question or "").strip()
        if not question:
            raise InputError("the question is empty")
        if not case_id or len(case_id) > 128:
            raise InputError("a case id of 1-128 characters is required")
        question = question[: self.settings.max_query_chars * 2]
        from tools.errors import FileMissingError
        from tools.imaging import ImageStudy

        for item in images or []:
            if not isinstance(item, ImageStudy) and not Path(item).expanduser().exists():
                raise FileMissingError(f"image not found: {Path(item).name}")
        with self._lock:
            t0 = time.perf_counter()
            graph = self._get_graph()
            prior = self.state(case_id)
            old_records = prior.get("studies", [])
            new_records, _ = self._load_images(case_id, list(images or []), len(old_records) + 1)
            records = old_records + new_records
            patient_key = patient or prior.get("patient_key") or next(
                (r.get("patient_key") for r in reversed(records) if r.get("patient_key")), None)
            ctx = ToolContext(self.settings, self._restore_studies(case_id, records), patient_key, question)
            self._runtime = TurnRuntime(ctx, on_token)
            studies_text = ", ".join(f"{r['ref']} ({r['label']})" for r in records) or "no image attached"
            user = {"role": "user", "question": question,
                    "content": render("user_turn", question=question, studies=studies_text,
                                      patient="available" if patient_key else "none",
                                      hint=_hint_line(question, self.tools, bool(patient_key))).rstrip()}
            start = len(prior.get("messages", []))
            update = {"messages": [user], "studies": new_records, "patient_key": patient_key,
                      "turn_start": start, "ev_start": len(prior.get("evidence", [])), "round": 0, "retries": 0, "force": False, "pending": [], "calls": [],
                      "llm_ms": 0.0, "tools_ms": 0.0, "error": None, "again": False}
            try:
                final = graph.invoke(update, self._config(case_id))
            except LLMError as exc:  # raised outside a node (e.g. the model failed to load)
                log.error("LLM failure: %s", exc)
                return self._error_result(case_id, question, str(exc), t0)
            except RadconsultError as exc:
                return self._error_result(case_id, question, str(exc), t0)
            record = final["turns"][-1]
            ledger = Ledger.from_dicts(final.get("evidence", []))
            cited = [ledger.get(i) for i in record["cited"]]
            timings = dict(record["timings"])
            timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            return TurnResult(case_id=case_id, question=question, answer=record["answer"],
                              marked_answer=record["marked_answer"],
                              citations=[e.citation() for e in cited if e is not None],
                              tool_calls=record["tool_calls"], unsupported_sentences=record["unsupported_sentences"],
                              citation_validity=record["citation_validity"], model=self.model_name,
                              timings=timings, error=record.get("error"),
                              attributed_sentences=record.get("attributed_sentences", []),
                              studies=[{"ref": r["ref"], "label": r["label"]} for r in records])

    def stream(self, case_id: str, question: str, images: list[Any] | None = None,
               patient: str | None = None) -> Iterator[str | TurnResult]:
        """Generator form of :meth:`ask`: yields text pieces as they are generated, then the TurnResult."""
        q: queue.Queue[Any] = queue.Queue()
        done = object()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = self.ask(case_id, question, images, patient, on_token=q.put)
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
        return TurnResult(case_id, question, answer, answer, [], [], [], None, self.model_name,
                          {"ttft_ms": None, "llm_ms": None, "tools_ms": None,
                           "total_ms": round((time.perf_counter() - t0) * 1000, 1)}, error=message)

    # --- start-up -------------------------------------------------------------------------------
    @property
    def is_warm(self) -> bool:
        """True once :meth:`warm_up` has finished (or was never started)."""
        return not self._warming.is_set()

    def warm_up(self) -> list[str]:
        """Prepare what the first question would otherwise wait for: the bundled knowledge base, the LLM
        and its fixed prompt prefix. Errors are logged and returned, never raised (the turn that needs
        the part reports it then). Safe to run in a background thread while questions arrive."""
        from agent.tools_adapter import ensure_kb

        self._warming.set()
        problems: list[str] = []
        try:
            for what, step in (("knowledge base", lambda: ensure_kb(self.settings)),
                               ("language model", self._warm_llm)):
                t0 = time.perf_counter()
                try:
                    step()
                    log.info("warm-up: %s ready in %.1f s", what, time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - a background start-up step must never crash
                    log.warning("warm-up: %s not ready: %s", what, exc)
                    problems.append(f"{what}: {exc}")
        finally:
            self._warming.clear()
        return problems

    def _warm_llm(self) -> None:
        messages = [{"role": "system", "content": render("system")}, {"role": "user", "content": "Hello"}]
        self.backend.chat(messages, [t.schema() for t in self.tools.values()], max_tokens=1)

    # --- case views ------------------------------------------------------------------------------
    def history(self, case_id: str) -> list[dict[str, Any]]:
        """The turn records of a case, oldest first."""
        return list(self.state(case_id).get("turns", []))

    def evidence(self, case_id: str) -> list[Evidence]:
        return Ledger.from_dicts(self.state(case_id).get("evidence", [])).items

    def summary(self, case_id: str, impression: bool = True) -> Summary:
        """The cited diagnostic summary of a case (the LLM writes only the Impression)."""
        from agent.summary import build_summary

        with self._lock:
            state = self.state(case_id)
            if not state.get("turns"):
                raise InputError(f"case '{case_id}' has no questions yet")
            return build_summary(state, backend=self.backend if impression else None, model_name=self.model_name)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._graph = None


Agent = Consultation
Callback = Callable[[str], None]
