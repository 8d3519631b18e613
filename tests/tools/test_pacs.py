"""tools/pacs.py against a real Orthanc (Debian's orthanc + orthanc-dicomweb, started by the test on a free
loopback port with authentication on): QIDO search, series listing, limits from QIDO, WADO-RS retrieve (all or
nothing), STOW-RS with the read-back check, and every fault the issue lists as a typed error."""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.wiring import deid_policy, imaging_config
from tests.conftest import shared_dir
from tests.orthanc import (
    HILDA,
    OrthancServer,
    PacsStory,
    PatientModule,
    ct_series,
    missing_reason,
    story_fixture,
    text_sr,
)
from tools.errors import (
    EmptySeriesError,
    InputError,
    PacsAuthError,
    PacsNotFoundError,
    PacsTimeoutError,
    PacsUnavailableError,
    PartialRetrieveError,
    SeriesTooLargeError,
    SettingsError,
    StowRejectedError,
)
from tools.pacs import PacsAuth, PacsClient, PacsConfig, Secret, check_date, check_identifier
from tools.pacs_reid import Pseudonymiser, ReidMap

OTHER = PatientModule("Other^Patient", "PID-OTHER-1", "19600101", "M", "ACC-OTHER-1")


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PacsStory]:
    yield from story_fixture(tmp_path_factory, extra=shared_dir() / "data" / "cxr" / "siim_cxr_no_pneumothorax.dcm")


def config(story: PacsStory, password: str | None = None, **kw) -> PacsConfig:
    auth = PacsAuth("basic", Secret(password or story.server.password), username=story.server.user)
    return PacsConfig(story.server.dicomweb_url, auth=auth, **kw)


@pytest.fixture
def client(story) -> Iterator[PacsClient]:
    with PacsClient(config(story)) as c:
        yield c


@pytest.fixture
def pseudonymiser(settings) -> Pseudonymiser:
    return Pseudonymiser(deid_policy(settings))


# --- QIDO ---------------------------------------------------------------------------------------------
def test_find_by_accession_patient_and_date(client, story):
    by_acc = client.find(accession=HILDA.accession)
    assert [s.study_uid for s in by_acc] == [story.study_uid]
    s = by_acc[0]
    assert (s.patient_id, s.patient_name, s.patient_sex, s.modalities) == (HILDA.patient_id, HILDA.name, "F", ("CT", "SR"))
    assert s.series_count == 3 and s.instance_count == 18
    assert [x.study_uid for x in client.find(patient_id=HILDA.patient_id, modality="CT")] == [story.study_uid]
    assert client.find(patient_id=HILDA.patient_id, modality="MR") == []
    assert story.study_uid in [x.study_uid for x in client.find(date="2004-01-19")]
    assert client.find(accession="NO-SUCH-ACC") == []


def test_find_the_cr_by_modality_and_date(client, story):
    if story.cr_study_uid is None:
        pytest.skip("shared data cxr/siim_cxr_no_pneumothorax.dcm absent")
    found = client.find(date="19010101", modality="CR")
    assert [s.study_uid for s in found] == [story.cr_study_uid]


def test_series_with_instance_counts_and_modalities(client, story):
    series = {s.series_uid: s for s in client.series(story.study_uid)}
    assert series[story.ct_series_uid].instance_count == 13 and series[story.ct_series_uid].modality == "CT"
    assert series[story.lung_series_uid].instance_count == 4
    assert not series[story.sr_series_uid].likely_images and series[story.ct_series_uid].likely_images


def test_search_input_is_checked_before_anything_is_sent(client):
    for kwargs in ({}, {"modality": "CT"}, {"accession": "A*"}, {"patient_id": "x\x00y"}, {"date": "19-01-2004"},
                   {"accession": "A", "modality": "C T"}, {"accession": "a" * 65}):
        with pytest.raises(InputError):
            client.find(**kwargs)
    assert check_date("20240101-20240331") == "20240101-20240331" and check_date("2024-01-05") == "20240105"
    assert check_identifier("  ACC 1 ", "x") == "ACC 1"
    with pytest.raises(InputError, match="DICOM UID"):
        client.series("1.2.3; DROP")


