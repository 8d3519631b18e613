"""The classifiers take their own frozen config: no ``agent`` import, no ``Settings()`` anywhere in the package."""

from __future__ import annotations

import ast
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from tools.classifiers.config import ClassifierConfig
from tools.errors import SettingsError

PACKAGE = Path(__file__).resolve().parents[3] / "tools" / "classifiers"


def test_config_is_frozen_and_checked(tmp_path):
    config = ClassifierConfig(device="cpu", model_dirs=(str(tmp_path),), cache_dir=str(tmp_path / "c"))
    assert config.model_dirs == (tmp_path,) and config.cache_dir == tmp_path / "c"
    with pytest.raises(FrozenInstanceError):
        config.device = "cuda"  # type: ignore[misc]
    with pytest.raises(SettingsError, match="unknown classifier device"):
        ClassifierConfig(device="tpu")
    assert ClassifierConfig.with_dirs([tmp_path]).model_dirs == (tmp_path,)


def test_wiring_builds_it_from_settings(settings, tmp_path):
    from agent.wiring import classifier_config

    s = settings.model_copy(update={"device": "cpu", "model_dirs": [tmp_path / "extra"]})
    config = classifier_config(s)
    assert config == ClassifierConfig(device="cpu", model_dirs=(tmp_path / "extra",),
                                      cache_dir=s.cache_dir / "classifier-data")


def test_no_module_of_the_package_imports_agent_or_builds_settings():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings":
                offenders.append(f"{path.name}:{node.lineno} Settings()")
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names
                          if n == "agent" or n.startswith("agent.")]
    assert not offenders, offenders
