"""A short load run (bench/reliability_load.py): three browser sessions at once against the real page and the
real Consultation (scripted chat model) for twenty seconds; no errors and nothing leaks between sessions.
The full run (8 sessions, 10 minutes; 2 with the packaged model) is in the README with its command."""

from __future__ import annotations

import argparse
import importlib.util
import shutil

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip("playwright.async_api", reason="pip install playwright")


def test_three_sessions_under_load_keep_their_own_answers():
    if not shutil.which("chromium"):
        pytest.skip("Debian chromium not installed (apt-get install -y chromium)")
    spec = importlib.util.spec_from_file_location("reliability_load", REPO_ROOT / "bench" / "reliability_load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    rows = load.run(argparse.Namespace(sessions=3, minutes=0.35, llm=None, timeout_s=120))
    loaded = rows[-1]
    assert loaded["turns"] >= 3 and loaded["errors"] == 0 and loaded["leaks"] == 0, loaded
    assert rows[0]["errors"] == 0