# --- plans and limits -------------------------------------------------------------------------------------
def test_plan_from_the_series_count_and_a_sample_instance(client, story):
    plan = client.plan_series(story.study_uid, story.ct_series_uid)
    assert plan.expected == 13
    if plan.listed:  # the PACS listed the dose SR first: every instance was listed
        assert plan.estimated_bytes == 12 * (128 * 128 * 2 + 4096)
    else:
        assert plan.estimated_bytes == 13 * (128 * 128 * 2 + 4096)


def test_a_series_whose_first_instance_is_a_report_is_listed_in_full(client, story, tmp_path, pseudonymiser):
    import pydicom

    study_uid = pydicom.uid.generate_uid(entropy_srcs=["h15-sr-first"])
    ct = ct_series(OTHER, 2, study_uid=study_uid, seed="h15-sr-first")
    series_uid = str(pydicom.dcmread(io.BytesIO(ct[0])).SeriesInstanceUID)
    story.server.upload([text_sr(OTHER, study_uid, series_uid, seed="h15-sr-first"), *ct])
    plan = client.plan_series(study_uid, series_uid)
    assert len(plan.listed) == 3 and plan.notes == ("skipped 1 structured report (not an image)",)
    assert plan.estimated_bytes == 2 * (128 * 128 * 2 + 4096)
    got = client.retrieve_series(study_uid, series_uid, tmp_path / "out", pseudonymiser=pseudonymiser, plan=plan)
    assert got.count == 2 and got.skipped == 1 and got.notes == plan.notes


def test_bytes_are_checked_again_as_they_arrive(story, tmp_path, pseudonymiser):
    """A plan that underestimates (a PACS whose QIDO geometry is wrong): the stream is cut at the limit."""
    from tools.pacs import SeriesPlan

    (tmp_path / "w").mkdir()
    plan = SeriesPlan(story.study_uid, story.ct_series_uid, expected=13, estimated_bytes=1000)
    with PacsClient(config(story, max_series_bytes=200_000)) as c, pytest.raises(SeriesTooLargeError, match="grew"):
        c.retrieve_series(story.study_uid, story.ct_series_uid, tmp_path / "w" / "out", pseudonymiser=pseudonymiser,
                          plan=plan)
    assert list((tmp_path / "w").iterdir()) == []


def test_a_series_of_only_reports_is_empty(client, story):
    with pytest.raises(EmptySeriesError, match="no image to open .skipped 1 structured report"):
        client.plan_series(story.study_uid, story.sr_series_uid)


def test_limits_are_checked_before_retrieval(story, tmp_path, pseudonymiser):
    (tmp_path / "w").mkdir()
    dest = tmp_path / "w" / "out"
    with PacsClient(config(story, max_instances=5)) as c, pytest.raises(SeriesTooLargeError, match="13 instances"):
        c.retrieve_series(story.study_uid, story.ct_series_uid, dest, pseudonymiser=pseudonymiser)
    with PacsClient(config(story, max_series_bytes=100_000)) as c, pytest.raises(SeriesTooLargeError, match="MiB"):
        c.retrieve_series(story.study_uid, story.ct_series_uid, dest, pseudonymiser=pseudonymiser)
    assert list((tmp_path / "w").iterdir()) == []


def test_unknown_study_and_series(client, story):
    with pytest.raises(PacsNotFoundError):
        client.series("1.2.3.4.5.6.7")
    with pytest.raises(PacsNotFoundError):
        client.plan_series(story.study_uid, "1.2.3.4.5.6.7")


