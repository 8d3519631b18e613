"""Reading the case: the text's own statements, the model's draft checked against them, follow-up turns,
missing parameters and the plan each frame needs (no model here: the draft is given)."""

from __future__ import annotations

import pytest

from agent.frame import FrameDraft, plan_for, read_case
from agent.frame.findings import asked_findings
from agent.frame.sections import fits
from agent.frame.text import read_text
from tools.classifiers.registry import list_models

INSTALLED = [b.coverage for b in list_models() if b.name in ("breast-us", "pneumonia-cxr")]


@pytest.mark.parametrize(("question", "expected"), [
    ("Solitary incidental pure ground-glass nodule of 6.4 mm in a 58-year-old woman. Follow-up?",
     {"size_mm": 6.4, "nodule_type": "ground_glass", "count": "single", "setting": "incidental", "age": 58}),
    ("1.2 cm solid nodule found incidentally on abdominal CT", {"size_mm": 12.0, "nodule_type": "solid"}),
    ("8 x 6 mm solid nodule", {"size_mm": 7.0}),
    ("1.2 x 0.9 cm part-solid nodule with a 4 mm solid component",
     {"size_mm": 10.5, "nodule_type": "part_solid", "solid_mm": 4.0}),
    ("Several small GGNs, largest 5 mm", {"count": "multiple", "nodule_type": "ground_glass", "size_mm": 5.0}),
    ("LDCT screening, no nodules", {"no_nodule": True, "setting": "screening"}),
    ("Smokes a pack a day for 30 years, 63 years old", {"pack_years": 30.0, "smoking": "current", "age": 63}),
    ("Ex-smoker, 25 pack-years, quit 20 years ago", {"pack_years": 25.0, "smoking": "former", "quit_years": 20.0}),
    ("Lifelong non-smoker, 47M", {"smoking": "never", "age": 47}),
    ("new 9 mm nodule not seen last year on LDCT", {"status": "new", "setting": "screening", "size_mm": 9.0}),
])
def test_the_text_is_read_as_stated(question, expected):
    frame = read_case(question, None)
    for key, value in expected.items():
        assert getattr(frame, key) == value, (key, frame)


def test_units_pack_years_and_negations():
    facts = read_text("A 1.1 cm nodule, 2 packs a day for 20 years, no history of cancer, non-calcified")
    assert facts.sizes_mm == [11.0] and facts.pack_years == 40.0 and "1.1 cm = 11 mm" in facts.notes
    assert not facts.known_cancer and not facts.calcified
    assert read_text("an incidental nodule, not on a screening CT").setting == "incidental"
    assert read_text("patient with metastatic melanoma").known_cancer
    assert not read_text("Typical perifissural? no, it is not perifissural").typical_perifissural


@pytest.mark.parametrize(("question", "risk"), [
    ("7 mm solid nodule in a low-risk 64-year-old", "low"),
    ("7 mm solid nodule, 30 pack-years", "high"),
    ("7 mm solid nodule, 5 pack-years", "low"),
    ("7 mm solid nodule, never smoker", "low"),
    ("7 mm spiculated solid nodule in a never smoker", None),  # pulls both ways: both columns (issue 20)
    ("7 mm solid nodule, father had lung cancer", "high"),
    ("7 mm solid nodule in a 64-year-old", None),
])
def test_risk_is_read_not_guessed(question, risk):
    assert read_case(question, None).risk == risk


def test_the_models_draft_is_checked_against_the_text():
    draft = FrameDraft(intent="followup", system="fleischner", size_mm=1.2, nodule_type="solid", risk="low",
                       setting="screening", age=70)
    frame = read_case("Incidental 1.2 cm ground-glass nodule, 30 pack-years. Follow-up?", draft)
    assert frame.size_mm == 12.0 and frame.nodule_type == "ground_glass" and frame.setting == "incidental"
    assert frame.risk == "high" and frame.age is None
    joined = " | ".join(frame.corrections)
    assert "size_mm: 1.2 -> 12" in joined and "nodule_type: solid -> ground_glass" in joined
    assert "risk: low -> high" in joined and "age: 70 dropped" in joined and "setting: screening -> incidental" in joined


def test_pack_years_do_not_make_an_incidental_nodule_a_screening_question():
    frame = read_case("Incidental 7 mm solid nodule on a CT for abdominal pain; 40 pack-years. Follow-up?", None)
    assert (frame.intent, frame.system, frame.setting) == ("followup", "fleischner", "incidental")


def test_missing_parameters_are_asked_not_guessed():
    no_risk = read_case("7 mm solid nodule on CT, follow-up?", None)
    plan = plan_for(no_risk, "7 mm solid nodule on CT, follow-up?", INSTALLED, False)
    assert "risk" in no_risk.missing and plan.clarify and "low or high risk" in plan.clarify
    assert plan.calls == [("fleischner_followup", {"size_mm": 7.0, "nodule_type": "solid", "multiple": False,
                                                   "known_primary_cancer": False, "immunocompromised": False})]
    no_size = read_case("Lung nodule on CT, what's the follow-up?", None)
    assert "size" in no_size.missing and plan_for(no_size, "q", INSTALLED, False).calls == []
    both = "65-year-old, 40 pack-years, current smoker, 7 mm solid nodule on chest CT. Follow-up?"
    assert "setting" in read_case(both, None).missing  # screening and incidental are both plausible
    eligible = read_case("Is my patient eligible for lung cancer screening? He's 60.", None)
    assert eligible.system == "uspstf_lung" and "smoking history" in eligible.missing


