"""The issue's forgeries as `bench/audit_attacks.py` runs them: every one is detected on this code."""

from __future__ import annotations

import pytest

from agent.settings import Settings
from bench.audit_attacks import ATTACKS, KEYED


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_detected(name, tmp_path):
    assert KEYED
    assert ATTACKS[name](Settings(data_dir=tmp_path / "data")) is False, f"unnoticed: {name}"
