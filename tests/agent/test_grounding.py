"""Grounding fallback: an uncited clinical answer before any tool ran triggers retrieval once (scripted model)."""

from __future__ import annotations

import pytest

from agent.consultation import Consultation
from agent.evidence import Ledger
from agent.graph import RETRIEVING
from agent.grounding import plan_fallback, ungrounded_claims
from tests.agent.fakes import ScriptedBackend, call, fake_tools, text

UNCITED = "For a 7 mm solid nodule, follow-up CT at 6-12 months is recommended."
CITED = "For a 7 mm solid nodule, CT at 6-12 months is recommended [E1]."


def make(settings, steps, **kw):
    backend = ScriptedBackend(steps)
    return Consultation(settings, backend=backend, tools=fake_tools(**kw), read_frames=False), backend


def test_uncited_clinical_answer_triggers_retrieval_then_a_cited_answer(settings):
    consult, backend = make(settings, [text(UNCITED), text(CITED)])
    pieces: list[str] = []
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?", on_token=pieces.append)
    streamed = "".join(pieces)  # the discarded draft was streamed, then a note, then the grounded answer
    assert streamed.index(RETRIEVING) < streamed.index("CT at 6-12 months is recommended [E1].")
    assert [(c.name, c.auto) for c in res.tool_calls] == [("search_guidelines", True)]
    assert res.tool_calls[0].arguments == {"query": "Follow-up for a 7 mm solid nodule?"}
    assert res.answer == CITED and res.unsupported_sentences == ()
    assert [c.id for c in res.citations] == ["E1"]
    # the second request carries the retrieved evidence, and the discarded answer is not in the history
    second = backend.requests[1]["messages"]
    assert second[-1]["role"] == "tool" and "[E1]" in second[-1]["content"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["name"] == "search_guidelines"
    assert all(m.get("content") != UNCITED for m in second)
    assert backend.requests[1]["tool_choice"] == "auto"
    # the evidence is marked as retrieved automatically in the case state
    assert [e.get("auto") for e in consult.state("c1")["evidence"]] == [True]


def test_answer_citing_a_missing_id_also_triggers(settings):
    consult, _ = make(settings, [text("CT at 6-12 months is advised [E4]."), text(CITED)])
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert [c.name for c in res.tool_calls] == ["search_guidelines"]


@pytest.mark.parametrize("question,answer", [
    ("Hello!", "Hello, I can help with imaging questions and guidelines."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Write a poem about the sea.", "The waves roll in and out under a grey sky."),
    # a creative request gets no retrieval even when the model rambles about a clinical topic
    ("Write me a poem about the lungs.", "The lungs fill with air; a nodule rests in the right upper lobe."),
])
def test_smalltalk_and_out_of_scope_do_not_trigger(settings, question, answer):
    consult, backend = make(settings, [text(answer)])
    res = consult.ask("c1", question)
    assert res.tool_calls == () and res.answer == answer
    assert len(backend.requests) == 1


def test_answer_after_a_tool_does_not_trigger(settings):
    consult, backend = make(settings, [call("fleischner_followup", size_mm=7), text(UNCITED)])
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert [c.name for c in res.tool_calls] == ["fleischner_followup"]
    assert not any(c.auto for c in res.tool_calls) and len(backend.requests) == 2
    # the model forgot the marker, but the calculator's result says exactly this: the verifier cites it
    assert list(res.attributed_sentences) == [UNCITED] and res.unsupported_sentences == ()
    assert res.answer == UNCITED[:-1] + " [E1]."


def test_uncited_guideline_claims_after_only_image_tools_trigger_retrieval(settings):
    from tests.agent.fakes import spec

    backend = ScriptedBackend([call("inspect_study", query="S1"), text(UNCITED), text(CITED)])
    tools = fake_tools()
    tools["inspect_study"] = spec("inspect_study", "describe the study",
                                       tools["search_prior_reports"].args_model,
                                       lambda args, ctx, ledger: [])
    res = Consultation(settings, backend=backend, tools=tools, read_frames=False).ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert [(c.name, bool(c.auto)) for c in res.tool_calls] == [
        ("inspect_study", False), ("search_guidelines", True)]
    assert res.answer == CITED


def test_plan_classifies_an_attached_study_not_yet_classified():
    tools = fake_tools()
    from agent.toolbox import ClassifyArgs
    from tests.agent.fakes import spec

    tools["classify_study"] = spec("classify_study", "classify", ClassifyArgs, lambda a, c, ledger: [])
    state = {"messages": [{"role": "user", "question": "What do you see? Any pneumonia?"}], "turn_start": 0,
             "studies": [{"ref": "S1", "label": "CR CHEST"}], "evidence": [], "calls": []}
    planned = plan_fallback(state, "There is consolidation in the right lower lobe consistent with pneumonia.",
                            tools)
    assert [(c["name"], c["args"]) for c in planned][0] == ("classify_study", {"study": "S1", "saliency": True})
    # once S1 has a classifier result, only retrieval is planned
    state["evidence"] = [{"id": "E1", "kind": "classifier", "tool": "classify_study", "source": "pneumonia-cxr",
                          "facts": {"study": "S1"}}]
    planned = plan_fallback(state, "There is consolidation in the right lower lobe consistent with pneumonia.",
                            tools)
    assert [c["name"] for c in planned] == ["search_guidelines"]


def test_fallback_fires_at_most_once_per_turn(settings):
    wrong = "A 7 mm solid nodule needs PET-CT and a biopsy now."
    consult, backend = make(settings, [text(UNCITED), text(wrong)])
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert len(backend.requests) == 2 and len(res.tool_calls) == 1
    # the still-uncited answer is withheld; the retrieved passage is quoted instead
    assert wrong not in res.answer and res.answer.startswith("Fleischner 2017") and "[E1]" in res.answer
    assert wrong in res.unsupported_sentences
    # and it may fire again in the next turn of the same case
    consult._backend.steps = [text("A 9 mm solid nodule needs CT at 3 months."), text(CITED)]
    res2 = consult.ask("c1", "And for a 9 mm solid nodule?")
    assert [(c.name, c.auto) for c in res2.tool_calls] == [("search_guidelines", True)]
    # a short follow-up is searched together with the earlier question
    assert "7 mm solid nodule" in res2.tool_calls[0].arguments["query"]


def test_answer_citing_earlier_turn_evidence_does_not_trigger(settings):
    consult, backend = make(settings, [call("search_guidelines", query="7 mm nodule"), text(CITED),
                                       text("As said, CT at 6-12 months [E1].")])
    consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    res = consult.ask("c1", "Repeat the interval please?")
    assert res.tool_calls == () and len(backend.requests) == 3


def test_prior_reports_are_searched_only_when_the_case_has_a_patient(settings):
    seen: list[str | None] = []
    consult, _ = make(settings, [text("The nodule was stable on the last CT."),
                                 text("A stable 5 mm nodule was reported [E2].")], seen_patients=seen)
    res = consult.ask("c1", "Was the nodule stable on the last CT?", patient="DEMO-0001")
    assert [c.name for c in res.tool_calls] == ["search_guidelines", "search_prior_reports"]
    assert all(c.auto and c.ok for c in res.tool_calls) and seen == ["DEMO-0001"]
    assert res.unsupported_sentences == () and res.citations[0].kind == "prior_report"

    seen.clear()
    consult2, _ = make(settings.model_copy(update={"data_dir": settings.data_dir / "d2"}),
                       [text("The nodule was stable on the last CT."), text(CITED)], seen_patients=seen)
    res = consult2.ask("c1", "Was the nodule stable on the last CT?")
    assert [c.name for c in res.tool_calls] == ["search_guidelines"] and seen == []


def test_no_retrieval_tool_means_no_fallback(settings):
    tools = fake_tools()
    del tools["search_guidelines"]
    backend = ScriptedBackend([text(UNCITED)])
    consult = Consultation(settings, backend=backend, tools=tools, read_frames=False)
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    # no guideline tool and no patient: nothing to schedule, the uncited answer stands, marked
    assert res.tool_calls == () and len(backend.requests) == 1 and list(res.unsupported_sentences) == [UNCITED]


def test_failed_auto_search_is_recorded_but_not_listed_as_not_done(settings):
    from agent.toolbox import SearchArgs
    from tests.agent.fakes import spec
    from tools.errors import ToolExecutionError

    def broken(args, ctx, ledger):
        raise ToolExecutionError("no guideline passage matches that query")

    tools = fake_tools()
    tools["search_guidelines"] = spec("search_guidelines", "search guidelines", SearchArgs, broken)
    backend = ScriptedBackend([text(UNCITED), text("I could not find a guideline passage for this.")])
    consult = Consultation(settings, backend=backend, tools=tools, read_frames=False)
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert res.tool_calls[0].auto and not res.tool_calls[0].ok
    assert "ERROR: no guideline passage" in backend.requests[1]["messages"][-1]["content"]
    assert "Not done" not in res.answer and len(backend.requests) == 2


def test_plan_fallback_unit():
    tools = fake_tools()
    state = {"messages": [{"role": "user", "question": "Follow-up for a 7 mm solid nodule?", "content": "x"}],
             "turn_start": 0, "calls": [], "evidence": []}
    assert [c["name"] for c in plan_fallback(state, UNCITED, tools)] == ["search_guidelines"]
    assert plan_fallback({**state, "calls": [{"name": "x", "ok": True}]}, UNCITED, tools) == []
    assert plan_fallback(state, "Thanks for asking!", tools) == []
    long_q = "Follow-up for a 7 mm solid nodule? " * 40
    calls = plan_fallback({**state, "messages": [{"role": "user", "question": long_q}]}, UNCITED, tools)
    assert len(calls[0]["args"]["query"]) <= 400
    assert ungrounded_claims(CITED, Ledger(), "") == [CITED]
    assert ungrounded_claims("Hello there.", Ledger(), "") == []


def test_question_about_an_unclassified_image_classifies_even_after_a_cited_answer():
    from agent.toolbox import ClassifyArgs
    from tests.agent.fakes import spec

    tools = fake_tools()
    tools["classify_study"] = spec("classify_study", "classify", ClassifyArgs, lambda a, c, ledger: [])
    header = {"id": "E1", "kind": "dicom", "tool": "inspect_study", "source": "DICOM header",
              "quote": "CR chest PA", "facts": {"study": "S1"}}
    state = {"messages": [{"role": "user", "question": "What do you see, and what does the guideline recommend?"}],
             "turn_start": 0, "studies": [{"ref": "S1", "label": "CR CHEST"}], "evidence": [header],
             "calls": [{"name": "inspect_study", "args": {}, "ok": True}]}
    cited = "This is a chest radiograph, PA view [E1]."
    assert [c["name"] for c in plan_fallback(state, cited, tools)] == ["classify_study", "search_guidelines"]
    # not about the image, or the study already classified: a cited answer stands
    other = {**state, "messages": [{"role": "user", "question": "Thanks, that is all."}]}
    assert plan_fallback(other, "You are welcome.", tools) == []
    done = {**state, "evidence": [header, {"id": "E2", "kind": "classifier", "tool": "classify_study",
                                           "source": "pneumonia-cxr", "facts": {"study": "S1"}}]}
    assert plan_fallback(done, cited, tools) == []
    assert plan_fallback({**state, "studies": []}, cited, tools) == []
