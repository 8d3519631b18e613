"""Orchestration of the agent loop with a scripted chat model (the model is faked; the loop is real)."""

from __future__ import annotations

import pytest

from agent.consultation import Consultation
from agent.llm.base import ChatResult
from tests.agent.fakes import GUIDELINE, ScriptedBackend, call, fake_tools, text
from tools.errors import InputError, LLMError


def make(settings, steps, **kw):
    backend = ScriptedBackend(steps)
    return Consultation(settings, backend=backend, tools=fake_tools(**kw), read_frames=False), backend


def test_tool_then_cited_answer(settings):
    consult, backend = make(settings, [
        call("search_guidelines", query="7 mm solid nodule follow-up"),
        text("For a 7 mm solid nodule in a low-risk patient, CT at 6-12 months is recommended [E1]."),
    ])
    pieces: list[str] = []
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?", on_token=pieces.append)
    assert [c.name for c in res.tool_calls] == ["search_guidelines"] and res.tool_calls[0].ok
    assert res.citations[0].id == "E1" and res.citations[0].quote == GUIDELINE
    assert res.unsupported_sentences == ()
    assert "".join(pieces).strip().startswith("For a 7 mm")
    assert res.timings.ttft_ms is not None and res.timings.total_ms >= res.timings.tools_ms
    # the tool result reached the model as fenced, quoted data under its evidence id
    tool_msg = backend.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "[E1]" in tool_msg["content"] and "<<< quoted data" in tool_msg["content"]


def test_uncited_and_wrongly_cited_claims_are_withheld(settings):
    consult, _ = make(settings, [
        call("search_guidelines", query="nodule"),
        text("CT at 6-12 months is advised [E1]. The nodule is certainly malignant. Biopsy now [E7]."),
    ])
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    assert "The nodule is certainly malignant." in res.unsupported_sentences
    assert "Biopsy now [E7]." in res.unsupported_sentences
    # the clinician reads only what the evidence supports; the withheld sentences are listed apart
    assert res.answer == "CT at 6-12 months is advised [E1]." and "malignant" not in res.marked_answer
    assert res.citation_validity == 0.5


def test_invalid_tool_call_gets_one_retry_with_the_schema_error(settings):
    consult, backend = make(settings, [
        call("fleischner_followup", size_mm="big"),
        call("fleischner_followup", size_mm=7),
        text("CT at 6-12 months, then consider CT at 18-24 months [E1]."),
    ])
    res = consult.ask("c1", "7 mm nodule?")
    retry_prompt = backend.requests[1]["messages"][-1]["content"]
    assert "invalid" in retry_prompt and "size_mm" in retry_prompt
    assert [c.name for c in res.tool_calls] == ["fleischner_followup"]
    assert res.unsupported_sentences == ()


def test_second_invalid_call_ends_in_a_graceful_answer(settings):
    consult, backend = make(settings, [
        ChatResult(parse_error="tool call is not valid JSON"),
        ChatResult(parse_error="tool call is not valid JSON"),
        text("I could not run the guideline calculator for this question."),
    ])
    res = consult.ask("c1", "7 mm nodule?")
    assert backend.requests[-1]["tool_choice"] == "none"
    assert "could not" in res.answer and res.error is None
    assert any(not c.ok for c in res.tool_calls)


def test_tool_rounds_are_bounded(settings):
    settings = settings.model_copy(update={"max_tool_rounds": 2})
    consult, backend = make(settings, [call("search_guidelines", query="aa"), call("search_guidelines", query="bb"),
                                       text("Done [E1].")])
    res = consult.ask("c1", "loop forever?")
    assert len(res.tool_calls) == 2
    assert backend.requests[-1]["tool_choice"] == "none"


def test_tool_timeout_is_reported_not_raised(settings):
    settings = settings.model_copy(update={"tool_timeout_s": 0.2})
    consult, _ = make(settings, [call("slow_tool", query="xx"), text("The search did not finish.")])
    res = consult.ask("c1", "slow?")
    assert res.tool_calls[0].ok is False and "timed out" in res.tool_calls[0].error
    assert "timed out" in res.answer


