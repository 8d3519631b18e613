"""Deterministic routing: tool hints from the question's words, and the fixed answer to requests to act."""

from __future__ import annotations

import pytest

from agent.consultation import Consultation
from agent.routing import ACTION_ANSWER, hint, is_action_request, needs_no_retrieval, suggested_tools
from tests.agent.fakes import ScriptedBackend, call, default_tools, fake_tools, text

TOOLS = set(default_tools())


@pytest.mark.parametrize(("question", "patient", "expected"), [
    ("What Lung-RADS category is a new 7 mm solid nodule on annual screening CT?", False, ["lung_rads_category"]),
    ("Lung-RADS for a 5 mm solid nodule at baseline, and its follow-up?", False, ["lung_rads_category"]),
    ("What does BI-RADS 4 mean?", False, ["birads_category"]),
    ("Fleischner follow-up for a single 7 mm solid nodule in a low-risk 60-year-old?", False,
     ["fleischner_followup"]),
    ("Incidental pulmonary nodule of 5 mm, what now?", False, ["fleischner_followup"]),
    ("Is a 62-year-old with 25 pack-years who quit 5 years ago eligible for lung cancer screening?", False,
     ["uspstf_lung_screening"]),
    ("Should a 45-year-old woman have screening mammography?", False, ["uspstf_breast_screening"]),
    ("Was the nodule stable compared with the last CT?", True, ["search_prior_reports"]),
    ("Was the nodule stable compared with the last CT?", False, []),
    ("What do you see?", False, []),
    ("Hello!", True, []),
])
def test_suggested_tools(question, patient, expected):
    assert suggested_tools(question, TOOLS, patient) == expected


def test_hint_only_names_tools_that_exist():
    assert hint("What does BI-RADS 4 mean?", {"search_guidelines"}) == ""
    assert hint("What does BI-RADS 4 mean?", TOOLS) == "Tool to call for this question: birads_category."


@pytest.mark.parametrize("question", ["Prescribe an antibiotic dose for this patient's pneumonia.",
                                      "Book an MRI appointment for tomorrow.", "Please order a CT for tomorrow",
                                      "Can you refer her to oncology?"])
def test_requests_to_act(question):
    assert is_action_request(question) and needs_no_retrieval(question)


def test_creative_requests_are_answered_by_the_model_without_retrieval():
    assert not is_action_request("Write me a poem about lungs") and needs_no_retrieval("Write me a poem about lungs")


@pytest.mark.parametrize("question", ["In what order should the views be read?", "Ordering of Lung-RADS categories?",
                                      "Order of the CT windows?", "Refer to Fleischner: 7 mm solid nodule?",
                                      "What does BI-RADS 4 mean?", "Is a booking needed for screening?"])
def test_questions_are_not_requests_to_act(question):
    assert not is_action_request(question)


def test_request_to_act_gets_the_fixed_answer_without_the_model(settings):
    backend = ScriptedBackend([])  # any call to the model would fail the turn ("script exhausted")
    consult = Consultation(settings, backend=backend, tools=fake_tools(), read_frames=False)
    pieces: list[str] = []
    res = consult.ask("c-act", "Prescribe an antibiotic dose for this patient's pneumonia.", on_token=pieces.append)
    assert res.answer == ACTION_ANSWER and res.error is None and backend.requests == []
    assert "".join(pieces) == ACTION_ANSWER and res.unsupported_sentences == () and res.tool_calls == ()


def test_hint_reaches_the_model_in_the_user_message(settings):
    backend = ScriptedBackend([call("fleischner_followup", size_mm=7), text("CT at 6-12 months [E1].")])
    consult = Consultation(settings, backend=backend, tools=fake_tools(), read_frames=False)
    consult.ask("c-hint", "Fleischner follow-up for a 7 mm solid nodule?")
    user = backend.requests[0]["messages"][-1]
    assert user["role"] == "user" and user["content"].endswith("Tool to call for this question: fleischner_followup.")
    # the system prompt (the cached prefix) is unchanged
    plain = ScriptedBackend([text("Hello.")])
    Consultation(settings, backend=plain, tools=fake_tools(), read_frames=False).ask("c-plain", "Hello!")
    assert plain.requests[0]["messages"][0] == backend.requests[0]["messages"][0]
    assert "Tool to call" not in plain.requests[0]["messages"][-1]["content"]


def test_align_enums_takes_the_value_the_question_states():
    from agent.routing import align_enums

    tools = default_tools()
    lung, fleischner = tools["lung_rads_category"].args_model, tools["fleischner_followup"].args_model
    q = "Lung-RADS category for a new solid nodule of 7 mm on annual screening CT?"
    args, changes = align_enums({"nodule_type": "solid", "size_mm": 7, "status": "baseline"}, lung, q)
    assert args["status"] == "new" and changes == ["status: baseline -> new (as the question states)"]
    # the default counts as the model's choice too; a longer value wins over the one inside it
    args, _ = align_enums({"nodule_type": "solid", "size_mm": 7}, lung, "A slowly growing solid nodule, 7 mm")
    assert args["status"] == "slowly_growing"
    # nothing stated, two values stated, a two-valued field, or the model's value stated: unchanged
    same = {"nodule_type": "solid", "size_mm": 7, "status": "stable", "prior_category": "3"}
    assert align_enums(same, lung, "Lung-RADS for a 7 mm solid nodule?") == (same, [])
    assert align_enums(same, lung, "Is it new or growing?")[1] == []
    assert align_enums(same, lung, "Stable solid nodule, new ground glass nodule?")[1] == []
    risk = {"nodule_type": "solid", "size_mm": 7, "risk": "high"}
    assert align_enums(risk, fleischner, "7 mm nodule on low-dose CT")[1] == []


def test_graph_aligns_calculator_arguments_and_records_it(settings):
    tools = {**fake_tools(), "lung_rads_category": default_tools()["lung_rads_category"]}
    backend = ScriptedBackend([call("lung_rads_category", nodule_type="solid", size_mm=7, status="baseline"),
                               text("Category 4A [E1].")])
    res = Consultation(settings, backend=backend, tools=tools, read_frames=False).ask(
        "c-align", "Lung-RADS category for a new solid nodule of 7 mm on annual screening CT?")
    assert res.tool_calls[0].arguments["status"] == "new" and res.tool_calls[0].ok
    assert res.tool_calls[0].aligned == ("lung_rads_category status: baseline -> new (as the question states)",)
    assert "4A" in res.citations[0].quote
