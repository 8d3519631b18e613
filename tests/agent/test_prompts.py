"""Prompt files render strictly: a missing or an unexpected variable is an error."""

from __future__ import annotations

import pytest

from agent.prompts import PromptError, render


def test_renders_all_shipped_templates():
    assert "RadConsult" in render("system")
    out = render("user_turn", question="Q?", studies="S1 (CR)", patient="none", hint="")
    assert out.startswith("Q?") and "S1 (CR)" in out
    assert "x1" in render("retry_tool", error="x1")


def test_missing_variable_is_an_error():
    with pytest.raises(PromptError, match="question"):
        render("user_turn", studies="", patient="")


def test_extra_variable_is_an_error():
    with pytest.raises(PromptError, match="no placeholder"):
        render("system", question="x")


def test_unknown_template():
    with pytest.raises(PromptError, match="not found"):
        render("nope")
