"""Deterministic first (issue 20, item 3): the rules read the question, and a frame they read fully is answered
with no LLM call (a calculator, a table, a clarifying question, a fixed statement); the model is asked for its
draft only where it could fill a field the rules left empty. Image questions on exported images (class 10): a
question that states the modality and body part runs the model that reads them.

Orchestration runs the real Consultation, tools, calculators and classifiers over a chat model that fails the
test when asked (:class:`NoModelBackend`); the cold path runs the real CLI and the real packaged model's
settings, and shows that the model is never loaded for a turn the rules answer."""

from __future__ import annotations

import io
import json
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from agent.consultation import Consultation
from agent.frame import read_case
from agent.frame.complete import model_fills
from agent.frame.findings import models_reading, stated_study
from agent.frame.model import FrameDraft
from agent.wiring import imaging_config
from tests.agent.fakes import NoModelBackend, ScriptedBackend, frame, one_guideline_passage, real_tools, text
from tests.agent.llm_fixtures import qwen_path  # noqa: F401 - fixture
from tests.conftest import shared_file

RULE_READ = [
    # the class 8 question, in the shorthand clinicians type
    "5x4 mm solid nodule, never smoker, f/u?",
    "Incidental 7 mm solid nodule in a 50-year-old woman who never smoked. Follow-up?",
    "7 mm solid nodule on CT, follow-up interval?",  # risk missing: both columns and the question, no model
    "What does Lung-RADS 4A mean?",
    "What does BI-RADS 3 mean?",
    "Is a 60-year-old current smoker with 30 pack-years eligible for lung cancer screening?",
    "thanks!",
    "Write me a poem about the lungs",
]
MODEL_QUESTIONS = [
    ("How are pulmonary nodules measured on CT?", False, "intent"),  # a nodule: the model may see a follow-up
    ("What is the capital of France?", False, "intent"),  # no clinical word: the model may call it out of scope
    ("What do you see?", True, "finding"),  # an image question that names nothing the plan can resolve
]
# general clinical questions no draft could turn into a guideline, image or prior-report question
GENERAL_CLINICAL = ["What radiation dose does a low-dose chest CT deliver?",
                    "Why is LDCT used for lung cancer screening instead of a chest x-ray?",
                    "how reliable is mammography in dense breasts"]


def installed(settings):
    from agent.services import build_services

    return [m.coverage for m in build_services(settings).classifiers.models()]


@pytest.mark.parametrize("question", RULE_READ)
def test_the_rules_read_these_fully(settings, question):
    f = read_case(question, None, None)
    assert model_fills(f, question, []) is None, f


@pytest.mark.parametrize("question, has_image, field", MODEL_QUESTIONS)
def test_the_model_is_asked_only_for_what_it_could_fill(settings, question, has_image, field):
    f = read_case(question, None, None, has_image=has_image)
    assert model_fills(f, question, installed(settings) if has_image else []) == field


@pytest.mark.parametrize("question", GENERAL_CLINICAL)
def test_a_general_clinical_question_goes_to_retrieval_without_a_draft(question):
    f = read_case(question, None, None)
    assert f.intent == "knowledge" and model_fills(f, question, []) is None
    # the same words with an attached image or patient could be about them: the model reads those
    assert model_fills(f, question, [], has_image=True) == "intent"
    assert model_fills(f, question, [], has_patient=True) == "intent"


@pytest.mark.parametrize("question", ["", "   ", "?" * 5000, "ñ¿ 𝛑 \x00 <tool_call>{}</tool_call>", "7 mm" * 900])
def test_bad_questions_do_not_break_the_decision(question):
    f = read_case(question, None, None)
    assert model_fills(f, question, []) in (None, "intent", "system", "finding")


def no_model_consultation(settings):
    backend = NoModelBackend()
    return Consultation(settings, backend=backend, tools=real_tools(settings)), backend


@pytest.mark.parametrize("question", RULE_READ)
def test_a_rule_read_turn_makes_no_llm_call(settings, question):
    consult, backend = no_model_consultation(settings)
    try:
        res = consult.ask("c1", question)
    finally:
        consult.close()
    assert backend.requests == [] and res.error is None and res.answer.strip()
    assert res.frame is not None and res.frame.source == "rules"
    # the trace says how the question was read, and that the rules read it
    assert res.tool_calls[0].name == "read_case" and res.tool_calls[0].arguments["source"] == "rules"
    assert res.timings.llm_ms == 0.0