# --- WADO-RS -------------------------------------------------------------------------------------------
def test_retrieve_writes_de_identified_files_and_records_the_originals(client, story, settings, tmp_path,
                                                                         pseudonymiser):
    import pydicom

    from tools.imaging import load

    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    got = client.retrieve_series(story.study_uid, story.ct_series_uid, tmp_path / "ct", pseudonymiser=pseudonymiser,
                                 reid=reid)
    files = sorted((tmp_path / "ct").iterdir())
    assert got.count == 12 == len(files) and got.notes == ("skipped 1 structured report (not an image)",)
    assert got.skipped == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "data"]  # no temporary folder left
    blob = b"".join(p.read_bytes() for p in files)
    for value in (HILDA.name.split("^")[0], HILDA.patient_id, HILDA.accession, story.study_uid, *story.ct_sops):
        assert value.encode() not in blob
    ds = pydicom.dcmread(files[0])
    assert ds.PatientIdentityRemoved == "YES" and ds.StudyInstanceUID == got.study_uid
    assert oct((settings.pacs_dir / "reid.sqlite").stat().st_mode & 0o777) == "0o600"
    study = load(tmp_path / "ct", imaging_config(settings))
    assert study.shape == (12, 128, 128)
    original = reid.resolve(study.study_uid, study.series_uid, study.sop_instance_uids)  # two passes
    assert original.study_uid == story.study_uid and set(original.sop_instance_uids) == set(story.ct_sops)
    assert original.patient.patient_id == HILDA.patient_id and original.patient.accession_number == HILDA.accession


def test_retrieve_of_original_files_for_a_load_like_an_upload(client, story, settings, tmp_path, pseudonymiser):
    from tools.imaging import load

    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    seen = []
    got = client.retrieve_series(story.study_uid, story.lung_series_uid, tmp_path / "lung", pseudonymiser=pseudonymiser,
                                 reid=reid, deidentify=False, verify=lambda p: seen.append(load(p, imaging_config(settings))))
    assert got.count == 4 and not got.deidentified and seen[0].shape == (4, 128, 128)
    study = seen[0]
    assert study.study_uid == got.study_uid  # one pass, as an upload of the same files
    assert reid.resolve(study.study_uid, study.series_uid, study.sop_instance_uids).study_uid == story.study_uid


def test_a_destination_that_is_not_empty_is_refused(client, story, tmp_path, pseudonymiser):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        client.retrieve_series(story.study_uid, story.lung_series_uid, tmp_path / "busy", pseudonymiser=pseudonymiser)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


def test_a_corrupt_instance_fails_the_whole_retrieve_and_keeps_nothing(story, settings, tmp_path, pseudonymiser):
    """The PACS holds one instance whose pixel data is shorter than its header says; then, after the plan,
    one instance's file in the PACS's storage is damaged (truncated, then not DICOM at all)."""
    import pydicom

    other = OTHER
    out = tmp_path / "retrieved"
    out.mkdir()
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")

    def fails(client: PacsClient, study_uid: str, series_uid: str, plan=None) -> None:
        with pytest.raises(PartialRetrieveError, match="nothing was kept"):
            client.retrieve_series(study_uid, series_uid, out / "series", pseudonymiser=pseudonymiser, reid=reid,
                                   plan=plan)
        assert list(out.iterdir()) == [] and not reid.path.exists()

    # 1. stored short: the PACS parses it, serves it, and our check finds the pixel data short
    study_short = pydicom.uid.generate_uid(entropy_srcs=["h15-short"])
    files = ct_series(other, 3, study_uid=study_short, seed="h15-short")
    damaged = pydicom.dcmread(io.BytesIO(files[1]))
    damaged.PixelData = damaged.PixelData[:10000]
    buf = io.BytesIO()
    damaged.save_as(buf, enforce_file_format=True)
    story.server.upload([files[0], buf.getvalue(), files[2]])
    with PacsClient(config(story)) as c:
        fails(c, study_short, str(damaged.SeriesInstanceUID))

    # 2. damaged in the PACS's storage after the plan was made
    study_uid = pydicom.uid.generate_uid(entropy_srcs=["h15-corrupt"])
    files = ct_series(other, 3, study_uid=study_uid, seed="h15-corrupt")
    ids = story.server.upload(files)
    series_uid = str(pydicom.dcmread(io.BytesIO(files[0])).SeriesInstanceUID)
    stored = story.server.instance_file(ids[1])
    intact = stored.read_bytes()
    try:
        for broken in (intact[: len(intact) - 5000], b"not a dicom file" * 64):
            with PacsClient(config(story)) as c:
                plan = c.plan_series(study_uid, series_uid)
                stored.write_bytes(broken)
                fails(c, study_uid, series_uid, plan)
            stored.write_bytes(intact)
    finally:
        stored.write_bytes(intact)
    with PacsClient(config(story)) as c:
        assert c.retrieve_series(study_uid, series_uid, out / "series", pseudonymiser=pseudonymiser).count == 3


# --- faults: credentials, down, slow ----------------------------------------------------------------------
def test_wrong_credentials_are_a_typed_error_without_the_password(story):
    with PacsClient(config(story, password="wrong-password-123")) as c, pytest.raises(PacsAuthError) as err:
        c.find(accession=HILDA.accession)
    assert "401" in str(err.value) and "wrong-password-123" not in str(err.value)
    assert HILDA.accession not in str(err.value)
    with PacsClient(PacsConfig(story.server.dicomweb_url)) as c, pytest.raises(PacsAuthError):
        c.series(story.study_uid)


def test_a_pacs_that_is_down(story):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PacsClient(PacsConfig(f"http://127.0.0.1:{port}/dicom-web", timeout_s=2)) as c, \
            pytest.raises(PacsUnavailableError, match="cannot reach the PACS at 127.0.0.1") as err:
        c.find(patient_id=HILDA.patient_id)
    assert not isinstance(err.value, PacsTimeoutError) and HILDA.patient_id not in str(err.value)


@contextmanager
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers: a PACS that hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        for conn in held:
            conn.close()
        srv.close()


def test_a_pacs_that_hangs_times_out(tmp_path, pseudonymiser):
    with silent_server() as port, PacsClient(PacsConfig(f"http://127.0.0.1:{port}/dicom-web", timeout_s=0.5)) as c:
        with pytest.raises(PacsTimeoutError, match="did not answer within 0.5 s"):
            c.find(accession=HILDA.accession)
        with pytest.raises(PacsTimeoutError):
            c.retrieve_series("1.2.3", "1.2.4", tmp_path / "out", pseudonymiser=pseudonymiser)
    assert not (tmp_path / "out").exists()


