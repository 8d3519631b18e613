"""`radconsult pacs ...` and `ask --measure`: each bad input and each fault is a typed error, exit 2, one line
saying what to do, nothing half-written (a real Orthanc for the ones that need a PACS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.cli import main
from tests.orthanc import HILDA, PacsStory, story_fixture


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PacsStory]:
    yield from story_fixture(tmp_path_factory)


@pytest.fixture
def base(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_DATA_DIR", str(settings.data_dir))
    for name in ("URL", "AUTH", "AUTH_FILE", "AUTH_ENV", "MAX_INSTANCES", "MAX_SERIES_BYTES", "TIMEOUT_S"):
        monkeypatch.delenv(f"RADCONSULT_PACS_{name}", raising=False)
    return settings


@pytest.fixture
def env(base, story, monkeypatch, tmp_path):
    monkeypatch.setenv("RADCONSULT_PACS_URL", story.server.dicomweb_url)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH", "basic")
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(story.credential_file(tmp_path)))
    return base


def fails(capsys, *argv: str) -> str:
    """Run the CLI, expect exit 2 and one line on stderr without a traceback; returns that line."""
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("radconsult: error: ") and err.count("\n") == 1
    return err


# --- configuration ---------------------------------------------------------------------------------------
def test_no_pacs_configured(base, capsys):
    assert "set RADCONSULT_PACS_URL" in fails(capsys, "pacs", "find", "--accession", "A1")


def test_credentials_missing_or_readable_by_others(base, story, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RADCONSULT_PACS_URL", story.server.dicomweb_url)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH", "basic")
    assert "RADCONSULT_PACS_AUTH_FILE" in fails(capsys, "pacs", "find", "--accession", "A1")
    cred = story.credential_file(tmp_path)
    cred.chmod(0o644)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(cred))
    assert "chmod 600" in fails(capsys, "pacs", "find", "--accession", "A1")
    cred.write_text("no-colon-here")
    cred.chmod(0o600)
    assert "user:password" in fails(capsys, "pacs", "find", "--accession", "A1")
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_ENV", "H15_PACS_CREDENTIAL")
    assert "H15_PACS_CREDENTIAL" in fails(capsys, "pacs", "find", "--accession", "A1")


def test_credential_from_an_environment_variable(base, story, monkeypatch, capsys):
    monkeypatch.setenv("RADCONSULT_PACS_URL", story.server.dicomweb_url)
    monkeypatch.setenv("RADCONSULT_PACS_AUTH", "basic")
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_ENV", "H15_PACS_CREDENTIAL")
    monkeypatch.setenv("H15_PACS_CREDENTIAL", f"{story.server.user}:{story.server.password}")
    assert main(["pacs", "find", "--patient-id", HILDA.patient_id]) == 0
    out = capsys.readouterr().out
    assert story.study_uid in out and "Quellmalz^Hildegard^Maria" in out and story.server.password not in out


def test_wrong_password(env, story, monkeypatch, capsys, tmp_path):
    (tmp_path / "w").mkdir()
    monkeypatch.setenv("RADCONSULT_PACS_AUTH_FILE", str(story.credential_file(tmp_path / "w", "not-the-password-77")))
    err = fails(capsys, "pacs", "find", "--accession", HILDA.accession)
    assert "HTTP 401" in err and "not-the-password-77" not in err and HILDA.accession not in err


def test_pacs_down(base, monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RADCONSULT_PACS_URL", f"http://127.0.0.1:{port}/dicom-web")
    monkeypatch.setenv("RADCONSULT_PACS_TIMEOUT_S", "2")
    err = fails(capsys, "pacs", "find", "--patient-id", HILDA.patient_id)
    assert "cannot reach the PACS" in err and HILDA.patient_id not in err


# --- find and get ------------------------------------------------------------------------------------------
def test_find_input(env, capsys):
    assert "accession number, patient ID or study date" in fails(capsys, "pacs", "find", "--modality", "CT")
    assert "YYYYMMDD" in fails(capsys, "pacs", "find", "--date", "yesterday")
    assert "wildcards" in fails(capsys, "pacs", "find", "--patient-id", "PID*")
    assert main(["pacs", "find", "--accession", "NO-SUCH-ACCESSION"]) == 0
    assert "no study matches" in capsys.readouterr().out


def test_get_faults_write_nothing(env, story, monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    assert "no study with that UID" in fails(capsys, "pacs", "get", "1.2.3.999", "--out", str(out))
    assert "no image to open" in fails(capsys, "pacs", "get", story.study_uid, "--series", story.sr_series_uid,
                                       "--out", str(out))
    assert "no series with that UID" in fails(capsys, "pacs", "get", story.study_uid, "--series", "1.2.3.4",
                                              "--out", str(out))
    assert "DICOM UID" in fails(capsys, "pacs", "get", "not-a-uid", "--out", str(out))
    monkeypatch.setenv("RADCONSULT_PACS_MAX_INSTANCES", "5")
    assert "over the limit of 5" in fails(capsys, "pacs", "get", story.study_uid, "--series", story.ct_series_uid,
                                          "--out", str(out))
    monkeypatch.delenv("RADCONSULT_PACS_MAX_INSTANCES")
    monkeypatch.setenv("RADCONSULT_PACS_MAX_SERIES_BYTES", "50000")
    assert "RADCONSULT_PACS_MAX_SERIES_BYTES" in fails(capsys, "pacs", "get", story.study_uid, "--series",
                                                      story.ct_series_uid, "--out", str(out))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    monkeypatch.delenv("RADCONSULT_PACS_MAX_SERIES_BYTES")
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert "not an empty folder" in fails(capsys, "pacs", "get", story.study_uid, "--series", story.ct_series_uid,
                                          "--out", str(out))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_get_all_series_and_forget(env, story, monkeypatch, capsys, tmp_path):
    from agent.wiring import reid_map

    monkeypatch.setenv("RADCONSULT_PACS_MAX_INSTANCES", "6")  # the first series (4) fits, the second (13) not
    assert "over the limit of 6" in fails(capsys, "pacs", "get", story.study_uid, "--series", "all", "--out",
                                          str(tmp_path / "all"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".all", "all"))]
    monkeypatch.delenv("RADCONSULT_PACS_MAX_INSTANCES")

    assert main(["pacs", "get", story.study_uid, "--series", "all", "--out", str(tmp_path / "all"), "--json"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["series01", "series02"]
    assert reid_map(env).counts() == {"studies": 1, "instances": 16}
    assert main(["pacs", "forget", story.study_uid]) == 0
    assert "removed" in capsys.readouterr().out and reid_map(env).counts() == {"studies": 0, "instances": 0}


def test_series_listing(env, story, capsys):
    assert main(["pacs", "series", story.study_uid]) == 0
    out = capsys.readouterr().out
    assert story.ct_series_uid in out and "13 instance(s)" in out and "(no images)" in out


# --- send --------------------------------------------------------------------------------------------------
def test_send_input(env, capsys):
    assert "CASE/vN" in fails(capsys, "pacs", "send", "no spaces/allowed")
    assert "has no summary yet" in fails(capsys, "pacs", "send", "never-drafted/v1")


# --- ask --measure -----------------------------------------------------------------------------------------
def test_parse_measure():
    from agent.commands.ask import parse_measure

    m = parse_measure("slice=42 120,88 131.5,95 type=part-solid label=long axis (max)")
    assert (m.slice_index, m.p1, m.p2, m.nodule_type, m.label, m.image) == \
        (42, (120.0, 88.0), (131.5, 95.0), "part_solid", "long axis (max)", 1)
    assert parse_measure("10,10 20,20").slice_index == 0 and parse_measure("1,1 2,2 type=GGN").nodule_type == \
        "ground_glass"


@pytest.mark.parametrize("spec, message", [
    ("slice=1 10,10", "exactly two points"),
    ("slice=1 10,10 20,20 30,30", "exactly two points"),
    ("slice=x 10,10 20,20", "whole numbers"),
    ("slice=1 10,10 20,nan", "not an x,y point"),
    ("slice=1 10;10 20,20", "not an x,y point"),
    ("slice=1 10,10 20,20 type=calcified", "solid, part-solid or ground-glass"),
    ("slice=1 10,10 20,20 size=8", "unexpected"),
    ("slice=1 10,10 20,20 label=<script>", "label"),
])
def test_bad_measure_specs(base, capsys, spec, message):
    from tests.conftest import pydicom_file

    assert message in fails(capsys, "ask", "What follow-up?", "--image", str(pydicom_file("CT_small.dcm")),
                            "--measure", spec)


def test_measure_needs_an_image_and_a_point_on_it(base, capsys):
    from tests.conftest import pydicom_file

    assert "add --image" in fails(capsys, "ask", "What follow-up?", "--measure", "10,10 20,20")
    ct = str(pydicom_file("CT_small.dcm"))
    assert "outside the study" in fails(capsys, "ask", "Follow-up?", "--image", ct, "--measure", "slice=3 1,1 2,2")
    assert "outside the 128 x 128 image" in fails(capsys, "ask", "Follow-up?", "--image", ct, "--measure",
                                                 "500,1 2,2")
    assert "image=2" in fails(capsys, "ask", "Follow-up?", "--image", ct, "--measure", "1,1 2,2 image=2")