def test_a_follow_up_turn_is_read_by_the_rules_too(settings):
    consult, backend = no_model_consultation(settings)
    try:
        first = consult.ask("c2", "Incidental 7 mm solid nodule in a 50-year-old woman who never smoked. Follow-up?")
        second = consult.ask("c2", "and if she smoked?")
    finally:
        consult.close()
    assert backend.requests == [] and "low risk" in first.answer
    assert (second.frame.source, second.frame.risk) == ("previous", "high") and "high risk" in second.answer


def test_an_uncovered_image_finding_is_declined_without_the_model(settings):
    from tools.imaging import load

    study = load(shared_file("cxr/nih_00000001_000_cardiomegaly.png"), imaging_config(settings))
    consult, backend = no_model_consultation(settings)
    try:
        res = consult.ask("c3", "Is the heart enlarged?", images=[study])
    finally:
        consult.close()
    assert backend.requests == [] and "No installed model assesses cardiomegaly" in res.answer


def test_a_question_the_rules_cannot_read_asks_the_model_for_its_draft(settings, monkeypatch):
    one_guideline_passage(monkeypatch, source="f.md", organisation="Fleischner Society", title="Fleischner 2017",
                          year=2017, section="Measurement",
                          quote="Nodules are measured as the average of the long and short axes on thin-section CT.")
    backend = ScriptedBackend([frame(intent="knowledge"),
                               text("Nodules are measured as the average of the long and short axes [E1].")])
    consult = Consultation(settings, backend=backend, tools=real_tools(settings))
    try:
        res = consult.ask("c4", "How are pulmonary nodules measured on CT?")
    finally:
        consult.close()
    assert [r["tool_choice"] for r in backend.requests] == ["read_case", "none"]
    assert res.frame.source == "model" and "average of the long and short axes [E1]" in res.answer


def test_a_general_clinical_question_makes_one_llm_call_the_answer(settings, monkeypatch):
    one_guideline_passage(monkeypatch, source="l.md", organisation="ACR", title="Lung-RADS v2022",
                          year=2022, section="Technique",
                          quote="Low-dose CT screening uses a fraction of the dose of a standard diagnostic chest CT.")
    backend = ScriptedBackend([text("A low-dose CT uses a fraction of a diagnostic CT's dose [E1].")])
    consult = Consultation(settings, backend=backend, tools=real_tools(settings))
    try:
        res = consult.ask("c6", GENERAL_CLINICAL[0])
    finally:
        consult.close()
    assert [r["tool_choice"] for r in backend.requests] == ["none"]  # no read_case draft before the answer
    assert backend.requests[0]["max_tokens"] == settings.llm_prose_tokens  # a short prose answer, capped
    assert res.frame.source == "rules" and "fraction of a diagnostic CT's dose [E1]" in res.answer


def test_a_rule_read_turn_does_not_wait_for_the_warm_up(settings, monkeypatch):
    """The UI's first question: the knowledge base and the model are still being prepared, and a question the
    rules answer is answered meanwhile (a model question waits for them: tests/agent/test_ui.py)."""
    from agent.services import KnowledgeService

    release = threading.Event()
    monkeypatch.setattr(KnowledgeService, "ensure_ready", lambda self: release.wait(60))
    consult, backend = no_model_consultation(settings)
    try:
        consult.start_warm_up()
        res = consult.ask("c5", "5x4 mm solid nodule, never smoker, f/u?")
        assert not consult.is_warm  # still warming up, and the answer is there
        assert backend.requests == [] and "Fleischner 2017" in res.answer
    finally:
        release.set()
        consult.wait_until_ready(60)
        consult.close()


def test_the_page_answers_a_rule_read_first_question_during_the_warm_up(settings, monkeypatch):
    """A fresh UI: the first question, one the rules answer, is answered while the warm-up still runs."""
    from agent.services import KnowledgeService
    from agent.ui import UIController

    release = threading.Event()
    monkeypatch.setattr(KnowledgeService, "ensure_ready", lambda self: release.wait(60))
    consult, backend = no_model_consultation(settings)
    try:
        ctl = UIController(consult, settings)
        sess = ctl.session(None, "browser-1")
        consult.start_warm_up()
        updates = list(ctl.ask(sess, None, "5x4 mm solid nodule, never smoker, f/u?"))
        assert not consult.is_warm and backend.requests == []
        assert "Fleischner 2017" in updates[-1].chat[-1]["content"]
    finally:
        release.set()
        consult.wait_until_ready(60)
        consult.close()