@pytest.mark.parametrize("exc", [LLMError("the LLM server at http://127.0.0.1:9 is not reachable"),
                                 LLMError("the conversation is too long for the model's context")])
def test_llm_failure_ends_the_turn_with_a_message(settings, exc):
    consult, _ = make(settings, [exc])
    res = consult.ask("c1", "anything")
    assert res.error == str(exc) and str(exc) in res.answer
    # the case is still usable afterwards
    consult._backend.steps = [text("Hello, I can help with imaging questions.")]
    assert consult.ask("c1", "hello").error is None


def test_case_memory_survives_a_restart(settings):
    consult, _ = make(settings, [call("search_guidelines", query="nodule"), text("CT at 6-12 months [E1].")])
    consult.ask("case-7", "Follow-up for a 7 mm solid nodule?")
    consult.close()
    consult2, backend2 = make(settings, [text("As said, CT at 6-12 months [E1].")])
    res = consult2.ask("case-7", "And again?")
    seen = backend2.requests[0]["messages"]
    assert any("7 mm solid nodule" in (m.get("content") or "") for m in seen)
    assert any(m["role"] == "tool" for m in seen)
    assert res.unsupported_sentences == () and res.citations[0].id == "E1"
    assert [t.question for t in consult2.history("case-7")] == ["Follow-up for a 7 mm solid nodule?", "And again?"]
    # another case starts empty
    consult2._backend.steps = [text("Hello.")]
    consult2.ask("other", "hi")
    assert len(backend2.requests[-1]["messages"]) == 2


def test_prior_reports_use_the_case_patient_only(settings):
    seen: list[str | None] = []
    consult, backend = make(settings, [call("search_prior_reports", query="nodule"),
                                       text("A 5 mm nodule was stable in the prior report [E1].")],
                            seen_patients=seen)
    res = consult.ask("c1", "Any prior nodule?", patient="DEMO-0001")
    assert seen == ["DEMO-0001"]
    for req in backend.requests:  # the key never reaches the model
        assert all("DEMO-0001" not in str(m.get("content")) for m in req["messages"])
    assert res.citations[0].kind == "prior_report"


def test_injected_patient_argument_is_rejected(settings):
    seen: list[str | None] = []
    consult, backend = make(settings, [call("search_prior_reports", query="xx", patient="DEMO-0002"),
                                       call("search_prior_reports", query="xx", patient="DEMO-0002"),
                                       text("I could not search other patients.")], seen_patients=seen)
    res = consult.ask("c1", "prior?", patient="DEMO-0001")
    assert seen == []  # never executed with a model-chosen patient
    assert "patient" in backend.requests[1]["messages"][-1]["content"]
    assert res.error is None


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_question_is_an_input_error(settings, bad):
    consult, _ = make(settings, [])
    with pytest.raises(InputError):
        consult.ask("c1", bad)


def test_stream_yields_pieces_then_result(settings):
    consult, _ = make(settings, [text("Hello there, I help with imaging questions.")])
    items = list(consult.stream("c1", "hi"))
    assert isinstance(items[-1], object) and items[-1].answer.startswith("Hello")
    assert "".join(i for i in items[:-1]).strip() == items[-1].answer


def test_ungrounded_answer_gets_the_cited_results_beside_it(settings):
    consult, _ = make(settings, [call("search_guidelines", query="nodule"), text("The nodule is benign.")])
    res = consult.ask("c1", "Follow-up for a 7 mm solid nodule?")
    # the uncited claim is withheld; the one retrieved passage is quoted, not a digest of every result
    assert "benign" not in res.answer and res.answer.startswith("Fleischner 2017, Solid nodules: \"For a single")
    assert list(res.unsupported_sentences) == ["The nodule is benign."]
    assert [c.id for c in res.citations] == ["E1"]


