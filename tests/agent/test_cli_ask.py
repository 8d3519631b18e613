"""`radconsult ask` and `radconsult eval agent`: bad input gives a clear message and exit 2, never a traceback."""

from __future__ import annotations

import json

import pytest

from agent.cli import main


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    return settings


def test_empty_question(env, capsys):
    assert main(["ask", "  "]) == 2
    assert "question is empty" in capsys.readouterr().err


def test_missing_image(env, capsys, tmp_path):
    assert main(["ask", "Pneumonia?", "--image", str(tmp_path / "nope.dcm")]) == 2
    err = capsys.readouterr().err
    assert "image not found: nope.dcm" in err and "Traceback" not in err


def test_bad_llm_setting(env, capsys, monkeypatch):
    monkeypatch.setenv("RADCONSULT_LLM", "ollama:llama3")
    assert main(["ask", "What follow-up for a 7 mm solid nodule?"]) == 2
    assert "RADCONSULT_LLM" in capsys.readouterr().err


def test_server_down_is_an_error_with_the_json_kept(env, capsys, monkeypatch):
    monkeypatch.setenv("RADCONSULT_LLM", "openai:http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("RADCONSULT_LLM_TIMEOUT_S", "5")
    assert main(["ask", "What follow-up for a 7 mm solid nodule?", "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "not reachable" in out["error"] and "not reachable" in out["answer"]
    assert set(out) >= {"answer", "citations", "tool_calls", "unsupported_sentences", "model", "timings"}
    assert captured.err.strip().splitlines()[-1].startswith("radconsult: error: the question was not answered")


def test_eval_set_missing_and_malformed(env, capsys, tmp_path):
    assert main(["eval", "agent", "--set", str(tmp_path / "none.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert main(["eval", "agent", "--set", str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_shipped_eval_set_is_well_formed():
    from pathlib import Path

    from agent.eval import load_set

    items = load_set(Path(__file__).resolve().parents[2] / "bench" / "data" / "agent_eval.jsonl")
    cats = {i.category for i in items}
    assert len(items) >= 60
    assert cats >= {"image", "guideline", "prior", "followup", "smalltalk", "out_of_scope", "injection"}
    assert len({i.id for i in items}) == len(items)


def test_text_mode_server_down_is_one_error_line(env, capsys, monkeypatch):
    monkeypatch.setenv("RADCONSULT_LLM", "openai:http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("RADCONSULT_LLM_TIMEOUT_S", "5")
    assert main(["ask", "What follow-up for a 7 mm solid nodule?", "--case", "c-text"]) == 2
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("radconsult: error:") and "not reachable" in last and "case c-text" in last
    assert "RADCONSULT_LLM" in last  # says what to do
    assert "Traceback" not in captured.err and "I could not complete" not in captured.out


def _scripted(monkeypatch, steps):
    import agent.consultation as consultation
    from tests.agent.fakes import ScriptedBackend, fake_tools

    class Scripted(consultation.Consultation):
        def __init__(self, settings, **kw):
            super().__init__(settings, backend=ScriptedBackend(steps), tools=fake_tools(), read_frames=False)

    monkeypatch.setattr(consultation, "Consultation", Scripted)


def test_text_mode_streams_the_draft_the_retrieval_note_then_the_final_answer(env, capsys, monkeypatch):
    from tests.agent.fakes import text

    # the model's first answer cites nothing, so the grounding fallback retrieves and it answers again
    _scripted(monkeypatch, [text("A 7 mm solid nodule needs CT at 3 months."),
                            text("For a 7 mm solid nodule in a low-risk patient, CT at 6-12 months is recommended [E1].")])
    assert main(["ask", "Follow-up for a 7 mm solid nodule?", "--case", "c-draft"]) == 0
    out = capsys.readouterr().out
    draft_at, final_at = out.index("CT at 3 months"), out.rindex("CT at 6-12 months is recommended [E1]")
    assert "searching the knowledge base" in out[draft_at:final_at] and "[E1] Fleischner Society" in out[final_at:]


def test_text_mode_prints_the_final_answer_when_it_differs_from_the_stream(env, capsys, monkeypatch):
    from tests.agent.fakes import call, text

    # an answer that carries none of the results gets the retrieved passage quoted after it: the stream lacks it
    _scripted(monkeypatch, [call("search_guidelines", query="7 mm nodule"), text("Here is what I found.")])
    assert main(["ask", "Follow-up for a 7 mm solid nodule?", "--case", "c-digest"]) == 0
    out = capsys.readouterr().out
    answer = out[out.index("Answer:"):]
    assert answer.index("Here is what I found.") < answer.index("Fleischner 2017, Solid nodules:") < answer.index("[E1]")
