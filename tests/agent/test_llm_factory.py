"""The backend factory: spec parsing and clear errors for bad values."""

from __future__ import annotations

import pytest

from agent.llm import make_backend, parse_spec
from tools.errors import LLMError, ModelUnavailableError, UnknownNameError


@pytest.mark.parametrize("spec,expected", [
    ("gguf:qwen2.5-coder-0.5b", ("gguf", "qwen2.5-coder-0.5b", None)),
    ("openai:http://127.0.0.1:8000/v1#qwen", ("openai", "http://127.0.0.1:8000/v1", "qwen")),
    ("openai:https://llm.hospital.local/v1", ("openai", "https://llm.hospital.local/v1", "default")),
    ("hf:/models/tiny", ("hf", "/models/tiny", None)),
])
def test_parse(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "qwen", "ollama:x", "gguf:", "openai:localhost:8000#m"])
def test_bad_specs(spec):
    with pytest.raises(LLMError):
        parse_spec(spec)


def test_missing_gguf_file(settings, tmp_path):
    with pytest.raises(ModelUnavailableError, match="not found"):
        make_backend(settings.model_copy(update={"llm": f"gguf:{tmp_path / 'nope.gguf'}"}))


def test_unknown_packaged_name(settings):
    with pytest.raises(UnknownNameError, match="did you mean"):
        make_backend(settings.model_copy(update={"llm": "gguf:qwen2.5-coder-1.5"}))


def test_openai_backend_is_cheap_to_build(settings):
    backend = make_backend(settings.model_copy(update={"llm": "openai:http://127.0.0.1:9/v1#m"}))
    assert backend.name == "openai:m"


def test_openai_server_down_is_a_clear_error(settings):
    backend = make_backend(settings.model_copy(update={"llm": "openai:http://127.0.0.1:9/v1#m", "llm_timeout_s": 5}))
    with pytest.raises(LLMError, match="not reachable"):
        backend.chat([{"role": "user", "content": "hi"}])