def test_study_references():
    import numpy as np

    from agent.toolbox import AttachedStudy, ToolContext
    from tools.errors import ToolArgumentError, ToolExecutionError

    ctx = ToolContext(services=None)  # type: ignore[arg-type] - study lookup needs no services
    with pytest.raises(ToolExecutionError, match="no image"):
        ctx.study("latest")
    one = AttachedStudy("S1", study=np.zeros(1), label="CR")
    ctx.studies = [one]
    assert ctx.study("the chest X-ray") is one and ctx.study("S1") is one
    with pytest.raises(ToolArgumentError, match="unknown study 'S2'"):
        ctx.study("S2")
    two = AttachedStudy("S2", study=np.zeros(1), label="CT")
    ctx.studies = [one, two]
    assert ctx.study("latest") is two and ctx.study("s1") is one
    with pytest.raises(ToolArgumentError):
        ctx.study("the old one")


@pytest.mark.parametrize(("cut", "kept"), [
    ("CT at 6-12 months [E1]. Then consider CT at 18-24 mon", "CT at 6-12 months [E1]."),
    ("CT at 6-12 months. [E1] A 7.5 mm nodule needs", "CT at 6-12 months. [E1]"),
    ("No follow-up is needed [E1, E2]! And the", "No follow-up is needed [E1, E2]!"),
    ("A long run-on answer without any end", "A long run-on answer without any end …"),
])
def test_last_full_sentence(cut, kept):
    from agent.answer import last_full_sentence

    assert last_full_sentence(cut) == kept


def test_answer_cut_at_max_tokens_ends_at_a_full_sentence(settings):
    cut = ChatResult(text="For a 7 mm solid nodule, CT at 6-12 months is recommended [E1]. Then consider CT at 18",
                     finish_reason="length")
    consult, _ = make(settings, [call("search_guidelines", query="7 mm nodule"), cut])
    res = consult.ask("cut", "Follow-up for a 7 mm solid nodule?")
    assert res.answer.startswith("For a 7 mm") and res.answer.rstrip().endswith("recommended [E1].")
    assert "18" not in res.answer.split("[E1].")[-1]


def test_case_database_never_holds_the_image_path(settings, tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    named = tmp_path / "DOE_JOHN_MRN12345" / "chest.dcm"  # folders and files are often named after patients
    named.parent.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), named)
    consult, _ = make(settings, [text("Hello.")])
    consult.ask("case-p", "hi", images=[named])
    consult.close()
    stored = b"".join(p.read_bytes() for p in settings.cases_db_path.parent.glob(settings.cases_db_path.name + "*"))
    assert stored and b"DOE_JOHN" not in stored and b"MRN12345" not in stored
    # after a restart the study is known by its ref and label; its pixels must be attached again
    from tests.agent.fakes import real_tools

    tools = {**fake_tools(), "inspect_study": real_tools(settings)["inspect_study"]}
    consult2 = Consultation(settings, backend=ScriptedBackend([call("inspect_study", study="S1"), text("Done.")]),
                            read_frames=False,
                            tools=tools)
    res = consult2.ask("case-p", "Describe S1.")
    assert res.tool_calls and not res.tool_calls[0].ok
    assert "attach it again" in res.tool_calls[0].error


def test_unknown_tool_name_is_an_invalid_call_not_a_crash(settings):
    consult, backend = make(settings, [call("lab_values", test="crp"), text("I have no laboratory tool.")])
    res = consult.ask("c-unknown", "What was the last CRP?")
    assert "unknown tool 'lab_values'" in backend.requests[1]["messages"][-1]["content"]
    assert res.answer == "I have no laboratory tool." and res.error is None


def test_warm_up_prepares_kb_and_model_and_reports_failures(settings, monkeypatch):
    from agent.services import KnowledgeService
    from tools.errors import StoreError

    seen: list[str] = []
    monkeypatch.setattr(KnowledgeService, "ensure_ready", lambda self: seen.append("kb"))
    consult, backend = make(settings, [text("Hi")])
    assert consult.is_warm and consult.warm_up() == [] and consult.is_warm
    assert seen == ["kb"] and backend.requests[0]["tools"]  # the prompt prefix with the tool schemas

    def broken(self):
        raise StoreError("the knowledge base directory is not writable")

    monkeypatch.setattr(KnowledgeService, "ensure_ready", broken)
    consult2, _ = make(settings, [LLMError("server down")])
    problems = consult2.warm_up()
    assert problems == ["knowledge base: the knowledge base directory is not writable", "language model: server down"]
    assert consult2.is_warm


def test_a_cited_restatement_of_the_question_gets_the_results_beside_it(settings):
    # the model cites the calculator but only repeats the question: the result itself must be shown
    consult, _ = make(settings, [call("fleischner_followup", size_mm=10),
                                 text("The patient has a single 10 mm solid nodule [E1]. [E1]")])
    res = consult.ask("c-restate", "Follow-up for a single 10 mm solid nodule?")
    assert res.answer.endswith("Fleischner 2017, Solid nodules: \"CT at 6-12 months, then consider CT at 18-24 months\" [E1].")
    # an answer that states the result with its citation stands alone
    consult2, _ = make(settings, [call("fleischner_followup", size_mm=7), text("CT at 6-12 months [E1].")],)
    res2 = consult2.ask("c-states", "Follow-up for a single 7 mm solid nodule?")
    assert res2.answer == "CT at 6-12 months [E1]."


def test_grounded_in():
    from agent.answer import grounded_in

    q = "Follow-up for a single 10 mm solid nodule?"
    assert not grounded_in("The patient has a single 10 mm solid nodule [E1]. [E1]", {"E1"}, q)
    assert not grounded_in("CT at 3 months [E7].", {"E1"}, q)
    assert grounded_in("CT at 3 months, then PET/CT [E1].", {"E1"}, q)
    assert grounded_in("See the guideline [E1, E2].", {"E2"}, q)


def test_repeated_citation_marker_is_collapsed(settings):
    consult, _ = make(settings, [call("fleischner_followup", size_mm=7), text("CT at 6-12 months [E1]. [E1]")])
    assert consult.ask("c-rep", "Follow-up for a 7 mm solid nodule?").answer == "CT at 6-12 months [E1]."


def test_digest_items_are_checked_each_against_its_own_evidence():
    from agent.answer import extractive_answer
    from agent.evidence import Ledger
    from agent.verify import verify

    ledger = Ledger()
    ledger.add("dicom", "inspect_study", "DICOM header", quote="modality: CR; patient age years: 62.0; frames: 1")
    ledger.add("classifier", "classify_study", "pneumonia-cxr", title="pneumonia-cxr on study S1",
               quote="pneumonia-cxr 1.0.0: P(pneumonia) = 0.05 (threshold 0.74) -> normal")
    digest = extractive_answer(ledger)
    assert digest.count("\n- ") == 2
    check = verify(digest, ledger)
    assert check.unsupported == [] and check.cited_ids == ["E1", "E2"]


@pytest.mark.parametrize("answer, shown", [
    ("The image is classified as normal [E1].", True),  # cited, but no probability and no caution
    ("The pneumonia-cxr classifier gives P(pneumonia) = 0.03, below its threshold [E1].", False),
    ("The probability of pneumonia is 3% [E1].", False),
])
def test_a_classifier_result_is_never_shown_without_its_probability(settings, answer, shown):
    consult, _ = make(settings, [call("classify_study", study="latest"), text(answer)])
    res = consult.ask("c1", "Classify this image for pneumonia.")
    assert res.answer.startswith(answer)
    # a cited classifier result without its probability is stated with it, from the result itself
    assert (res.answer != answer) is shown
    if shown:
        assert "P(pneumonia) = 0.03" in res.answer or "0.03" in res.answer


