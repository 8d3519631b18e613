"""Imports point one way: agent -> knowledge -> tools. ``tools/`` imports neither ``agent`` nor ``knowledge``;
``knowledge/`` never imports ``agent``. Every import statement counts, also inside functions and
``TYPE_CHECKING`` blocks: a type-only arrow that runs the wrong way is still a wrong dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"tools": {"agent", "knowledge"}, "knowledge": {"agent"}, "agent": set()}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in ``path``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.module.split(".")[0], node.lineno))
    return out


def wrong_arrows() -> list[str]:
    found = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for target, line in sorted(imported_packages(path)):
                if target in banned:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return found


def test_no_import_runs_the_wrong_way():
    assert wrong_arrows() == []


def test_the_check_sees_a_wrong_arrow(tmp_path, monkeypatch):
    """The walker itself: a module in tools/ that imports agent (even lazily, in a function) is found."""
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "tools" / "bad.py").write_text("def f():\n    from agent.settings import Settings\n")
    (tmp_path / "knowledge" / "ok.py").write_text("import tools.errors\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert wrong_arrows() == ["tools/bad.py:2 imports agent"]


@pytest.mark.parametrize("package", ["tools", "knowledge"])
def test_lower_layers_never_build_settings(package):
    """Only the entry points read the settings: no ``Settings(...)`` call below ``agent``."""
    calls = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings":
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == []
