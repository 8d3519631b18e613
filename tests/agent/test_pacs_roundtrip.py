"""The PACS user story through the CLI against a real Orthanc: find a chest CT by accession number, get the
series (de-identified), measure a nodule, ask "what follow-up?" (a scripted model for the orchestration; the
packaged LLM in the slow test), draft the summary, sign it, send it; then read the SR back from Orthanc and
check that it sits under the original study with the original UIDs, the sign-off and the measurement. Also:
no identifier typed into the search reaches a prompt, a log, the case database or the knowledge base, and
nothing is sent twice."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from tests.agent.fakes import ScriptedBackend, frame, real_tools, text
from tests.orthanc import HILDA, PacsStory, story_fixture

QUESTION = "Incidental nodule in a never smoker, 55 years. What follow-up?"
SIGNER = "dr_mueller"
# 8.0 mm and 6.0 mm on CT_small.dcm (0.661468 mm pixels)
LONG = "slice=5 10,20 22.0944,20 type=solid label=long axis"
SHORT = "slice=5 30,30 30,39.0708 label=short axis"


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PacsStory]:
    yield from story_fixture(tmp_path_factory)


@pytest.fixture
def env(settings, story, monkeypatch, tmp_path):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RADCONSULT_PACS_URL", story.server.dicomweb_url)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH", "basic")
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(story.credential_file(tmp_path)))
    return settings


def scripted(monkeypatch, settings, steps) -> ScriptedBackend:
    """`radconsult ask` with a scripted model over the real tools and calculators."""
    import agent.consultation as consultation

    backend = ScriptedBackend(steps)

    class Scripted(consultation.Consultation):
        def __init__(self, s, **kw):
            super().__init__(s, backend=backend, tools=real_tools(s))

    monkeypatch.setattr(consultation, "Consultation", Scripted)
    return backend


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def sr_instances(story: PacsStory) -> list[dict]:
    return [i for i in story.server.find_instances(story.study_uid)
            if i["MainDicomTags"].get("SOPInstanceUID") not in story.ct_sops
            and story.server.rest("GET", f"/instances/{i['ID']}/tags?simplify").get("Modality") == "SR"
            and "radconsult" in story.server.rest("GET", f"/instances/{i['ID']}/tags?simplify").get("SeriesDescription", "")]


def identifiers(story: PacsStory) -> list[str]:
    return [HILDA.accession, HILDA.patient_id, "Quellmalz", "Hildegard", HILDA.birth_date, story.study_uid,
            story.ct_series_uid, *story.ct_sops]


def files_holding(root: Path, values: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in skip:
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {v}" for v in values if v.encode() in data]
    return found


def test_the_ct_nodule_story_through_the_cli(env, story, monkeypatch, capsys, caplog, tmp_path):
    import pydicom

    from agent.audit import AuditLog, text_hash
    from agent.exports import to_dicom_sr
    from agent.signoff import ReportStore

    caplog.set_level(logging.DEBUG)
    settings = env
    out = tmp_path / "ct"

    # 1. find by accession number
    rc, stdout, _ = run(capsys, "pacs", "find", "--accession", HILDA.accession, "--json")
    found = json.loads(stdout)
    assert rc == 0 and [s["study_uid"] for s in found] == [story.study_uid]

    # 2. get: two image series, so the clinician chooses; nothing is written meanwhile
    rc, stdout, err = run(capsys, "pacs", "get", story.study_uid, "--out", str(out))
    assert rc == 2 and "2 image series: choose one with --series" in err and story.ct_series_uid in stdout
    assert not out.exists()
    rc, stdout, err = run(capsys, "pacs", "get", story.study_uid, "--series", story.ct_series_uid, "--out", str(out))
    assert rc == 0, err
    assert "wrote 12 de-identified image(s)" in stdout and "skipped 1 structured report" in stdout

    # 3. measure and ask (scripted model: the case frame; the answer is rendered from the calculator)
    backend = scripted(monkeypatch, settings, [frame(intent="followup"), text("A solid nodule [E1].")])
    rc, stdout, err = run(capsys, "ask", QUESTION, "--image", str(out), "--measure", LONG, "--measure", SHORT,
                          "--case", "ct-story", "--summary", "--json")
    assert rc == 0, err
    turn = json.loads(stdout)
    assert "Measured on study S1: long axis 8 mm, short axis 6 mm [E1, E2]." in turn["answer"]
    assert "single solid nodule 6-8 mm, low risk" in turn["answer"]
    assert [c["kind"] for c in turn["citations"]] == ["measurement", "measurement", "calculator"]
    assert turn["report"] == "ct-story/v1"

    # 4. a draft is refused; sign; send once; sending again is a no-op that says so
    rc, _, err = run(capsys, "pacs", "send", "ct-story/v1")
    assert rc == 2 and "is a draft" in err and sr_instances(story) == []
    store = ReportStore.from_settings(settings)
    store.sign("ct-story", 1, user=SIGNER)
    rc, stdout, err = run(capsys, "pacs", "send", "ct-story/v1")
    assert rc == 0 and "sent ct-story/v1 (signed by dr_mueller)" in stdout, err
    rc, stdout, _ = run(capsys, "pacs", "send", "ct-story/v1")
    assert rc == 0 and "already sent" in stdout and "nothing was sent again" in stdout
    held = sr_instances(story)
    assert len(held) == 1

    # 5. the SR as the PACS holds it: the original study, patient and images, the sign-off, the measurement
    sr = pydicom.dcmread(io.BytesIO(story.server.rest("GET", f"/instances/{held[0]['ID']}/file")))
    ct_ids = {i["ID"] for i in story.server.find_instances(story.study_uid)
              if i["MainDicomTags"]["SOPInstanceUID"] in story.ct_sops}
    assert story.server.rest("GET", f"/instances/{held[0]['ID']}/study")["ID"] == \
        story.server.rest("GET", f"/instances/{next(iter(ct_ids))}/study")["ID"]
    assert sr.StudyInstanceUID == story.study_uid
    assert (str(sr.PatientName), sr.PatientID, sr.PatientBirthDate, sr.PatientSex, sr.AccessionNumber) == \
        (HILDA.name, HILDA.patient_id, HILDA.birth_date, HILDA.sex, HILDA.accession)
    assert sr.PatientIdentityRemoved == "NO"
    referenced = [ref.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                  for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence]
    assert sorted(referenced) == sorted(story.ct_sops)
    assert {s.SeriesInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
            for s in st.ReferencedSeriesSequence} == {story.ct_series_uid}
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == f"{SIGNER}^"
    texts = " ".join(str(item.value) for item in sr.iterall() if item.keyword == "TextValue")
    assert "SIGNED by dr_mueller" in texts and "long axis 8.0 mm, solid" in texts and "short axis 6.0 mm" in texts
    assert "Fleischner" in texts and "not a diagnosis" in texts

    # 6. the local export of the same version keeps the pseudonyms
    local = to_dicom_sr(store.load("ct-story", 1))
    assert local.StudyInstanceUID != story.study_uid and local.PatientID.startswith("P-")
    assert local.PatientIdentityRemoved == "YES"

    # 7. no identifier in prompts, logs, the case database, the knowledge base, reports or the audit log
    prompts = json.dumps([r["messages"] for r in backend.requests], default=str)
    leaks = [(v, "prompt" if v in prompts else caplog.text[max(0, caplog.text.find(v) - 300):caplog.text.find(v) + 80])
             for v in identifiers(story) if v in prompts or v in caplog.text]
    assert leaks == []
    assert files_holding(settings.data_dir, identifiers(story), skip=("reid.sqlite",)) == []
    assert (settings.data_dir / "cases.sqlite").exists() and (settings.data_dir / "audit.jsonl").exists()
    reid = settings.pacs_dir / "reid.sqlite"
    assert oct(reid.stat().st_mode & 0o777) == "0o600" and HILDA.accession.encode() in reid.read_bytes()
    actions = [(r["action"], r["details"]) for r in AuditLog.from_settings(settings).records()]
    find = next(d for a, d in actions if a == "pacs_find")
    assert find["accession_sha256"] == text_hash(HILDA.accession) and find["results"] == 1
    assert [a for a, d in actions if a == "pacs_send"] == ["pacs_send"] * 3  # refused draft, sent, no-op
    assert [d["already_sent"] for a, d in actions if a == "pacs_send"] == [None, False, True]


def test_send_fails_cleanly_and_can_be_retried(env, story, monkeypatch, capsys, tmp_path):
    """The PACS refuses the credentials at send time: a typed error, exit 2, nothing recorded as sent; with the
    right credentials the same version then goes exactly once."""
    from agent.pacs import SentLog
    from agent.signoff import ReportStore

    settings = env
    out = tmp_path / "lung"
    assert run(capsys, "pacs", "get", story.study_uid, "--series", story.lung_series_uid, "--out", str(out))[0] == 0
    scripted(monkeypatch, settings, [frame(intent="followup")])
    rc, stdout, err = run(capsys, "ask", QUESTION, "--image", str(out), "--measure", LONG.replace("slice=5", "slice=2"),
                          "--measure", SHORT.replace("slice=5", "slice=2"), "--case", "lung-1", "--summary", "--json")
    assert rc == 0, err
    ReportStore.from_settings(settings).sign("lung-1", 1, user=SIGNER)
    before = len(sr_instances(story))
    (tmp_path / "bad").mkdir()
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(story.credential_file(tmp_path / "bad", "wrong-pw-9731")))
    rc, _, err = run(capsys, "pacs", "send", "lung-1/v1")
    assert rc == 2 and "refused the credentials (HTTP 401)" in err and "wrong-pw-9731" not in err
    with SentLog.for_settings(settings).claim(ReportStore.from_settings(settings).load("lung-1", 1)) as row:
        assert row is None
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(story.credential_file(tmp_path)))
    assert run(capsys, "pacs", "send", "lung-1")[0] == 0  # the newest version, signed
    assert "already sent" in run(capsys, "pacs", "send", "lung-1/v1")[1]
    assert len(sr_instances(story)) == before + 1


def test_a_report_of_an_uploaded_study_cannot_be_sent(env, story, monkeypatch, capsys, tmp_path):
    """A study that did not come from the PACS has no re-identification entry: nothing to send it back to."""
    from agent.signoff import ReportStore
    from tests.conftest import pydicom_file

    settings = env
    scripted(monkeypatch, settings, [frame(intent="followup")])
    rc, stdout, err = run(capsys, "ask", QUESTION, "--image", str(pydicom_file("CT_small.dcm")), "--measure",
                          LONG.replace("slice=5", "slice=0"), "--measure", SHORT.replace("slice=5", "slice=0"),
                          "--case", "upload-1", "--summary", "--json")
    assert rc == 0, err
    ReportStore.from_settings(settings).sign("upload-1", 1, user=SIGNER)
    rc, _, err = run(capsys, "pacs", "send", "upload-1/v1")
    assert rc == 2 and "no study has been opened from the PACS" in err  # an empty map
    out = tmp_path / "lung"
    assert run(capsys, "pacs", "get", story.study_uid, "--series", story.lung_series_uid, "--out", str(out))[0] == 0
    rc, _, err = run(capsys, "pacs", "send", "upload-1/v1")
    assert rc == 2 and "was not opened from the PACS on this installation" in err  # a map without this study


@pytest.mark.slow
def test_the_story_with_the_packaged_llm(env, story, monkeypatch, capsys, tmp_path, qwen_path):  # noqa: F811
    """The same path with the real packaged 0.5B model reading the case frame and writing the impression."""
    import pydicom

    import agent.consultation as consultation
    from agent.llm.gguf import GGUFBackend
    from agent.signoff import ReportStore

    settings = env
    backend = GGUFBackend(qwen_path, n_ctx=8192, max_tokens=160, timeout_s=600, state_dir=tmp_path / "kv")

    class Packaged(consultation.Consultation):
        def __init__(self, s, **kw):
            super().__init__(s, backend=backend)

    monkeypatch.setattr(consultation, "Consultation", Packaged)
    out = tmp_path / "ct"
    try:
        assert run(capsys, "pacs", "get", story.study_uid, "--series", story.ct_series_uid, "--out", str(out))[0] == 0
        rc, stdout, err = run(capsys, "ask", QUESTION, "--image", str(out), "--measure", LONG, "--measure", SHORT,
                              "--case", "llm-story", "--summary", "--json")
    finally:
        backend.close()
    turn = json.loads(stdout) if stdout.strip().startswith("{") else {}
    assert rc == 0, (turn.get("error"), turn.get("answer"), err[-2000:])
    assert turn["frame"]["size_mm"] == 7.0 and "Fleischner" in turn["answer"]
    assert {"measurement", "calculator"} <= {c["kind"] for c in turn["citations"]}
    ReportStore.from_settings(settings).sign("llm-story", 1, user=SIGNER)
    assert run(capsys, "pacs", "send", "llm-story/v1")[0] == 0
    held = [i for i in sr_instances(story)]
    texts = []
    for inst in held:
        sr = pydicom.dcmread(io.BytesIO(story.server.rest("GET", f"/instances/{inst['ID']}/file")))
        texts.append(" ".join(str(x.value) for x in sr.iterall() if x.keyword == "TextValue"))
    assert any("long axis 8.0 mm" in t and "SIGNED by dr_mueller" in t for t in texts)


from tests.agent.llm_fixtures import qwen_path  # noqa: E402,F401 - fixture for the slow test


def test_a_send_that_timed_out_is_repeated_as_the_same_instance(env, story, tmp_path):
    """The outcome of a timed-out send is unknown (the PACS may hold the SR): the attempt stays pending and the
    retry sends the very same SOP instance, so the PACS holds it once."""
    from agent.pacs import NotSignedError, SentLog, get_series, report_sr_uids, send_report
    from agent.settings import load_settings
    from agent.signoff import Report, ReportStore, StudyRef
    from agent.wiring import pacs_config, reid_map
    from tests.tools.test_pacs import silent_server
    from tools.errors import PacsTimeoutError
    from tools.pacs import PacsClient, PacsConfig

    settings = load_settings()  # with the PACS settings the env fixture exported
    assert settings.data_dir == env.data_dir
    with PacsClient(pacs_config(settings)) as client:
        _, study = get_series(settings, client, story.study_uid, story.lung_series_uid, tmp_path / "lung")
    store = ReportStore.from_settings(settings)
    report = Report(case_id="timeout-1", sections=(("Findings", "Solid nodule, long axis 8.0 mm."),),
                    study=StudyRef(study.study_uid, study.series_uid, study.sop_instance_uids, study.sop_class_uid,
                                   "CT"))
    rv = store.sign("timeout-1", store.save_draft(report).version, user=SIGNER)
    sent = SentLog.for_settings(settings)
    with silent_server() as port, PacsClient(PacsConfig(f"http://127.0.0.1:{port}/dicom-web", timeout_s=0.5)) as c, \
            pytest.raises(PacsTimeoutError):
        send_report(rv, reid_map(settings), c, sent)
    with sent.claim(rv) as row:
        assert row is not None and row["state"] == "pending"
    with PacsClient(pacs_config(settings)) as client:
        first = send_report(rv, reid_map(settings), client, sent)
        again = send_report(rv, reid_map(settings), client, sent)
    sop = report_sr_uids(rv)[1]
    assert first.sop_instance_uid == again.sop_instance_uid == sop and not first.already_sent and again.already_sent
    assert [i for i in story.server.find_instances(story.study_uid) if i["MainDicomTags"]["SOPInstanceUID"] == sop]
    draft = store.edit("timeout-1", rv.version, report, user=SIGNER)  # a new draft version supersedes it
    with PacsClient(pacs_config(settings)) as client, pytest.raises(NotSignedError):
        send_report(draft, reid_map(settings), client, sent)


def test_the_siim_cr_from_the_pacs_is_measured_with_a_projection_warning(env, story, monkeypatch, capsys, tmp_path):
    """The real SIIM chest radiograph, stored in and retrieved from the PACS: a length on it is at the detector."""
    from tests.conftest import shared_file

    cr = shared_file("cxr/siim_cxr_no_pneumothorax.dcm")
    import pydicom

    head = pydicom.dcmread(cr, stop_before_pixels=True)
    story.server.upload([cr])
    rc, stdout, _ = run(capsys, "pacs", "find", "--date", str(head.StudyDate), "--modality", "CR", "--json")
    assert rc == 0 and [s["study_uid"] for s in json.loads(stdout)] == [str(head.StudyInstanceUID)]
    out = tmp_path / "cr"
    rc, stdout, err = run(capsys, "pacs", "get", str(head.StudyInstanceUID), "--out", str(out))
    assert rc == 0 and "wrote 1 de-identified image(s)" in stdout and "CR 1024 x 1024" in stdout, err
    scripted(monkeypatch, env, [frame(intent="followup")])
    rc, stdout, err = run(capsys, "ask", "Solid nodule on this film, never smoker, 50 years: follow-up?", "--image",
                          str(out), "--measure", "400,400 459.5,400 type=solid label=long axis", "--case", "cr-1",
                          "--summary", "--json")
    assert rc == 0, err
    turn = json.loads(stdout)
    findings = turn["summary_markdown"].split("## Findings")[1].split("##")[0]
    assert "long axis 10.0 mm, solid" in findings and "CR is a projection image" in findings
