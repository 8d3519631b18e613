"""Comparison with a prior study, end to end against a real Orthanc through the CLI: find the patient's studies
(the prior of the same modality and body part marked, an abdominal CT not), get both chest CTs (de-identified),
measure the labelled nodule on both, ask for the Lung-RADS category (a scripted model for the frame draft; real
tools, calculators, comparison), read the answer, the category and the summary's Comparison section, sign, send,
and read the SR back from Orthanc: the measurements of both time points with their ORIGINAL study references and
one tracking UID for the lesion."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from agent.cli import main
from tests.agent.test_pacs_roundtrip import SIGNER, run, scripted
from tests.orthanc import PriorStory, prior_story_fixture

QUESTION = "Nodule on an annual screening low-dose CT, smoker aged 64, 40 pack-years. What follow-up?"
# 8.0 / 7.0 mm now, 6.0 / 5.0 mm a year before, on CT_small's 0.661468 mm pixels
MEASURES = ["--measure", "study=1 slice=2 10,20 22.0944,20 type=solid label=RUL nodule 1",
            "--measure", "study=1 slice=2 30,30 30,40.5827 label=RUL nodule 1 short axis",
            "--measure", "study=2 slice=3 10,20 19.0708,20 type=solid label=RUL nodule 1",
            "--measure", "study=2 slice=3 30,30 30,37.5590 label=RUL nodule 1 short axis"]


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PriorStory]:
    yield from prior_story_fixture(tmp_path_factory)


@pytest.fixture
def env(settings, story, monkeypatch, tmp_path):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RADCONSULT_PACS_URL", story.server.dicomweb_url)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH", "basic")
    path = tmp_path / "pacs-credential"
    path.write_text(f"{story.server.user}:{story.server.password}\n")
    path.chmod(0o600)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(path))
    return settings


def test_find_marks_the_priors_of_the_same_modality_and_body_part(env, story, capsys):
    rc, out, err = run(capsys, "pacs", "find", "--patient-id", story.patient.patient_id, "--json")
    assert rc == 0, err
    roles = {s["study_uid"]: (s["role"], s["days_before"], s["body_parts"]) for s in json.loads(out)}
    assert roles[story.current[0]] == ("current", None, ["CHEST"])
    assert roles[story.prior[0]] == ("prior", 358, ["CHEST"])
    assert roles[story.abdomen[0]][0] == "other"  # CT too, but of the abdomen
    rc, out, _ = run(capsys, "pacs", "find", "--patient-id", story.patient.patient_id)
    assert "<- current" in out and "<- prior: CHEST, 358 days earlier" in out
    # the prior's own priors: nothing earlier of the chest
    rc, out, _ = run(capsys, "pacs", "find", "--patient-id", story.patient.patient_id, "--current", story.prior[0],
                     "--json")
    assert {s["study_uid"]: s["role"] for s in json.loads(out)}[story.current[0]] == "other"
    assert main(["pacs", "find", "--accession", story.patient.accession, "--current", story.prior[0]]) == 2
    assert "--patient-id" in capsys.readouterr().err


def test_a_nodule_compared_with_the_prior_from_the_pacs(env, story, monkeypatch, capsys, tmp_path):
    import pydicom

    from agent.signoff import ReportStore
    from tests.agent.fakes import frame
    from tests.agent.sr_read import evidence_studies, measurement_groups, referenced_sops

    settings = env
    folders = {}
    for name, (study_uid, series_uid) in (("current", story.current), ("prior", story.prior)):
        folders[name] = tmp_path / name
        rc, _, err = run(capsys, "pacs", "get", study_uid, "--series", series_uid, "--out", str(folders[name]))
        assert rc == 0, err

    scripted(monkeypatch, settings, [frame(intent="followup")])
    rc, out, err = run(capsys, "ask", QUESTION, "--image", str(folders["current"]), "--image", str(folders["prior"]),
                       *MEASURES, "--case", "cmp-pacs", "--summary", "--json")
    assert rc == 0, err
    turn = json.loads(out)
    answer = turn["answer"]
    assert ("Compared: RUL nodule 1: mean diameter 5.5 mm to 7.5 mm (+2 mm, +36.4%) from S2 2023-05-10 to S1 "
            "2024-05-02, 358 days (11.8 months): growing (more than the 1.5 mm measurement error)") in answer
    assert "Lung-RADS v2022 category 4A" in answer and "solid, growing, < 8 mm" in answer
    assert "The Lung-RADS v2022 category takes the status growing from the comparison of RUL nodule 1 with S2" in answer
    assert [c["kind"] for c in turn["citations"]] == ["measurement"] * 4 + ["comparison", "calculator"]
    comparison = [line["text"] for line in turn["summary"]["comparison"]]
    assert comparison[0] == "Current study S1: CT CHEST, 2024-05-02."
    assert comparison[1] == "Prior study S2: CT CHEST, 2023-05-10, 358 days before S1."
    assert comparison[2].startswith("RUL nodule 1: mean diameter 5.5 mm to 7.5 mm")
    assert turn["report"] == "cmp-pacs/v1"

    store = ReportStore.from_settings(settings)
    store.sign("cmp-pacs", 1, user=SIGNER)
    rc, out, err = run(capsys, "pacs", "send", "cmp-pacs/v1")
    assert rc == 0, err
    held = [i for i in story.server.find_instances(story.current[0])
            if story.server.rest("GET", f"/instances/{i['ID']}/tags?simplify").get("Modality") == "SR"]
    assert len(held) == 1
    sr = pydicom.dcmread(io.BytesIO(story.server.rest("GET", f"/instances/{held[0]['ID']}/file")))
    assert sr.StudyInstanceUID == story.current[0] and sr.PatientID == story.patient.patient_id
    groups = {g["study"]: g for g in measurement_groups(sr)}
    assert set(groups) == {"S1", "S2"}
    assert groups["S1"]["lengths"] == {"Long Axis": 8.0, "Short Axis": 7.0}
    assert groups["S2"]["lengths"] == {"Long Axis": 6.0, "Short Axis": 5.0}
    assert groups["S1"]["time_point"] == "current 2024-05-02" and groups["S2"]["time_point"] == "prior 2023-05-10"
    assert groups["S1"]["tracking_uid"] == groups["S2"]["tracking_uid"]
    assert groups["S1"]["tracking_id"] == "RUL nodule 1"
    # the original UIDs: the current study's own images, and the prior's in Pertinent Other Evidence
    assert evidence_studies(sr) == {"current": {story.current[0]}, "other": {story.prior[0]}}
    prior_sops = {str(pydicom.dcmread(io.BytesIO(story.server.rest("GET", f"/instances/{i['ID']}/file")),
                                      stop_before_pixels=True).SOPInstanceUID)
                  for i in story.server.find_instances(story.prior[0])}
    assert referenced_sops(sr) and referenced_sops(sr) <= prior_sops and groups["S2"]["sources"] <= prior_sops
    texts = " ".join(str(x.value) for x in sr.iterall() if x.keyword == "TextValue")
    assert "Prior study S2" in texts and "358 days" in texts
