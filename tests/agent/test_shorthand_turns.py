"""Shorthand turns through the agent, with the real tools and calculators over a scripted model: the text's
reading wins over a wrong draft, answers are rendered from the calculator, follow-ups continue the case,
eligibility always has a verdict, and a mixed risk shows both columns with why."""

from __future__ import annotations

from agent.consultation import Consultation
from tests.agent.fakes import ScriptedBackend, frame, one_guideline_passage, real_tools


def consult(settings, steps):
    backend = ScriptedBackend(steps)
    return Consultation(settings, backend=backend, tools=real_tools(settings)), backend


def test_a_breast_finding_in_shorthand_gets_bi_rads_even_when_the_draft_says_lung(settings):
    # the model drafts a lung nodule over 8 mm; the words say BI-RADS 3 on a breast ultrasound
    c, _ = consult(settings, [frame(intent="followup", system="fleischner", size_mm=9, nodule_type="solid")])
    res = c.ask("s1", "US: 9 mm oval circumscribed mass, BR 3, 44F. f/u?")
    assert res.frame.system == "birads" and res.frame.category == "3"
    assert [t.name for t in res.tool_calls][1:] == ["birads_category"]
    assert "BI-RADS 3" in res.answer and "Fleischner" not in res.answer
    assert res.contradicted_sentences == ()


def test_ok_and_when_do_we_rescan_continues_the_case(settings):
    c, _ = consult(settings, [])
    first = c.ask("s2", "6 mm SSN, 40 PY, on CTPA for PE, f/u?")
    assert "high risk" in first.answer and "6-12 months" in first.answer
    second = c.ask("s2", "ok and when do we rescan?")
    assert second.frame.source == "previous" and "You're welcome" not in second.answer
    assert [t.name for t in second.tool_calls][-1] == "fleischner_followup"
    assert "CT at 6-12 months, then CT at 18-24 months" in second.answer


def test_packs_a_day_in_turn_two_change_a_two_column_answer(settings):
    c, _ = consult(settings, [])
    first = c.ask("s3", "7 mm solid nodule on CT chest, f/u?")
    assert "low risk" in first.answer and "high risk" in first.answer and first.clarifying_question
    second = c.ask("s3", "1.5 ppd for 20 yrs, quit 6 yrs ago")
    assert second.frame.risk == "high" and second.frame.pack_years == 30.0
    assert "high risk: smoking history of 30 pack-years" in second.answer and not second.clarifying_question
    assert "high risk: CT at 6-12 months, then CT at 18-24 months" in second.answer


def test_eligibility_under_20_pack_years_gets_a_verdict(settings):
    c, _ = consult(settings, [])
    res = c.ask("s4", "63F, 0.5 ppd x 24 yrs, still smokes. eligible for LCS?")
    assert res.frame.pack_years == 12.0 and not res.clarifying_question
    assert "Not eligible for lung cancer screening" in res.answer and "fewer than 20 pack-years" in res.answer


def test_quitting_15_or_more_years_ago_decides_without_asking_pack_years(settings):
    c, _ = consult(settings, [])
    res = c.ask("s5", "former smoker, quit 22 yrs ago - eligible for lung screening?")
    assert not res.clarifying_question and "quit 22 years ago" in res.answer and "Not eligible" in res.answer


def test_a_mixed_risk_shows_both_columns_and_why(settings):
    c, _ = consult(settings, [frame(intent="followup", risk="high")])  # the draft's "high" is not what the text says
    res = c.ask("s6", "42 yo never smoker, 5 mm solid nodule in the RUL. f/u?")
    assert res.frame.risk is None
    assert "low risk: No routine follow-up" in res.answer and "high risk: Optional CT at 12 months" in res.answer
    assert "so both are shown: the patient's history favours low risk (never smoker), but the nodule's upper-lobe " \
           "location may raise it." in res.answer


def test_a_subsolid_nodule_is_asked_about_then_answered(settings):
    c, _ = consult(settings, [])
    first = c.ask("s7", "1.1 cm subsolid nodule on CTA, f/u?")
    assert "pure ground-glass, or part-solid" in first.answer and "solid nodule > 8 mm" not in first.answer
    second = c.ask("s7", "solid bit ~4 mm")
    assert (second.frame.nodule_type, second.frame.solid_mm) == ("part_solid", 4.0)
    assert "part-solid" in second.answer and "3-6 months" in second.answer


def test_the_criteria_question_gets_the_criteria(settings, monkeypatch):
    one_guideline_passage(monkeypatch, source="uspstf-2021-lung-cancer-screening.md", organisation="USPSTF",
                          title="USPSTF 2021", year=2021, section="Eligibility criteria",
                          quote="Eligible adults: age 50 to 80 years; at least 20 pack-years; currently smoke or quit "
                                "within 15 years.")
    c, _ = consult(settings, [])
    res = c.ask("s8", "who is eligible for LDCT per USPSTF?")
    assert not res.clarifying_question and res.frame.criteria
    assert "50 to 80 years" in res.answer and "20 pack-years" in res.answer
