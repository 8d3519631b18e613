"""The supervised model worker: the real packaged 0.5B model in a child process (streaming, tool calls with
their checks, the prefix cache), and what a native crash, an out-of-memory kill or a hang does to a turn.

The crash-loop and repack cases use ``tests.agent.fake_runner``: the real runner protocol around a backend
that crashes on purpose, at the process boundary, so they need no model."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from agent.llm.base import ToolSchema
from agent.llm.runner import RunnerSpec, build_backend
from agent.llm.worker import WorkerBackend
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture
from tools.errors import (
    LLMCrashedError,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    ModelUnavailableError,
)

# long enough (over 64 tokens) for its KV state to be kept on disk as the prompt prefix
SYSTEM = ("You are a concise assistant for radiologists. Answer in one short sentence, in plain English, "
          "without lists, headings or code. If you do not know, say so. Never invent numbers, dates, doses or "
          "references. Keep to the question that was asked and do not add advice that was not requested.")


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def gguf_spec(path, state_dir) -> RunnerSpec:
    return RunnerSpec("gguf", {"model_path": path, "n_ctx": 2048, "n_threads": 2, "max_tokens": 48,
                               "timeout_s": 300, "state_dir": state_dir})


def fake(mode: str, **kw) -> WorkerBackend:
    kw.setdefault("backoff_s", (0.0,))
    return WorkerBackend(RunnerSpec("fake", {"mode": mode, **kw.pop("spec", {})}), name="fake",
                         runner="tests.agent.fake_runner", **kw)


@pytest.fixture(scope="module")
def worker(qwen_path, tmp_path_factory):  # noqa: F811
    w = WorkerBackend(gguf_spec(qwen_path, tmp_path_factory.mktemp("kv")), name="gguf:0.5b", stall_s=120, max_crashes=10,
                      backoff_s=(0.0,))
    yield w
    w.close()


def kill_after_first_token(worker: WorkerBackend, sig: int):
    """An on_token callback that sends ``sig`` to the worker once the answer has started to stream."""
    pieces: list[str] = []

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 1:
            os.kill(worker.pid, sig)

    return on_token, pieces


# --- the real model through the worker ---------------------------------------------------------------
def test_worker_streams_the_same_answer_as_in_process(worker, qwen_path, tmp_path):  # noqa: F811
    pieces: list[str] = []
    res = worker.chat(msgs("Name three primary colours."), None, on_token=pieces.append, max_tokens=16)
    assert res.text and "".join(pieces) == res.text and res.ttft_ms is not None
    assert worker.info["repack"] in (True, False) and worker.info["n_threads"] == 2
    local = build_backend(gguf_spec(qwen_path, tmp_path))
    try:
        assert local.chat(msgs("Name three primary colours."), None, max_tokens=16).text == res.text
    finally:
        local.close()


def test_tool_checks_run_in_the_parent(worker):
    seen: list[dict] = []

    def check(arguments: dict) -> str | None:
        seen.append(arguments)
        return None

    tool = ToolSchema("lookup_term", "Look up the definition of a radiology term.",
                      {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]},
                      check=check)
    res = worker.chat(msgs("Use lookup_term to define 'atelectasis'."), [tool], tool_choice="lookup_term",
                      max_tokens=32)
    assert [c.name for c in res.tool_calls] == ["lookup_term"]
    assert seen and seen[0] == res.tool_calls[0].arguments  # the closure ran here, on the child's request


def test_prefix_cache_is_restored_by_a_new_worker(worker, caplog):
    worker.chat(msgs("Say yes."), None, max_tokens=2)  # the prefix state is on disk now
    worker.close()
    with caplog.at_level(logging.INFO):
        worker.chat(msgs("Say no."), None, max_tokens=2)
    assert any("restored the prompt prefix" in r.getMessage() for r in caplog.records)


def test_sigsegv_mid_answer_ends_only_that_turn(worker):
    old = worker.pid or worker.start()["pid"]
    on_token, pieces = kill_after_first_token(worker, signal.SIGSEGV)
    with pytest.raises(LLMCrashedError, match="stopped unexpectedly.*SIGSEGV.*ask again"):
        worker.chat(msgs("Count from one to fifty in words."), None, on_token=on_token, max_tokens=48)
    assert pieces  # it had started answering
    res = worker.chat(msgs("Say hello."), None, max_tokens=4)  # the next turn answers, from a new child
    assert res.text and worker.pid not in (None, old)


def test_oom_kill_is_reported_as_such(worker):
    worker.start()
    on_token, _ = kill_after_first_token(worker, signal.SIGKILL)
    with pytest.raises(LLMCrashedError, match="killed by the system"):
        worker.chat(msgs("Count from one to fifty in words."), None, on_token=on_token, max_tokens=48)
    assert worker.chat(msgs("Say hello."), None, max_tokens=4).text


def test_a_hung_worker_is_stopped_and_replaced(worker):
    worker.start()
    hung = worker.pid
    worker.stall_s = 2.0
    try:
        on_token, _ = kill_after_first_token(worker, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="stopped responding"):
            worker.chat(msgs("Count from one to fifty in words."), None, on_token=on_token, max_tokens=48)
        assert time.monotonic() - t0 < 30
    finally:
        worker.stall_s = 120.0
    assert worker.chat(msgs("Say hello."), None, max_tokens=4).text
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # the stopped child was killed, not left behind


# --- supervision rules (a runner that crashes on purpose) ----------------------------------------------
def test_repeated_crashes_stop_the_restarts():
    w = fake("crash", max_crashes=3, crash_window_s=600)
    try:
        for _ in range(3):
            with pytest.raises(LLMCrashedError):
                w.chat(msgs("hi"))
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="crashed 3 times.*doctor"):
            w.chat(msgs("hi"))
        assert time.monotonic() - t0 < 1 and not w.running  # refused at once: no fourth child
    finally:
        w.close()


def test_back_off_between_restarts():
    w = fake("crash", max_crashes=5, backoff_s=(1.5,))
    try:
        with pytest.raises(LLMCrashedError):
            w.chat(msgs("hi"))
        t0 = time.monotonic()
        with pytest.raises(LLMCrashedError):
            w.chat(msgs("hi"))
        assert time.monotonic() - t0 >= 1.2
    finally:
        w.close()


def test_a_repacked_runtime_that_crashes_before_answering_restarts_without_repacking(caplog):
    w = fake("crash-if-repacked", spec={"repack": "auto"})
    try:
        assert w.start()["repack"] is True
        with pytest.raises(LLMCrashedError):
            w.chat(msgs("first question"))
        with caplog.at_level(logging.WARNING):
            assert w.chat(msgs("second question")).text == "second question"
        assert w.info["repack"] is False
    finally:
        w.close()


def test_repacking_forced_on_is_not_overridden():
    w = fake("crash-if-repacked", spec={"repack": "on"}, max_crashes=2)
    try:
        for _ in range(2):
            with pytest.raises(LLMCrashedError):
                w.chat(msgs("hi"))
    finally:
        w.close()


def test_a_model_that_will_not_load_is_a_typed_error():
    w = fake("fail-load")
    with pytest.raises(ModelUnavailableError, match="not a GGUF file"):
        w.chat(msgs("hi"))
    assert not w.running


def test_checks_and_streaming_through_the_protocol():
    w = fake("echo")
    try:
        pieces: list[str] = []
        tool = ToolSchema("t", "t", {"type": "object"}, check=lambda args: f"checked {sorted(args)}")
        res = w.chat(msgs("one two three"), [tool], on_token=pieces.append)
        assert "".join(pieces).split() == ["one", "two", "three"]
        assert res.text == "one two three [checked ['echo']]"
    finally:
        w.close()


def test_a_failing_callback_does_not_desynchronise_the_worker():
    w = fake("echo")
    try:
        def boom(piece: str) -> None:
            raise RuntimeError("the browser went away")

        with pytest.raises(RuntimeError, match="browser"):
            w.chat(msgs("alpha beta gamma"), None, on_token=boom)
        assert w.chat(msgs("delta")).text == "delta"  # not the rest of the previous reply
    finally:
        w.close()


def test_the_worker_ends_with_its_parent(tmp_path):
    """A SIGKILLed app leaves no model process behind."""
    script = textwrap.dedent("""
        import sys, time
        from agent.llm.runner import RunnerSpec
        from agent.llm.worker import WorkerBackend
        w = WorkerBackend(RunnerSpec("fake", {"mode": "echo"}), name="fake", runner="tests.agent.fake_runner")
        print(w.start()["pid"], flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # alive
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail("the worker outlived its parent")


def test_closing_stops_the_child_and_a_new_chat_starts_one():
    w = fake("echo")
    pid = w.start()["pid"]
    w.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert w.chat(msgs("again")).text == "again" and w.pid != pid
    w.close()


def test_errors_are_llm_errors():
    for cls in (LLMCrashedError, LLMTimeoutError, LLMUnavailableError):
        assert issubclass(cls, LLMError)  # every front end already ends a turn cleanly on LLMError


def test_concurrent_chats_are_serialised():
    w = fake("echo")
    try:
        out: list[str] = []
        threads = [threading.Thread(target=lambda i=i: out.append(w.chat(msgs(f"q{i} " * 3)).text))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(out) == sorted(" ".join([f"q{i}"] * 3) for i in range(4))
    finally:
        w.close()
