"""Comparison with a prior study through the real Consultation: real CT series built from pydicom's CT_small
(one patient, two study dates), real loader (de-identification, date policy), real measurements, calculators
and frame; a scripted model only for the frame draft. The labelled lesion measured on both studies becomes
comparison evidence, sets the frame's status and drives the category, which the answer names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.consultation import Consultation
from agent.wiring import imaging_config
from tests.agent.fakes import ScriptedBackend, frame, real_tools
from tests.orthanc import HILDA, PatientModule, ct_series
from tools.errors import ComparisonError, DifferentPatientsError

PX = 0.661468  # CT_small.dcm's pixel spacing, mm
OTTO = PatientModule(name="Brandauer^Otto", patient_id="PID-O22-1190", birth_date="19480704", sex="M",
                     accession="ACC-O22-7")


def write_series(folder: Path, files: list[bytes]) -> Path:
    folder.mkdir(parents=True)
    for i, data in enumerate(files):
        (folder / f"{i:03d}.dcm").write_bytes(data)
    return folder


def load_ct(settings, tmp_path: Path, name: str, patient: PatientModule = HILDA, date: str = "20240502", **kw):
    from tools.imaging import load

    folder = write_series(tmp_path / name, ct_series(patient, 6, seed=f"{name}-{patient.patient_id}",
                                                     study_date=date, body_part="CHEST", **kw))
    return load(folder, imaging_config(settings))


def lengths(study, lesion: str, long_mm: float, short_mm: float, nodule_type: str = "solid", slice_index: int = 3):
    """A long and a short axis of exactly these lengths on ``study`` (CT_small's 0.661 mm pixels)."""
    from tools.measure import measure

    return [measure(study, slice_index, (10, 20), (10 + long_mm / PX, 20), label="long axis",
                    nodule_type=nodule_type, lesion=lesion),
            measure(study, slice_index, (30, 30), (30, 30 + short_mm / PX), label="short axis", lesion=lesion)]


def consult(settings, steps=None):
    return Consultation(settings, backend=ScriptedBackend(steps or [frame(intent="followup")]),
                        tools=real_tools(settings))


@pytest.fixture
def two_studies(settings, tmp_path):
    current = load_ct(settings, tmp_path, "current", date="20240502")
    prior = load_ct(settings, tmp_path, "prior", date="20230510")
    return current, prior


def test_growing_nodule_drives_fleischner_and_the_answer_names_the_comparison(settings, two_studies):
    current, prior = two_studies
    assert current.patient_key == prior.patient_key and current.study_key != prior.study_key
    c = consult(settings)
    measured = lengths(current, "RUL nodule 1", 8.0, 7.0) + lengths(prior, "RUL nodule 1", 6.0, 5.0)
    res = c.ask("cmp-1", "Incidental nodule in a never smoker, 61. What follow-up?", images=[current, prior],
                measurements=measured)
    kinds = [e.kind for e in res.evidence]
    assert kinds == ["measurement"] * 4 + ["comparison", "calculator"]
    comparison = res.evidence[4]
    change = comparison.facts["change"]
    # 5.5 -> 7.5 mm over 358 days (2023-05-10 to 2024-05-02): +2.0 mm, +36.4 %
    assert (change["prior_study"], change["current_study"], change["interval_days"]) == ("S2", "S1", 358)
    assert (change["prior_mean_mm"], change["current_mean_mm"], change["change_mm"], change["change_pct"]) == \
        (5.5, 7.5, 2.0, 36.4)
    assert change["status"] == "growing" and change["growth_within_12_months"] is True
    assert sorted(comparison.facts["measurements"]) == ["E1", "E2", "E3", "E4"]
    assert res.frame.status == "growing" and res.frame.comparison == comparison.id and res.frame.size_mm == 7.5
    assert "Measured on study S1: RUL nodule 1 long axis 8 mm, RUL nodule 1 short axis 7 mm [E1, E2]." in res.answer
    assert "Measured on study S2: RUL nodule 1 long axis 6 mm" in res.answer
    assert "Compared: RUL nodule 1: mean diameter 5.5 mm to 7.5 mm (+2 mm, +36.4%)" in res.answer
    assert "growing since the prior CT" in res.answer and "next step" in res.answer
    assert ("The Fleischner 2017 recommendation takes the status growing from the comparison of RUL nodule 1 with "
            "S2 (2023-05-10) [E5, E6].") in res.answer
    assert res.unsupported_sentences == () and res.contradicted_sentences == ()
    assert "E5" in res.cited_ids and "E6" in res.cited_ids


def test_lung_rads_growing_solid_nodule_under_8_mm_is_4a(settings, two_studies):
    current, prior = two_studies
    c = consult(settings)
    res = c.ask("cmp-2", "Nodule on an annual screening low-dose CT, smoker aged 64, 40 pack-years. What follow-up?",
                images=[current, prior],
                measurements=lengths(current, "RUL-1", 8.0, 7.0) + lengths(prior, "rul 1", 6.0, 5.0))
    calc = next(e for e in res.evidence if e.kind == "calculator")
    assert calc.facts["result"]["category"] == "4A" and "growing" in calc.facts["result"]["rule"]
    assert res.frame.system == "lung_rads" and res.frame.status == "growing"
    assert "The Lung-RADS v2022 category takes the status growing from the comparison of RUL-1 with S2" in res.answer
    assert not any("baseline screen" in a for a in res.frame.assumed)


def test_stable_within_measurement_error_and_a_stated_status_is_corrected(settings, two_studies):
    current, prior = two_studies
    c = consult(settings, [frame(intent="followup", status="growing")])
    res = c.ask("cmp-3", "Growing 6 mm solid nodule, incidental, never smoker aged 50. What follow-up?",
                images=[current, prior],
                measurements=lengths(current, "L1", 6.8, 6.0) + lengths(prior, "L1", 6.0, 5.6))  # 5.8 -> 6.4 mm
    change = next(e for e in res.evidence if e.kind == "comparison").facts["change"]
    assert change["status"] == "stable" and change["within_measurement_error"] and change["doubling_days"] is None
    assert res.frame.status == "stable" and res.frame.stable_months == 11
    assert any("status: growing -> stable" in x for x in res.frame.corrections)
    assert "stable within measurement error (1.5 mm)" in res.answer
    calc = next(e for e in res.evidence if e.kind == "calculator")
    assert calc.facts["inputs"]["status"] == "stable" and calc.facts["inputs"]["stable_months"] == 11
    assert any("13 months more" in n for n in calc.facts["result"]["notes"])


def test_resolved_and_new_lesions(settings, two_studies):
    from tools.measure import mark_absent

    current, prior = two_studies
    c = consult(settings, [frame(intent="followup"), frame(intent="followup")])
    gone = c.ask("cmp-4", "Incidental nodule, never smoker aged 58: what follow-up?", images=[current, prior],
                 measurements=[mark_absent(current, "LLL-2"), *lengths(prior, "LLL-2", 6.0, 5.0)])
    assert res_status(gone) == "resolved" and gone.frame.status == "resolved"
    assert "No further imaging: the nodule has resolved" in gone.answer
    assert "Measured on study S1: LLL-2 not seen" in gone.answer
    new = c.ask("cmp-4", "And the other one, what follow-up?", measurements=[
        *lengths(current, "RML-3", 5.0, 5.0), mark_absent(prior, "RML-3")])
    assert res_status(new) == "new" and new.frame.status == "new"


def res_status(res) -> str:
    return [e for e in res.evidence if e.kind == "comparison"][-1].facts["change"]["status"]


def test_a_lesion_measured_on_one_study_only_is_not_compared_and_the_answer_says_so(settings, two_studies):
    current, prior = two_studies
    c = consult(settings)
    res = c.ask("cmp-5", "Incidental nodule, never smoker aged 50. What follow-up?", images=[current, prior],
                measurements=lengths(current, "RUL-1", 8.0, 7.0))
    note = next(e for e in res.evidence if e.kind == "comparison")
    assert note.facts["compared"] is False
    assert "RUL-1 is measured on study S1 only: no change computed" in res.answer
    assert res.frame.status is None and res.frame.comparison is None


def test_the_prior_can_be_measured_in_a_later_turn(settings, two_studies):
    current, prior = two_studies
    c = consult(settings, [frame(intent="followup"), frame(intent="followup")])
    c.ask("cmp-6", "Incidental nodule, never smoker aged 50. What follow-up?", images=[current, prior],
          measurements=lengths(current, "RUL-1", 8.0, 7.0))
    res = c.ask("cmp-6", "Compared with the prior, what follow-up?", measurements=lengths(prior, "RUL-1", 6.0, 5.0))
    change = next(e for e in res.evidence[::-1] if e.kind == "comparison").facts["change"]
    assert change["status"] == "growing" and res.frame.size_mm == 7.5  # the size of the current study


def test_studies_of_different_patients_are_refused_and_nothing_is_written(settings, tmp_path, two_studies):
    current, _ = two_studies
    other = load_ct(settings, tmp_path, "otto", patient=OTTO, date="20230601")
    assert other.patient_key != current.patient_key
    c = consult(settings)
    with pytest.raises(DifferentPatientsError, match="different patients"):
        c.ask("cmp-7", "What follow-up?", images=[current, other],
              measurements=lengths(current, "RUL-1", 8.0, 7.0) + lengths(other, "RUL-1", 6.0, 5.0))
    assert c.state("cmp-7") == {}  # the turn never started


def test_a_study_without_a_date_cannot_be_compared(settings, tmp_path, two_studies):
    current, prior = two_studies
    undated = dataclasses.replace(prior, metadata=dataclasses.replace(prior.metadata, study_date=None))
    c = consult(settings)
    with pytest.raises(ComparisonError, match="no usable study date"):
        c.ask("cmp-8", "What follow-up?", images=[current, undated],
              measurements=lengths(current, "RUL-1", 8.0, 7.0) + lengths(undated, "RUL-1", 6.0, 5.0))


def test_shifted_dates_keep_the_interval(tmp_path, monkeypatch):
    """RADCONSULT_DEID_DATES=shift moves every date of a patient by one offset: both studies move together,
    so the interval (and the growth rate) survives; the dates the comparison shows are the shifted ones."""
    from agent.settings import Settings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RADCONSULT_CONFIG", raising=False)
    shifted = Settings(data_dir=tmp_path / "data", deid_dates="shift")
    current = load_ct(shifted, tmp_path, "s-current", date="20240502")
    prior = load_ct(shifted, tmp_path, "s-prior", date="20230510")
    assert current.metadata.study_date != "20240502" and prior.metadata.study_date != "20230510"
    c = consult(shifted)
    res = c.ask("cmp-9", "Incidental nodule in a never smoker, 61. What follow-up?", images=[current, prior],
                measurements=lengths(current, "RUL-1", 8.0, 7.0) + lengths(prior, "RUL-1", 6.0, 5.0))
    change = next(e for e in res.evidence if e.kind == "comparison").facts["change"]
    assert change["interval_days"] == 358 and change["current_date"] != "2024-05-02"
    assert "2024-05-02" not in res.answer and "2023-05-10" not in res.answer


def test_summary_comparison_section_report_and_sr(settings, two_studies, tmp_path):
    import pydicom

    from agent.comparison import current_study
    from agent.exports import export
    from agent.signoff import ReportStore
    from agent.summary import build_report, summary_sections
    from tests.agent.sr_read import evidence_studies, measurement_groups

    current, prior = two_studies
    c = consult(settings)
    c.ask("cmp-10", "Incidental nodule in a never smoker, 61. What follow-up?", images=[prior, current],
          measurements=lengths(current, "RUL-1", 8.0, 7.0) + lengths(prior, "RUL-1", 6.0, 5.0))
    summary = c.summary("cmp-10", impression=False)
    comparison = "\n".join(line.markdown() for line in summary.comparison)
    assert "Current study S2: CT CHEST, 2024-05-02." in comparison
    assert "Prior study S1: CT CHEST, 2023-05-10, 358 days before S2." in comparison
    assert "RUL-1: mean diameter 5.5 mm to 7.5 mm (+2 mm, +36.4%) from S1 2023-05-10 to S2 2024-05-02" in comparison
    assert "[E1][E2][E3][E4][E5]" in comparison
    assert any("RUL-1 is growing compared with S1 (2023-05-10)" in line.text for line in summary.impression)
    assert current_study([prior, current]) is current
    report = build_report(summary, "cmp-10", current.patient_key, c.evidence("cmp-10"), current, [])
    sections = dict(summary_sections(summary))
    assert "Prior study S1" in sections["Comparison"] and "[E5]" in sections["Comparison"]
    assert {(m.study, m.time_point, m.axis) for m in report.measurements} == {
        ("S2", "current", "long axis"), ("S2", "current", "short axis"), ("S1", "prior", "long axis"),
        ("S1", "prior", "short axis")}
    assert len({m.tracking_uid for m in report.measurements}) == 1
    rv = ReportStore.from_settings(settings).save_draft(report)
    sr = pydicom.dcmread(export(rv, "sr", tmp_path))
    groups = {g["study"]: g for g in measurement_groups(sr)}
    assert groups["S2"]["lengths"] == {"Long Axis": 8.0, "Short Axis": 7.0}
    assert groups["S1"]["lengths"] == {"Long Axis": 6.0, "Short Axis": 5.0}
    assert evidence_studies(sr) == {"current": {current.study_uid}, "other": {prior.study_uid}}
    c.close()