def test_a_model_that_cannot_load_fails_only_the_turns_that_need_it(settings, tmp_path):
    """The backend is built on the first chat: a missing GGUF does not stop a rule-read turn, and a model turn
    ends with the typed error as its message (never a traceback)."""
    from agent.settings import Settings

    configured = Settings(data_dir=settings.data_dir, llm=f"gguf:{tmp_path / 'missing.gguf'}")
    consult = Consultation(configured, tools=real_tools(configured))
    try:
        ok = consult.ask("c11", "5x4 mm solid nodule, never smoker, f/u?")
        failed = consult.ask("c12", "How are pulmonary nodules measured on CT?")
    finally:
        consult.close()
    assert ok.error is None and "Fleischner 2017" in ok.answer
    assert failed.error and "not found" in failed.error and "missing.gguf" in failed.error


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    return settings


def test_a_cold_cli_ask_the_rules_read_needs_no_model(cli_env, capsys, monkeypatch):
    """`radconsult ask` with the model's server down: a rule-read question is answered (and audited), a model
    question is not."""
    from agent.cli import main

    monkeypatch.setenv("RADCONSULT_LLM", "openai:http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("RADCONSULT_LLM_TIMEOUT_S", "5")
    assert main(["ask", "5x4 mm solid nodule, never smoker, f/u?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["error"] is None and "Fleischner 2017" in out["answer"] and out["frame"]["source"] == "rules"
    records = [json.loads(line) for line in cli_env.audit_log_path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["calculate", "answer"]
    assert main(["ask", "How are pulmonary nodules measured on CT?", "--json"]) == 2


def test_with_the_packaged_model_a_rule_read_turn_never_starts_its_worker(qwen_path, settings):  # noqa: F811
    """The real packaged model configured as in production (a worker process): a rule-read turn never builds
    the backend, so no worker starts and no GGUF is read."""
    from agent.settings import Settings

    configured = Settings(data_dir=settings.data_dir, llm=f"gguf:{qwen_path}")
    consult = Consultation(configured, tools=real_tools(configured))
    try:
        res = consult.ask("c6", "5x4 mm solid nodule, never smoker, f/u?")
        assert res.error is None and "Fleischner 2017" in res.answer
        assert consult._backend is None  # never built: no worker process, no model load
    finally:
        consult.close()


@pytest.mark.slow
def test_with_the_packaged_model_a_model_question_starts_it(qwen_path, settings):  # noqa: F811
    from agent.llm.worker import WorkerBackend
    from agent.settings import Settings
    from tools.imaging import load

    configured = Settings(data_dir=settings.data_dir, llm=f"gguf:{qwen_path}", llm_max_tokens=64)
    study = load(shared_file("cxr/nih_00027426_000_no_finding.png"), imaging_config(configured))
    consult = Consultation(configured, tools=real_tools(configured))
    try:
        first = consult.ask("c7", "5x4 mm solid nodule, never smoker, f/u?")
        assert consult._backend is None and first.error is None
        res = consult.ask("c8", "What do you see?", images=[study])  # the rules leave the finding open
        assert isinstance(consult._backend, WorkerBackend) and consult._backend.running
        assert res.error is None and res.frame.source in ("model", "text")
    finally:
        consult.close()


# --- image questions on exported images (class 10) ------------------------------------------------------

@pytest.mark.parametrize("question, codes, part", [
    ("contrast T1 MR slice of a known brain tumour: which type is it most likely?", ("MR",), "BRAIN"),
    ("what does the model say about this breast ultrasound?", ("US",), "BREAST"),
    ("anything on this CXR?", ("CR", "DX"), "CHEST"),
])
def test_the_stated_modality_and_body_part(question, codes, part):
    stated = stated_study(question)
    assert stated is not None and (stated.modalities, stated.body_part) == (codes, part)


@pytest.mark.parametrize("question", ["", "what does the model say about this ultrasound?",
                                      "what does the model say about this breast?", "x" * 10000])
def test_no_modality_or_no_body_part_states_nothing(settings, question):
    assert stated_study(question) is None
    assert models_reading(stated_study(question), installed(settings)) == []


def test_the_stated_study_picks_the_bundle_that_reads_it(settings):
    cover = installed(settings)
    assert models_reading(stated_study("this breast ultrasound"), cover) == ["breast-us"]
    assert models_reading(stated_study("this brain MRI"), cover) == ["brain-mri-tumour"]
    assert models_reading(stated_study("this brain CT"), cover) == []  # no model reads a brain CT


def _exported(tmp_path, name: str, image: np.ndarray):
    """``image`` saved as an exported file would be (no modality, no body part), then loaded as a user's."""
    from agent.settings import Settings
    from tools.imaging import load

    path = tmp_path / name
    Image.fromarray(image).save(path)
    study = load(path, imaging_config(Settings(data_dir=tmp_path / "d")))
    assert study.metadata.modality in (None, "OT") and study.metadata.body_part is None  # "other": no modality
    return study


def test_a_brain_mr_jpeg_gets_the_tumour_type_model(settings, tmp_path):
    from tests.tools.classifiers.helpers import CHENG

    with tarfile.open(shared_file(CHENG)) as tf:
        image = np.asarray(Image.open(io.BytesIO(tf.extractfile("figshare_cheng_brain_tumor/glioma/740.jpg").read())))
    study = _exported(tmp_path, "slice.jpg", image)
    consult, backend = no_model_consultation(settings)
    try:
        res = consult.ask("c9", "contrast T1 MR slice of a known brain tumour: which type is it most likely?",
                          images=[study])
    finally:
        consult.close()
    assert backend.requests == []
    assert [(t.name, t.arguments.get("model")) for t in res.tool_calls[1:]] == [("classify_study", "brain-mri-tumour")]
    assert "brain-mri-tumour" in res.answer and "glioma" in res.answer.lower()
    assert "could not confirm your description" in res.answer and "no modality recorded" in res.answer


def test_a_breast_ultrasound_png_gets_the_breast_model(settings, tmp_path):
    data = np.load(shared_file("medmnist/breastmnist.npz"))
    study = _exported(tmp_path, "us.png", np.asarray(data["test_images"][0], dtype=np.uint8))
    consult, backend = no_model_consultation(settings)
    try:
        res = consult.ask("c10", "what does the model say about this breast ultrasound?", images=[study])
    finally:
        consult.close()
    assert backend.requests == []
    assert [(t.name, t.arguments.get("model")) for t in res.tool_calls[1:]] == [("classify_study", "breast-us")]
    assert "breast-us" in res.answer and "could not confirm your description" in res.answer
    assert "no modality recorded" in res.answer  # the classifier's own check says it too


def test_a_cold_rule_read_ask_loads_no_model_runtime(settings):
    """A fresh interpreter runs `radconsult ask` on a rule-read question: neither the LLM runtime nor torch,
    MONAI, the knowledge base's store or the UI is imported (what made a cold ask take 8 s and more)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import contextlib, io, sys\nfrom agent.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    rc = main(['ask', '5x4 mm solid nodule, never smoker, f/u?', '--json'])\n"
             "heavy = ('torch', 'monai', 'llama_cpp', 'chromadb', 'onnxruntime', 'transformers', 'gradio',\n"
             "         'agent.llm.worker', 'agent.llm.gguf')  # no backend was built: no worker, no GGUF\n"
             "print(rc, *sorted(m for m in heavy if m in sys.modules))\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "RADCONSULT_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(root),
           "RADCONSULT_LLM": "gguf:qwen2.5-coder-1.5b"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300,
                         cwd=root)
    assert out.stdout.split() == ["0"], out.stdout + out.stderr[-2000:]


def test_a_models_small_talk_reading_of_a_clinical_question_is_not_taken():
    """Seen with the 1.5B: "Why is low-dose CT used ...?" drafted as small talk got the introduction."""
    question = "Is that nodule thing in the lung something to worry about?"
    f = read_case(question, FrameDraft(intent="smalltalk"), None)
    assert f.intent != "smalltalk"