def test_a_failed_turn_leaves_the_case_clean(settings):
    # a timed-out turn must not reach later prompts: the small model copied its error text forever
    consult, backend = make(settings, [LLMError("the language model timed out after 2 s"),
                                       call("search_guidelines", query="BI-RADS 4"),
                                       text("BI-RADS 4 means a suspicious finding; biopsy is advised [E1].")],
                            guideline_quote="BI-RADS 4: a suspicious finding; biopsy (tissue diagnosis) is advised.")
    first = consult.ask("c-timeout", "What does BI-RADS 3 mean?")
    assert first.error and "timed out" in first.answer
    second = consult.ask("c-timeout", "What does BI-RADS 4 mean?")
    assert second.error is None and second.answer.startswith("BI-RADS 4 means")
    seen = " ".join(str(m.get("content")) for m in backend.requests[-1]["messages"])
    assert "timed out" not in seen and "BI-RADS 3" not in seen and "BI-RADS 4 mean?" in seen
    # the failed turn stays in the case's history (and the audit), only the prompt leaves it out
    assert [t.error is not None for t in consult.history("c-timeout")] == [True, False]


def test_an_answered_turn_stays_in_the_prompt(settings):
    consult, backend = make(settings, [text("Hello."), text("Still here.")])
    consult.ask("c-keep", "Hi there")
    consult.ask("c-keep", "Are you there?")
    seen = [m.get("content") for m in backend.requests[-1]["messages"]]
    assert "Hello." in seen


def test_the_first_question_waits_for_the_warm_up(settings, monkeypatch):
    import threading
    import time

    from agent.services import KnowledgeService

    order: list[str] = []
    release = threading.Event()

    def slow_kb(self):
        order.append("kb start")
        release.wait(5)
        order.append("kb done")

    monkeypatch.setattr(KnowledgeService, "ensure_ready", slow_kb)

    def answer(messages):
        order.append("turn chat")
        return text("Hello.")

    consult, _ = make(settings, [text("warm"), answer])
    consult.start_warm_up()
    assert not consult.is_warm  # false at once, before the thread has run
    turn = threading.Thread(target=consult.ask, args=("c-race", "Hello?"))
    turn.start()
    time.sleep(0.3)
    assert "turn chat" not in order and turn.is_alive()  # the question waits
    release.set()
    turn.join(10)
    assert consult.is_warm and order == ["kb start", "kb done", "turn chat"]


def test_citation_markers_are_tidied_as_a_reader_expects():
    from agent.answer import tidy_citations

    assert tidy_citations("lesion [E1]. [E1]") == "lesion [E1]."
    assert tidy_citations("insufficient (I statement) . [E1] It changed . [E2]") == \
        "insufficient (I statement) [E1]. It changed [E2]."
    assert tidy_citations("Measured 7 mm [E1, E2]. Next.") == "Measured 7 mm [E1, E2]. Next."


def test_the_closing_quote_is_on_the_question_or_absent():
    """When the prose cites none of the turn's results, a quotation is added only if it is on the question's
    subject (a BI-RADS lexicon quote after a poem misled); with no prose at all, the first result is quoted."""
    from agent.answer import _best_quote
    from agent.evidence import Ledger

    ledger = Ledger()
    fleischner = ledger.add("guideline", "search_guidelines", "Fleischner 2017", section="Perifissural nodules",
                            quote="A solid nodule attached to a fissure usually represents a lymph node. No follow-up.")
    birads = ledger.add("guideline", "search_guidelines", "BI-RADS", section="Category 3",
                        quote="Probably benign. Short-interval ultrasound follow-up at 6 months. Then yearly.")
    items = [fleischner, birads]
    assert _best_quote(items, "How is a probably benign breast mass followed up?", "It was BI-RADS 3 [E9].") \
        .startswith("BI-RADS, Category 3:")
    assert _best_quote(items, "And then?", "It was BI-RADS 3 [E9].") == ""
    assert _best_quote(items, "And then?", "").startswith("Fleischner 2017")
