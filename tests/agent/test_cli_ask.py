"""`radconsult ask` and `python bench/agent_eval.py`: bad input gives a clear message and exit 2, never a traceback."""

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
    assert main(["ask", "What follow-up for a 7 mm solid nodule?"]) == 2  # said before any turn, model or not
    assert "RADCONSULT_LLM" in capsys.readouterr().err


def test_server_down_is_an_error_with_the_json_kept(env, capsys, monkeypatch):
    monkeypatch.setenv("RADCONSULT_LLM", "openai:http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("RADCONSULT_LLM_TIMEOUT_S", "5")
    assert main(["ask", "How are pulmonary nodules measured on CT?", "--json"]) == 2  # a model question
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "not reachable" in out["error"] and "not reachable" in out["answer"]
    assert set(out) >= {"answer", "citations", "tool_calls", "unsupported_sentences", "model", "timings"}
    assert captured.err.strip().splitlines()[-1].startswith("radconsult: error: the question was not answered")


def test_eval_set_missing_and_malformed(env, capsys, tmp_path):
    from bench.agent_eval import main as eval_main

    assert eval_main(["--set", str(tmp_path / "none.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert eval_main(["--set", str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main(["--set", str(bad), "--stride", "0"])


def test_the_old_eval_command_says_where_it_went(env, capsys):
    assert main(["eval", "agent", "--set", "x.jsonl"]) == 2
    assert "bench/agent_eval.py" in capsys.readouterr().err


def test_shipped_eval_set_is_well_formed():
    from pathlib import Path

    from bench.agent_eval import load_set

    items = load_set(Path(__file__).resolve().parents[2] / "bench" / "data" / "agent_eval.jsonl")
    cats = {i.category for i in items}
    assert len(items) >= 60
    assert cats >= {"image", "guideline", "prior", "followup", "smalltalk", "out_of_scope", "injection"}
    assert len({i.id for i in items}) == len(items)


def test_text_mode_server_down_is_one_error_line(env, capsys, monkeypatch):
    monkeypatch.setenv("RADCONSULT_LLM", "openai:http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("RADCONSULT_LLM_TIMEOUT_S", "5")
    assert main(["ask", "How are pulmonary nodules measured on CT?", "--case", "c-text"]) == 2
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


# --- comparison with a prior: `ask --image current/ --image prior/ --measure "study=N ... label=LESION"` ----------
def test_parse_measure_with_studies_and_lesions():
    from agent.commands.ask import parse_measure

    m = parse_measure("study=2 slice=3 10,20 22,20 type=solid label=RUL-1")
    assert (m.image, m.slice_index, m.lesion, m.label, m.nodule_type) == (2, 3, "RUL-1", "long axis", "solid")
    assert (parse_measure("study=1 1,1 2,2 axis=short label=RUL nodule 1").label,
            parse_measure("1,1 2,2 label=RUL-1 short axis").label) == ("short axis", "short axis")
    assert parse_measure("1,1 2,2 label=RUL-1 short axis").lesion == "RUL-1"
    assert parse_measure("1,1 2,2 label=solid component").label == "solid component"
    gone = parse_measure("study=2 absent label=RUL-1")
    assert gone.absent and gone.lesion == "RUL-1" and gone.image == 2
    # the older syntax still reads as before
    old = parse_measure("slice=5 1,1 2,2 image=2 type=solid label=short axis")
    assert (old.image, old.label, old.lesion) == (2, "short axis", None)


@pytest.mark.parametrize("spec, message", [
    ("study=2 absent", "takes a lesion label"),
    ("study=2 absent 1,1 2,2 label=L1", "takes a lesion label and no points"),
    ("1,1 2,2 axis=diagonal label=L1", "axis= is long, short or solid"),
    ("1,1 2,2 axis=short label=L1 short axis", "axis= is long, short or solid"),
    ("1,1 2,2 lesion=L1 label=L2", "name the lesion once"),
    ("study=two 1,1 2,2", "whole numbers"),
])
def test_bad_comparison_specs(spec, message):
    from agent.commands.ask import parse_measure
    from tools.errors import InputError

    with pytest.raises(InputError, match=message):
        parse_measure(spec)


def _series(tmp_path, name, patient, date, **kw):
    from tests.orthanc import ct_series

    folder = tmp_path / name
    folder.mkdir()
    for i, data in enumerate(ct_series(patient, 5, seed=f"cli-{name}", study_date=date, body_part="CHEST", **kw)):
        (folder / f"{i}.dcm").write_bytes(data)
    return str(folder)


# 8.0 / 7.0 mm and 6.0 / 5.0 mm on CT_small's 0.661468 mm pixels
NOW = ["--measure", "study=1 slice=2 10,20 22.0944,20 type=solid label=RUL-1",
       "--measure", "study=1 slice=2 30,30 30,40.5827 axis=short label=RUL-1"]
THEN = ["--measure", "study=2 slice=2 10,20 19.0708,20 type=solid label=RUL-1",
        "--measure", "study=2 slice=2 30,30 30,37.5590 axis=short label=RUL-1"]


def test_cli_compares_a_labelled_nodule_on_the_current_and_the_prior(env, capsys, monkeypatch, tmp_path):
    import agent.consultation as consultation
    from tests.agent.fakes import ScriptedBackend, frame, real_tools
    from tests.orthanc import HILDA

    class Scripted(consultation.Consultation):
        def __init__(self, s, **kw):
            super().__init__(s, backend=ScriptedBackend([frame(intent="followup")]), tools=real_tools(s))

    monkeypatch.setattr(consultation, "Consultation", Scripted)
    current = _series(tmp_path, "current", HILDA, "20240502")
    prior = _series(tmp_path, "prior", HILDA, "20230510")
    rc = main(["ask", "Incidental nodule in a never smoker, 61. What follow-up?", "--image", current, "--image", prior,
               *NOW, *THEN, "--case", "cli-cmp", "--summary", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert "Compared: RUL-1: mean diameter 5.5 mm to 7.5 mm (+2 mm, +36.4%) from S2 2023-05-10 to S1 2024-05-02" in \
        out["answer"]
    assert "takes the status growing from the comparison of RUL-1 with S2 (2023-05-10)" in out["answer"]
    assert out["report"] == "cli-cmp/v1"
    comparison = dict(out["summary"]["comparison"][1])
    assert comparison["text"].startswith("Prior study S2: CT CHEST, 2023-05-10, 358 days before S1")


def test_cli_refuses_bad_comparisons(env, capsys, tmp_path):
    from tests.agent.test_comparison import OTTO
    from tests.orthanc import HILDA

    current = _series(tmp_path, "current", HILDA, "20240502")
    prior = _series(tmp_path, "prior", HILDA, "20230510")
    # the first --image is the current study: a "prior" dated after it is refused
    assert main(["ask", "What follow-up?", "--image", prior, "--image", current, *NOW, *THEN]) == 2
    err = capsys.readouterr().err
    assert "--image 2 (a prior) (2024-05-02) is newer than the current study, --image 1 (2023-05-10)" in err
    # studies of two patients are never compared
    other = _series(tmp_path, "otto", OTTO, "20230510")
    assert main(["ask", "What follow-up?", "--image", current, "--image", other, *NOW, *THEN]) == 2
    assert "different patients" in capsys.readouterr().err
    # no pixel spacing: no length in mm, so nothing to compare
    flat = _series(tmp_path, "flat", HILDA, "20230510", pixel_spacing=False)
    assert main(["ask", "What follow-up?", "--image", current, "--image", flat, *NOW, *THEN]) == 2
    assert "no pixel spacing" in capsys.readouterr().err
    assert main(["ask", "What follow-up?", "--image", current, *NOW, "--measure", "study=3 absent label=RUL-1"]) == 2
    assert "study=3: there are 1 --image studies" in capsys.readouterr().err
