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
