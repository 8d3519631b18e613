"""The embedded llama.cpp backend with the real packaged 0.5B model: streaming, tool calls, constrained
decoding, the on-disk prompt-prefix cache, and its failures. Short generations keep this quick."""

from __future__ import annotations

import json

import pytest

from agent.llm.base import ToolSchema
from agent.llm.gguf import GGUFBackend, tool_call_schema
from agent.llm.toolcalls import parse_tool_calls
from tests.agent.fakes import default_tools
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture
from tools.calculators import BiradsArgs
from tools.errors import LLMError, ModelUnavailableError

SYSTEM = "You are a radiology assistant. Use the tools when they help."
TOOLS = [default_tools()["birads_category"].schema()]


@pytest.fixture(scope="module")
def backend(qwen_path, tmp_path_factory):  # noqa: F811
    b = GGUFBackend(qwen_path, n_ctx=2048, max_tokens=48, timeout_s=300,
                    state_dir=tmp_path_factory.mktemp("kv"))
    yield b
    b.close()


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def test_streams_a_plain_answer(backend):
    pieces: list[str] = []
    res = backend.chat(msgs("Say hello in three words."), None, on_token=pieces.append, max_tokens=8)
    assert res.text and "".join(pieces) == res.text
    assert res.tool_calls == [] and res.ttft_ms is not None and res.ttft_ms <= res.total_ms


def test_calls_a_tool_with_valid_arguments(backend):
    res = backend.chat(msgs("What does BI-RADS 4A mean? Use the birads_category tool."), TOOLS, max_tokens=48)
    assert res.parse_error is None
    assert [c.name for c in res.tool_calls] == ["birads_category"]
    BiradsArgs.model_validate(res.tool_calls[0].arguments)


def test_grammar_holds_the_call_to_the_schema(backend):
    """Decoding under the tool-call grammar yields a schema-valid call even for an unrelated prompt."""
    prompt, stop = backend.render(msgs("Tell me a joke."), TOOLS)
    tokens = backend._llm.tokenize((prompt + "<tool_call>\n").encode(), add_bos=False, special=True)
    import time

    body, _, _ = backend._stream(tokens, max_tokens=64, stop=stop, grammar=backend._grammar(TOOLS),
                                 deadline=time.perf_counter() + 300)
    call = parse_tool_calls("<tool_call>" + body + "</tool_call>", {"birads_category"})[0]
    BiradsArgs.model_validate(call.arguments)
    assert tool_call_schema(TOOLS)["properties"]["name"]["const"] == "birads_category"


def test_fixed_prefix_is_reused_and_saved(backend, qwen_path, tmp_path):  # noqa: F811
    first = backend.chat(msgs("Hi."), TOOLS, max_tokens=2)
    second = backend.chat(msgs("Hello there, how are you?"), TOOLS, max_tokens=2)
    assert second.cached_tokens >= 100 and second.cached_tokens < second.prompt_tokens
    assert list(backend.state_dir.glob("*.kv")), "prefix state was not saved"
    fresh = GGUFBackend(qwen_path, n_ctx=2048, max_tokens=2, timeout_s=300, state_dir=backend.state_dir)
    try:
        res = fresh.chat(msgs("Good morning."), TOOLS, max_tokens=2)
        assert res.cached_tokens >= second.cached_tokens - 4  # restored from disk, not recomputed
    finally:
        fresh.close()
    assert first.prompt_tokens > 100


def test_earlier_call_is_rendered_as_decoded_and_stays_cached(backend):
    """The next round sees the call exactly as the model wrote it (not an escaped JSON string), so the
    KV cache covers it."""
    first = backend.chat(msgs("What does BI-RADS 4A mean? Use the birads_category tool."), TOOLS, max_tokens=48)
    call = first.tool_calls[0]
    follow = msgs("What does BI-RADS 4A mean? Use the birads_category tool.") + [
        {"role": "assistant", "content": "", "tool_calls": [call.as_message_dict()]},
        {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": "[E1] BI-RADS 4A: low suspicion."}]
    prompt, _ = backend.render(follow, TOOLS)
    assert '<tool_call>\n{"name": "birads_category", "arguments": {' in prompt and '\\"' not in prompt
    second = backend.chat(follow, TOOLS, max_tokens=4)
    head = backend._llm.tokenize(prompt.split("\n</tool_call>")[0].encode(), add_bos=False, special=True)
    assert second.cached_tokens >= len(head) - 2


def test_context_overflow_is_a_clear_error(backend):
    with pytest.raises(LLMError, match="too long"):
        backend.chat(msgs("word " * 3000), None)


def test_timeout_is_a_clear_error(qwen_path):  # noqa: F811
    b = GGUFBackend(qwen_path, n_ctx=512, max_tokens=64, timeout_s=0.001)
    try:
        with pytest.raises(LLMError, match="timed out"):
            b.chat(msgs("Count to fifty."), None)
    finally:
        b.close()


def test_corrupt_model_file(tmp_path):
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(ModelUnavailableError, match="could not load"):
        GGUFBackend(bad).chat(msgs("hi"), None)


def test_tool_call_schema_shape():
    schema = tool_call_schema(TOOLS + [ToolSchema("x", "x", {"type": "object", "properties": {}})])
    assert [v["properties"]["name"]["const"] for v in schema["anyOf"]] == ["birads_category", "x"]
    json.dumps(schema)


def test_busy_cores_reads_the_cpu_now():
    from agent.llm.cpu import busy_cores

    busy = busy_cores(0.05)
    if busy is None:
        pytest.skip("/proc/stat is not available on this platform")
    import os

    assert 0.0 <= busy <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("busy", "cores", "expected"), [(0.0, 2, 2), (0.9, 2, 1), (1.6, 2, 1), (7.5, 2, 1),
                                                         (0.2, 16, 16), (3.4, 16, 13)])
def test_auto_threads_leaves_busy_cores_alone(monkeypatch, busy, cores, expected):
    import agent.llm.cpu as gguf

    monkeypatch.setattr(gguf, "busy_cores", lambda: busy)
    monkeypatch.setattr(gguf.os, "cpu_count", lambda: cores)
    assert gguf.auto_threads() == expected


def test_auto_threads_falls_back_to_the_load_average(monkeypatch):
    import agent.llm.cpu as gguf

    monkeypatch.setattr(gguf, "busy_cores", lambda: None)
    monkeypatch.setattr(gguf.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(gguf.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert gguf.auto_threads() == 3
