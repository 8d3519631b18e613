"""Two turns of the same case at once: in one process they are serialised (each gets its own answer); across
processes the second is refused at once, never interleaved with the first (which would branch the case)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from agent.consultation import Consultation
from agent.llm.base import ChatResult
from tests.agent.fakes import ScriptedBackend, fake_tools
from tests.conftest import REPO_ROOT

SLOW_TURN = textwrap.dedent("""
    import sys, time
    from agent.consultation import Consultation
    from agent.llm.base import ChatResult
    from agent.settings import Settings
    from tests.agent.fakes import ScriptedBackend, fake_tools
    from tools.errors import CaseBusyError

    def slow(messages):
        time.sleep(3)
        return ChatResult(text="Answer to " + messages[-1]["content"].split("(case")[0].strip())

    settings = Settings(data_dir=sys.argv[1])
    c = Consultation(settings, backend=ScriptedBackend([slow]), tools=fake_tools(), read_frames=False)
    try:
        print(c.ask(sys.argv[2], sys.argv[3]).answer, flush=True)
    except CaseBusyError as exc:
        print("BUSY", exc, flush=True)
""")


def run_two(data_dir, case_a: str, case_b: str) -> list[str]:
    procs = []
    for case, question in ((case_a, "Question one?"), (case_b, "Question two?")):
        procs.append(subprocess.Popen([sys.executable, "-c", SLOW_TURN, str(data_dir), case, question],
                                      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(1.5)  # the first has taken its case by now
    return [p.communicate(timeout=120)[0].strip() for p in procs]


def test_a_second_process_on_the_same_case_is_refused(settings):
    out = run_two(settings.data_dir, "shared-case", "shared-case")
    assert out[0] == "Answer to Question one?"
    assert out[1].startswith("BUSY") and "answering another question" in out[1]


def test_control_two_processes_on_different_cases_both_answer(settings):
    out = run_two(settings.data_dir, "case-a", "case-b")
    assert out == ["Answer to Question one?", "Answer to Question two?"]


def test_two_threads_on_one_case_are_serialised_and_keep_their_answers(settings):
    def echo(messages):
        time.sleep(0.5)
        return ChatResult(text="Answer to " + messages[-1]["content"].split("(case")[0].strip())

    consult = Consultation(settings, backend=ScriptedBackend([echo, echo]), tools=fake_tools(), read_frames=False)
    answers: dict[str, str] = {}

    def ask(q: str) -> None:
        answers[q] = consult.ask("one-case", q).answer

    threads = [threading.Thread(target=ask, args=(q,)) for q in ("First?", "Second?")]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(30)
    assert answers == {"First?": "Answer to First?", "Second?": "Answer to Second?"}
    assert [t.question for t in consult.history("one-case")] == ["First?", "Second?"]
