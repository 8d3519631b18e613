"""Shorthand questions with the real packaged model drafting the frame (slow): whatever it drafts, the
words decide the system, follow-ups continue the case and eligibility gets a verdict."""

from __future__ import annotations

import pytest

from agent.consultation import Consultation
from tests.agent.llm_fixtures import qwen_backend, qwen_path  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow



def test_real_model_breast_shorthand_gets_bi_rads(settings, qwen_backend):  # noqa: F811
    res = Consultation(settings, backend=qwen_backend).ask("sh-real-1", "BR3 on US - 8 mm oval circumscribed mass, 39F. f/u?")
    assert res.frame.system == "birads" and res.frame.category == "3"
    assert "birads_category" in [t.name for t in res.tool_calls] and "Fleischner" not in res.answer


def test_real_model_follow_up_turn_reruns_the_rule(settings, qwen_backend):  # noqa: F811
    consult = Consultation(settings, backend=qwen_backend)
    consult.ask("sh-real-2", "6 mm SSN, 40 PY, on CTPA for PE, f/u?")
    res = consult.ask("sh-real-2", "ok and when do we rescan?")
    assert res.frame.source == "previous" and "You're welcome" not in res.answer
    assert "CT at 6-12 months, then CT at 18-24 months" in res.answer


def test_real_model_eligibility_gets_a_verdict(settings, qwen_backend):  # noqa: F811
    res = Consultation(settings, backend=qwen_backend).ask("sh-real-3", "74F, 1/2 ppd x 30 yrs, eligible for LCS?")
    assert res.frame.pack_years == 15.0 and not res.clarifying_question
    assert "Not eligible" in res.answer and "fewer than 20 pack-years" in res.answer
