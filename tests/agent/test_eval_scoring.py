"""Scoring rules of the agent eval."""

from __future__ import annotations

from bench.agent_eval import fact_score, normalise, tools_ok


def test_normalise_ranges():
    assert normalise("CT at 6 to 12 months") == "ct at 6-12 months"
    assert normalise("CT at 6\u201312 months") == "ct at 6-12 months"


def test_fact_score_alternatives_and_forbidden():
    assert fact_score("CT at 6 to 12 months [E1].", [["6-12"], ["18-24", "two years"]], []) == 0.5
    assert fact_score("no follow-up needed", [], ["no follow-up needed"]) == 0.0
    assert fact_score("anything", [], []) == 1.0


def test_tool_selection():
    assert tools_ok([], [])
    assert not tools_ok([], ["search_guidelines"])
    assert tools_ok(["fleischner_followup|search_guidelines"], ["search_guidelines"])
    assert not tools_ok(["classify_study"], ["inspect_study"])
    assert tools_ok(["search_prior_reports|"], [])
