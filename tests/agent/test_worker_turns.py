"""A model worker that crashes or hangs in the middle of a consultation turn, seen from the page: the real
UI controller, the real Consultation and tools, the real packaged 0.5B model in its worker process.

What must hold: that turn ends with a message the clinician can read; the case stays usable (the next
question is answered, and the failed turn is not fed back to the model); the summary signed before the
crash, the audit log and the signature ledger are intact; this process (the UI server) never goes down."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from agent.audit import AuditLog
from agent.consultation import Consultation
from agent.history import prompt_messages
from agent.llm.runner import RunnerSpec
from agent.llm.worker import WorkerBackend
from agent.signoff import ReportStore
from agent.ui import UIController
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture

GUIDELINE = "Fleischner follow-up for a single 7 mm solid nodule in a low-risk 60-year-old?"
OPEN_QUESTION = "In two sentences, what does a ground-glass nodule look like on CT?"


@pytest.fixture
def page(qwen_path, settings, tmp_path):  # noqa: F811
    worker = WorkerBackend(RunnerSpec("gguf", {"model_path": qwen_path, "n_ctx": 8192, "n_threads": 0,
                                               "max_tokens": 96, "timeout_s": 300,
                                               "state_dir": tmp_path / "kv"}),
                           name="gguf:qwen2.5-coder-0.5b", backoff_s=(0.0,), max_crashes=10)
    consult = Consultation(settings, backend=worker)
    ctl = UIController(consult, settings)
    yield ctl, worker
    consult.close()
    worker.close()


def strike(worker: WorkerBackend, sig: int) -> threading.Thread:
    """Send ``sig`` to the worker shortly after its next chat has started."""
    def body() -> None:
        deadline = time.monotonic() + 600
        while not worker.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        if worker.pid:
            os.kill(worker.pid, sig)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def last_answer(ctl: UIController, sess, question: str) -> str:
    updates = list(ctl.ask(sess, "dr_a", question))
    return updates[-1].chat[-1]["content"]


@pytest.mark.parametrize("sig, says", [(signal.SIGSEGV, "stopped unexpectedly"),
                                       (signal.SIGSTOP, "stopped responding")])
def test_a_worker_crash_or_hang_ends_only_that_turn(page, settings, sig, says):
    ctl, worker = page
    sess = ctl.session(None, "browser-1")
    first = last_answer(ctl, sess, GUIDELINE)
    assert "could not complete" not in first
    ctl.draft(sess, "dr_a")
    assert "SIGNED" in ctl.sign(sess, "dr_a").status_html
    if sig == signal.SIGSTOP:
        worker.stall_s = 3.0
    killer = strike(worker, sig)
    failed = last_answer(ctl, sess, OPEN_QUESTION)
    killer.join(5)
    assert says in failed and "ask again" in failed
    worker.stall_s = 120.0
    # the case goes on: the next question is answered by a new worker, and the failed turn is left out
    again = last_answer(ctl, sess, OPEN_QUESTION)
    assert "could not complete" not in again and again.strip()
    state = ctl.agent.state(sess.case.case_id)
    sent = prompt_messages(state["messages"], len(state["messages"]), "system")
    assert not any(says in str(m.get("content")) for m in sent)
    # the audit log says the turn failed, and nothing written before the crash was lost or torn
    answers = [r for r in (json.loads(line) for line in settings.audit_log_path.read_text().splitlines())
               if r["action"] == "answer"]
    assert [a["details"]["failed"] for a in answers] == [False, True, False]
    assert AuditLog.from_settings(settings).verify().ok
    reports = ReportStore.from_settings(settings)
    assert reports.verify().ok and reports.load(sess.case.case_id).is_signed