def test_a_follow_up_turn_changes_only_what_it_states():
    first = read_case("Incidental 7 mm solid nodule in a 50-year-old woman who never smoked. Follow-up?", None)
    assert first.risk == "low"
    then = read_case("and if she smoked?", None, first)
    assert (then.size_mm, then.nodule_type, then.system, then.risk) == (7.0, "solid", "fleischner", "high")
    bigger = read_case("what if it were 9 mm?", None, first)
    assert bigger.size_mm == 9.0 and bigger.risk == "low"
    screen = read_case("Baseline LDCT: 7 mm solid nodule. Category?", None)
    new = read_case("What if it were new since the last screen?", None, screen)
    assert (new.system, new.status) == ("lung_rads", "new")


@pytest.mark.parametrize(("question", "call"), [
    ("Screening CT negative, no nodules found. What category?", ("lung_rads_meaning", {"category": "1"})),
    ("What does Lung-RADS 4B mean?", ("lung_rads_meaning", {"category": "4B"})),
    ("BI-RADS 4A on ultrasound: what does it mean?", ("birads_category", {"category": "4A", "modality": "ultrasound"})),
    ("Is a 62-year-old current smoker with 30 pack-years eligible for lung cancer screening?",
     ("uspstf_lung_screening", {"age_years": 62, "smoking_status": "current", "pack_years": 30.0})),
])
def test_the_plan_runs_the_calculator_that_covers_the_frame(question, call):
    plan = plan_for(read_case(question, None), question, INSTALLED, False)
    assert plan.calls[0] == call and plan.answer_by == "render"


def test_image_questions_about_uncovered_findings_are_declined():
    for question in ("Is the heart enlarged?", "Is there a pneumothorax?", "Any rib fractures?"):
        frame = read_case(question, None, has_image=True)
        plan = plan_for(frame, question, INSTALLED, False)
        assert frame.intent == "image" and plan.calls == [] and "No installed model assesses" in plan.statement
    pneumonia = plan_for(read_case("Any signs of pneumonia?", None, has_image=True), "Any signs of pneumonia?",
                         INSTALLED, False)
    assert pneumonia.calls == [("classify_study", {"study": "latest", "model": "pneumonia-cxr", "saliency": True})]
    assert asked_findings("Is there a brain tumour?").findings == ("tumour presence",)
    assert asked_findings("What kind of tumour is this?").findings == ("tumour type",)


def test_nodules_outside_the_lung_get_no_lung_guideline():
    frame = read_case("Incidental 15 mm thyroid nodule on neck CT, follow-up?", None)
    plan = plan_for(frame, "q", INSTALLED, False)
    assert frame.system == "none" and plan.calls == [] and "do not cover" in plan.statement


def test_an_organ_in_the_history_is_not_the_site_of_the_finding():
    frame = read_case("Kidney transplant recipient on immunosuppression, 8 mm nodule incidental on CT. Follow-up?", None)
    assert frame.organ is None and frame.intent == "followup"
    assert read_case("Incidental 2 cm renal mass on CT, follow-up?", None).organ == "renal"


def test_creative_requests_are_out_of_scope_and_retrieve_nothing():
    frame = read_case("Write a poem about the sea.", None)
    assert frame.intent == "out_of_scope" and plan_for(frame, "q", INSTALLED, False).calls == []


def test_sections_that_contradict_the_frame_are_not_applicable():
    frame = read_case("Incidental 7 mm solid nodule, single, low risk", None)
    assert fits("Solid nodules: single > Single solid nodule 6 to 8 mm", frame)
    assert not fits("Solid nodules: single > Single solid nodule smaller than 6 mm", frame)
    assert not fits("Solid nodules: multiple > Multiple solid nodules 6 to 8 mm", frame)
    assert not fits("Subsolid nodules: single > Single pure ground-glass nodule 6 mm or larger", frame)
    assert fits("Risk categories > High risk", frame)


def test_header_questions_read_the_header_and_fleischner_on_screening_says_it_does_not_apply():
    for question in ("What modality and view is this image?", "Describe the technique of the attached study.",
                     "What are the image dimensions of this file?"):
        plan = plan_for(read_case(question, None, has_image=True), question, INSTALLED, False)
        assert plan.calls == [("inspect_study", {"study": "latest"})]
    q = "Does Fleischner apply to nodules found on lung cancer screening CT? Patient 65, 7 mm solid nodule."
    frame = read_case(q, None)
    calls = [name for name, _ in plan_for(frame, q, INSTALLED, False).calls]
    assert frame.setting == "screening" and calls == ["fleischner_followup", "lung_rads_category"]


def test_count_reads_quantity_words_before_a_bare_plural():
    assert read_case("Multiple solid nodules, largest 7 mm, low risk", None).count == "multiple"
    assert read_case("Do the tables apply to nodules in general? Here a single 7 mm solid nodule.", None).count == \
        "single"
    assert read_case("Incidental 6 mm GGNs in both lungs", None).count == "multiple"


def test_questions_about_the_patients_earlier_studies_search_the_reports():
    for q in ("What is the latest BI-RADS assessment of the left breast mass?",
              "When was the nodule first reported and how large was it?",
              "What is the current Lung-RADS category and next step for this patient?"):
        assert read_case(q, None, has_patient=True).intent == "prior", q
    assert read_case("Lung-RADS for a stable 7 mm solid nodule on screening?", None, has_patient=True).intent == \
        "followup"
