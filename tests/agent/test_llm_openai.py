"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` with the packaged 0.5B model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from agent.llm.openai_compat import OpenAIBackend, wire_tool_choice
from tests.agent.fakes import default_tools
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture
from tools.errors import LLMError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path, port: int) -> subprocess.Popen:
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    proc = subprocess.Popen([sys.executable, "-m", "agent.llm.serve", "--model", str(model_path), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
                             "--model_alias", "qwen"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("llama_cpp.server did not start within 180 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(qwen_path):  # noqa: F811
    port = free_port()
    proc = start_server(qwen_path, port)
    yield f"http://127.0.0.1:{port}/v1", proc
    stop(proc)


def test_streamed_answer(server):
    url, _ = server
    pieces: list[str] = []
    res = OpenAIBackend(url, "qwen", timeout_s=120, max_tokens=8).chat(
        [{"role": "user", "content": "Say hello."}], on_token=pieces.append)
    assert res.text and "".join(pieces) == res.text and res.ttft_ms is not None


def test_tool_call_native_or_text_fallback(server):
    url, _ = server
    tool = default_tools()["birads_category"]
    res = OpenAIBackend(url, "qwen", timeout_s=120, max_tokens=48).chat(
        [{"role": "system", "content": "Use the tools when they help."},
         {"role": "user", "content": "What does BI-RADS 4A mean? Use the birads_category tool."}], [tool.schema()])
    assert res.parse_error is None
    assert [c.name for c in res.tool_calls] == ["birads_category"]
    assert "category" in res.tool_calls[0].arguments


def test_a_forced_tool_is_sent_as_the_api_spells_it(server):
    """The case frame forces one tool by name; llama.cpp's server (like OpenAI and vLLM) takes it only as
    {"type": "function", "function": {"name": ...}}: a bare name was refused with HTTP 500."""
    url, _ = server
    tools = [default_tools()["birads_category"].schema(), default_tools()["lung_rads_category"].schema()]
    res = OpenAIBackend(url, "qwen", timeout_s=120, max_tokens=48).chat(
        [{"role": "user", "content": "What does BI-RADS 4A mean?"}], tools, tool_choice="birads_category")
    assert res.parse_error is None and [c.name for c in res.tool_calls] == ["birads_category"]


def test_wire_tool_choice():
    assert wire_tool_choice("auto") == "auto" and wire_tool_choice("none") == "none"
    assert wire_tool_choice("read_case") == {"type": "function", "function": {"name": "read_case"}}


@pytest.mark.slow  # starts a second server
def test_server_stopping_mid_answer_is_a_clear_error(qwen_path):  # noqa: F811
    port = free_port()
    proc = start_server(qwen_path, port)
    try:
        def kill_on_first_token(_: str) -> None:
            os.killpg(proc.pid, signal.SIGKILL)

        with pytest.raises(LLMError, match="stopped|mid-answer|not reachable"):
            OpenAIBackend(f"http://127.0.0.1:{port}/v1", "qwen", timeout_s=60, max_tokens=200).chat(
                [{"role": "user", "content": "Count from one to one hundred in words."}], on_token=kill_on_first_token)
    finally:
        stop(proc)