@contextmanager
def answering(status: int, body: bytes = b"", content_type: str = "text/plain") -> Iterator[int]:
    """An HTTP server that answers every request with ``status`` and ``body`` (a PACS behind a proxy that is
    down, or a URL that is not a DICOMweb root)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("status, error, words", [(503, PacsUnavailableError, "HTTP 503"),
                                                  (504, PacsTimeoutError, "HTTP 504"),
                                                  (500, PacsUnavailableError, "HTTP 500"),
                                                  (403, PacsAuthError, "HTTP 403")])
def test_server_errors_are_typed(status, error, words):
    with answering(status) as port, PacsClient(PacsConfig(f"http://127.0.0.1:{port}/dicom-web", timeout_s=5)) as c, \
            pytest.raises(error, match=words):
        c.find(accession=HILDA.accession)


def test_a_url_that_is_not_dicomweb(tmp_path, pseudonymiser):
    from tools.errors import PacsError

    with answering(200, b"<html>login page</html>", "application/dicom+json") as port, \
            PacsClient(PacsConfig(f"http://127.0.0.1:{port}/", timeout_s=5)) as c:
        with pytest.raises(PacsError, match="not DICOMweb"):
            c.find(accession=HILDA.accession)
        with pytest.raises(PacsError, match="not DICOMweb"):
            c.series("1.2.3")


# --- STOW-RS ------------------------------------------------------------------------------------------
def _sr(study_uid: str, seed: str):
    import pydicom

    return pydicom.dcmread(io.BytesIO(text_sr(HILDA, study_uid, pydicom.uid.generate_uid(entropy_srcs=[seed]),
                                              seed=seed)))


def test_store_is_confirmed_by_reading_it_back(client, story):
    sr = _sr(story.study_uid, "h15-store-ok")
    result = client.store([sr], story.study_uid)
    assert result.stored == (str(sr.SOPInstanceUID),)
    assert any(i["MainDicomTags"]["SOPInstanceUID"] == sr.SOPInstanceUID
               for i in story.server.find_instances(story.study_uid))


def test_store_rejected_by_the_pacs(client, story):
    """Posted under another study: Orthanc answers 409 with a failed-SOP item."""
    with pytest.raises(StowRejectedError, match="HTTP 409"):
        client.store([_sr(story.study_uid, "h15-store-409")], "1.2.3.4.5")


def test_a_pacs_that_acknowledges_but_drops_reports(tmp_path_factory):
    """An Orthanc whose filter discards SRs still answers 200 with the SOP referenced: the read-back finds it
    missing."""
    if missing_reason():
        pytest.skip(missing_reason())
    lua = "function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.Modality ~= 'SR'\nend\n"
    server = OrthancServer(tmp_path_factory.mktemp("orthanc-drops-sr"), lua=lua).start()
    try:
        auth = PacsAuth("basic", Secret(server.password), username=server.user)
        sr = _sr("1.2.826.0.1.3680043.8.498.1", "h15-dropped")
        with PacsClient(PacsConfig(server.dicomweb_url, auth=auth)) as c, \
                pytest.raises(StowRejectedError, match="does not hold it"):
            c.store([sr], str(sr.StudyInstanceUID))
    finally:
        server.stop()


# --- configuration and privacy --------------------------------------------------------------------------
def test_config_hides_and_checks_the_credential():
    auth = PacsAuth("basic", Secret("s3cret-pw"), username="radiology")
    cfg = PacsConfig("https://pacs.example.org/dicom-web", auth=auth)
    assert "s3cret-pw" not in repr(cfg) and "s3cret-pw" not in str(auth.secret) and cfg.host == "pacs.example.org"
    for bad in ("ftp://pacs/dicom-web", "https://user:pw@pacs/dicom-web", "pacs:8042"):
        with pytest.raises(SettingsError):
            PacsConfig(bad)
    with pytest.raises(SettingsError):
        PacsAuth("basic", Secret("pw"))
    with pytest.raises(SettingsError):
        PacsAuth("digest", Secret("pw"), username="u")


def test_http_logs_never_carry_a_searched_identifier(client, story, caplog, tmp_path, pseudonymiser):
    caplog.set_level(logging.DEBUG)
    client.find(accession=HILDA.accession, patient_id=HILDA.patient_id)
    client.retrieve_series(story.study_uid, story.lung_series_uid, tmp_path / "x", pseudonymiser=pseudonymiser)
    text = caplog.text
    assert "PACS search: 1 study" in text and "PACS retrieve: 4 image(s)" in text
    for value in (HILDA.accession, HILDA.patient_id, story.study_uid, story.lung_series_uid, story.server.password):
        assert value not in text


def test_bearer_token_goes_in_the_authorization_header_only(story):
    """Orthanc's basic auth refuses a bearer token: the request carries it, the error does not."""
    with PacsClient(PacsConfig(story.server.dicomweb_url, auth=PacsAuth("bearer", Secret("tok-123-secret")))) as c, \
            pytest.raises(PacsAuthError) as err:
        c.find(accession=HILDA.accession)
    assert "tok-123-secret" not in str(err.value)


def test_sop_kinds():
    from tools.pacs_sop import instance_kind

    assert instance_kind("1.2.840.10008.5.1.4.1.1.2", has_rows=True) == "image"
    assert instance_kind("1.2.840.10008.5.1.4.1.1.88.33", has_rows=False) == "structured report"
    assert instance_kind("1.2.840.10008.5.1.4.1.1.88.59", has_rows=False) == "key object selection"
    assert instance_kind("1.2.840.10008.5.1.4.1.1.11.1", has_rows=False) == "presentation state"
    assert instance_kind("1.2.840.10008.5.1.4.1.1.481.1", has_rows=True) == "image"
    assert instance_kind("1.2.3.4.5", has_rows=False) == "object without pixel data"


def test_reid_map_refuses_what_it_does_not_know(settings):
    from tools.errors import ReidentificationError

    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    with pytest.raises(ReidentificationError, match="no study has been opened"):
        reid.resolve("2.25.1", None, ["2.25.2"])

