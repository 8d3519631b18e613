"""The knowledge package takes its own frozen config: it never imports ``agent`` nor builds ``Settings``,
and the agent's wiring builds the config from the settings with the same layout."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from agent.settings import Settings
from agent.wiring import knowledge_config
from knowledge.config import KnowledgeConfig
from tools.deid import DeidPolicy

PACKAGE = Path(__file__).resolve().parents[2] / "knowledge"


def test_knowledge_never_imports_agent_nor_reads_settings():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] != "agent", f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "Settings", f"{path.name} builds Settings()"


def test_wiring_builds_the_same_layout(tmp_path):
    settings = Settings(data_dir=tmp_path, kb_batch_size=64, deid_dates="shift", embedding_backend="torch",
                        chroma_url="http://127.0.0.1:9")
    config = knowledge_config(settings)
    assert config.kb_dir == settings.kb_dir and config.cache_dir == settings.cache_dir
    assert config.batch_size == 64 and config.embedding_backend == "torch" and config.chroma_url == settings.chroma_url
    assert config.deid == DeidPolicy(settings.secret_path, "shift", settings.deid_max_shift_days)
    plain = knowledge_config(Settings(data_dir=tmp_path))
    assert plain == KnowledgeConfig.under(tmp_path)  # the layout tests use is the program's


def test_config_is_frozen_and_checked(tmp_path):
    config = KnowledgeConfig.under(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="positive"):
        KnowledgeConfig.under(tmp_path, batch_size=0)
    assert config.replace(chroma_url="http://h:1").location == "http://h:1"
