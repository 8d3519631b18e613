"""The UI's PACS and measurement actions without a browser: the controller over the REAL Consultation (real tools
and calculators, a scripted chat model) and a REAL Orthanc (tests/orthanc.py): search by accession, choose a
series, open it, measure two points, ask, draft, sign, send; and the bad inputs (PACS down, wrong credentials,
unknown study, a series over the limits or without images, measuring without pixel spacing, sending a draft or
a study that did not come from the PACS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.consultation import Consultation
from agent.settings import Settings
from agent.ui import UIController, render
from agent.ui.session import SessionState
from tests.agent.fakes import ScriptedBackend, frame, real_tools, text
from tests.orthanc import (
    HILDA,
    PacsStory,
    free_port,
    story_fixture,
)
from tools.imaging import ImageStudy, SafeMetadata

QUESTION = "Incidental nodule in a never smoker, 55 years. What follow-up?"
SIGNER = "dr_mueller"
# on the 128-pixel CT shown at 512 pixels (4x): 12 and 9 source pixels of 0.661468 mm
LONG = ((40, 100), (88, 100))
SHORT = ((200, 200), (200, 236))


def make_study(modality: str = "CT", shape: tuple[int, ...] = (5, 64, 64),
               spacing: tuple[float | None, ...] | None = None) -> ImageStudy:
    pixels = np.random.default_rng(0).uniform(-1000, 1000, size=shape).astype(np.float32)
    return ImageStudy(pixels=pixels, display=(pixels + 1000) / 2000,
                      spacing=spacing if spacing is not None else (1.0,) * len(shape), source_format="dicom",
                      metadata=SafeMetadata(modality=modality, frames=shape[0]), patient_key="PK-test",
                      study_uid="2.25.11", series_uid="2.25.12", sop_instance_uids=("2.25.13",),
                      sop_class_uid="1.2.840.10008.5.1.4.1.1.2")


def controller(settings: Settings, steps: list | None = None) -> tuple[UIController, ScriptedBackend]:
    backend = ScriptedBackend(list(steps or []))
    return UIController(Consultation(settings, backend=backend, tools=real_tools(settings)), settings), backend


# --- rendering -------------------------------------------------------------------------------------
def test_clicks_map_back_to_the_slice_grid_and_lines_are_drawn():
    st = make_study(shape=(3, 64, 32))
    assert render.view_size(64, 32, min_side=render.VIEW_MIN_SIDE) == (256, 512)
    assert render.view_size(2000, 1000) == (384, 768)  # large images are still reduced
    assert render.to_pixel(st, (0, 0), min_side=512) == (0.0, 0.0)
    assert render.to_pixel(st, (255, 511), min_side=512) == (31.0, 63.0)
    assert render.to_pixel(st, (132, 260), min_side=512) == (16.06, 32.06)
    big = make_study("CR", shape=(1536, 1536))
    assert render.to_pixel(big, (384, 10)) == (768.5, 20.5)  # shown at 768: each shown pixel is two
    from tools.measure import measure

    m = measure(st, 1, (2, 2), (20, 40))
    plain = render.render_view(st, "Default", 1, min_side=512)
    drawn = render.draw_measurements(plain, st, [m], 1, pending=(30, 5))
    assert drawn.shape == plain.shape == (512, 256, 3) and not np.array_equal(drawn, plain)
    assert np.array_equal(render.draw_measurements(plain, st, [m], 2), plain)  # another slice: nothing drawn
    assert "M1: long axis" in render.measurements_html([m]) and "next question" in render.measurements_html([m])
    assert "with the assistant" in render.measurements_html([m], [m])


def test_measuring_in_the_viewer(settings):
    """Two clicks measure a length in mm; the list, the drawing, remove and clear-all follow; a study without
    pixel spacing or a projection radiograph says why its length is not a true size."""
    ctl, _ = controller(settings)
    sess = SessionState(settings.cache_dir / "ui-sessions")
    assert ctl.mark_point(sess, (10, 10)).message.startswith("⚠ Open or upload a study first")
    sess.case.studies.append(make_study())  # 64 x 64, 1 mm pixels, shown at 512 (8x)
    first = ctl.mark_point(sess, (80, 160), slice_index=2, label="long axis", nodule_type="part-solid")
    assert first.message.startswith("First end") and not sess.case.measurements
    done = ctl.mark_point(sess, (160, 160), slice_index=2, label="long axis", nodule_type="part-solid")
    assert done.message.startswith("✓ M1: long axis 10.0 mm, part-solid (slice 2)")
    m = sess.case.measurements[0]
    assert (m.length_mm, m.nodule_type, m.slice_index, m.series_uid) == (10.0, "part_solid", 2, "2.25.12")
    assert done.viewer.measurement_choices == (("M1: long axis 10.0 mm, part-solid (slice 2)", "1"),)
    assert "M1: long axis 10.0 mm" in done.viewer.measurements_html
    # a first click on another slice starts over there; a bad label is refused without keeping anything
    ctl.mark_point(sess, (8, 8), slice_index=3)
    assert ctl.mark_point(sess, (8, 8), slice_index=1).message.startswith("First end")
    bad = ctl.mark_point(sess, (40, 8), slice_index=1, label="diameter")
    assert bad.message.startswith("⚠ Not measured: the label") and len(sess.case.measurements) == 1
    ctl.mark_point(sess, (8, 8), slice_index=1)
    same = ctl.mark_point(sess, (8, 8), slice_index=1)
    assert "the two points are the same" in same.message
    ctl.mark_point(sess, (8, 8), slice_index=1, label="short axis")
    ctl.mark_point(sess, (8, 48), slice_index=1, label="short axis")
    assert [x.label for x in sess.case.measurements] == ["long axis", "short axis"]
    assert ctl.remove_measurement(sess, None).message.startswith("⚠ Choose a measurement")
    assert ctl.remove_measurement(sess, "7").message.startswith("⚠ Choose a measurement")
    gone = ctl.remove_measurement(sess, "1")
    assert gone.message.startswith("Removed M1 (long axis 10.0 mm)") and len(gone.viewer.measurement_choices) == 1
    assert ctl.remove_measurement(sess, "all").message == "Removed 1 measurement(s)." and not sess.case.measurements

    sess.case.studies.append(make_study(shape=(5, 64, 64), spacing=(None, None, None)))
    ctl.mark_point(sess, (10, 10), slice_index=2)
    nospacing = ctl.mark_point(sess, (100, 10), slice_index=2)
    assert nospacing.message == ("⚠ Not measured: the study has no pixel spacing, so a length in mm cannot be "
                                 "measured") and not sess.case.measurements
    sess.case.studies.append(make_study("CR", shape=(1024, 1024), spacing=(0.2, 0.2)))
    ctl.mark_point(sess, (100, 100))
    film = ctl.mark_point(sess, (150, 100))
    assert film.message.startswith("✓ M1: long axis 13.3 mm") and "CR is a projection image" in film.message
    assert "CR is a projection image" in film.viewer.measurements_html


# --- the PACS --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PacsStory]:
    yield from story_fixture(tmp_path_factory, "orthanc-ui")


def pacs_settings(settings: Settings, story: PacsStory, tmp_path: Path, **overrides) -> Settings:
    auth = story.credential_file(tmp_path, overrides.pop("password", None))
    return settings.model_copy(update={"pacs_url": story.server.dicomweb_url, "pacs_auth": "basic",
                                       "pacs_auth_file": auth, **overrides})


def identifiers(story: PacsStory) -> list[str]:
    return [HILDA.accession, HILDA.patient_id, "Quellmalz", "Hildegard", HILDA.birth_date, story.study_uid,
            story.ct_series_uid, *story.ct_sops]


def files_holding(root: Path, values: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {v}" for v in values if v.encode() in data]
    return found


def sr_instances(story: PacsStory) -> list[dict]:
    return [i for i in story.server.find_instances(story.study_uid)
            if "radconsult" in story.server.rest("GET", f"/instances/{i['ID']}/tags?simplify").get(
                "SeriesDescription", "")]


def test_the_ct_nodule_story_through_the_controller(settings, story, tmp_path):
    import io

    import pydicom

    from agent.audit import AuditLog, text_hash

    s = pacs_settings(settings, story, tmp_path)
    ctl, backend = controller(s, [frame(intent="followup"), text("A solid nodule [E1]."),
                                  text("Follow-up per the calculator [E3].")])
    assert ctl.pacs_enabled
    sess = ctl.session(None, "browser-pacs")
    found = ctl.pacs_search(sess, SIGNER, accession=f" {HILDA.accession} ")
    assert found.message == "1 study(ies) found: choose one." and [v for _, v in found.studies] == [story.study_uid]
    label = found.studies[0][0]
    assert label.startswith("2004-01-19 · CT/SR · ") and f"acc {HILDA.accession}" in label
    assert label.endswith("Quellmalz, Hildegard Maria (F, 1955)") and HILDA.patient_id not in label
    chosen = ctl.pacs_choose_study(sess, story.study_uid)
    assert chosen.message == "2 image series: choose one to open." and chosen.series_value is None
    assert {v for _, v in chosen.series} == {story.ct_series_uid, story.lung_series_uid}  # not the SR-only one
    assert ctl.pacs_open(sess, SIGNER, story.study_uid, None).message.startswith("⚠ Choose one of the study's")
    assert not sess.case.studies
    opened = ctl.pacs_open(sess, SIGNER, story.study_uid, story.ct_series_uid)
    assert opened.message.startswith("✓ Opened 12 image(s) from the PACS: CT 12 x 128 x 128"), opened.message
    assert "skipped 1 structured report" in opened.message
    study = sess.case.study
    assert study is not None and study.study_uid != story.study_uid and study.patient_key
    assert not ctl.can_send(sess.case)

    for (p1, p2), label_ in ((LONG, "long axis"), (SHORT, "short axis")):
        ctl.mark_point(sess, p1, slice_index=5, label=label_, nodule_type="solid")
        assert ctl.mark_point(sess, p2, slice_index=5, label=label_, nodule_type="solid").message.startswith("✓")
    assert [m.length_mm for m in sess.case.measurements] == [7.94, 5.95]
    final = list(ctl.ask(sess, SIGNER, QUESTION))[-1]
    answer = final.chat[-1]["content"]
    assert "Measured on study S1: long axis 7.94 mm, short axis 5.95 mm [E1, E2]." in answer, answer
    assert "Fleischner 2017, single solid nodule 6-8 mm, low risk" in answer and "(#ev-E3)" in answer, answer
    assert {e.kind for e in sess.case.evidence.values()} >= {"measurement", "calculator"}
    assert sess.case.unsent_measurements == []
    assert "with the assistant" in final.viewer.measurements_html

    draft = ctl.draft(sess, SIGNER)
    assert draft.markdown and "long axis 7.9 mm, solid" in draft.markdown
    unsigned = ctl.send_to_pacs(sess, SIGNER)
    assert unsigned.startswith("⚠ Not sent:") and "is a draft" in unsigned and sr_instances(story) == []
    assert "SIGNED" in ctl.sign(sess, SIGNER).status_html
    assert ctl.can_send(sess.case)
    sent = ctl.send_to_pacs(sess, SIGNER)
    assert 'data-state="sent"' in sent and "filed under the original study" in sent, sent
    again = ctl.send_to_pacs(sess, SIGNER)
    assert 'data-state="already"' in again and "nothing was sent again" in again
    held = sr_instances(story)
    assert len(held) == 1
    sr = pydicom.dcmread(io.BytesIO(story.server.rest("GET", f"/instances/{held[0]['ID']}/file")))
    assert sr.StudyInstanceUID == story.study_uid and sr.AccessionNumber == HILDA.accession
    texts = " ".join(str(item.value) for item in sr.iterall() if item.keyword == "TextValue")
    assert "long axis 7.9 mm, solid" in texts and "SIGNED by dr_mueller" in texts

    # no identifier typed or retrieved in the prompts, the audit log, the case database or anything stored
    prompts = json.dumps([r["messages"] for r in backend.requests], default=str)
    assert [v for v in identifiers(story) if v in prompts] == []
    assert files_holding(s.data_dir, identifiers(story), skip=("reid.sqlite",)) == []
    records = list(AuditLog.from_settings(s).records())
    find = next(r["details"] for r in records if r["action"] == "pacs_find")
    assert find["accession_sha256"] == text_hash(HILDA.accession) and find["results"] == 1
    assert next(r for r in records if r["action"] == "pacs_open")["case_id"] == sess.case.case_id
    assert [r["details"]["already_sent"] for r in records if r["action"] == "pacs_send"] == [None, False, True]
    assert AuditLog.from_settings(s).verify().ok


def test_pacs_faults_are_readable_and_attach_nothing(settings, story, tmp_path):
    """PACS down, wrong credentials, an unknown study, a series without images, a series over the limits: each
    a readable message, the case unchanged, and the typed identifier in no message or record."""
    from agent.audit import AuditLog

    down = settings.model_copy(update={"pacs_url": f"http://127.0.0.1:{free_port()}/dicom-web", "pacs_auth": "none"})
    ctl, _ = controller(down)
    sess = ctl.session(None, "browser-down")
    msg = ctl.pacs_search(sess, None, accession=HILDA.accession).message
    assert msg.startswith("⚠ Search failed: cannot reach the PACS at 127.0.0.1") and HILDA.accession not in msg

    (tmp_path / "bad").mkdir()
    wrong = pacs_settings(settings, story, tmp_path / "bad", password="wrong-pw-5521")
    ctl, _ = controller(wrong)
    msg = ctl.pacs_search(sess, None, patient_id=HILDA.patient_id).message
    assert "refused the credentials (HTTP 401)" in msg and "wrong-pw-5521" not in msg and HILDA.patient_id not in msg
    assert ctl.pacs_search(sess, None).message.startswith("⚠ Search failed: search by accession number")

    small = pacs_settings(settings, story, tmp_path, pacs_max_instances=4)
    ctl, _ = controller(small)
    sess = ctl.session(None, "browser-faults")
    assert ctl.pacs_search(sess, None, date="20040119", modality="CT").studies
    assert ctl.pacs_choose_study(sess, "1.2.3.4.5").message == "⚠ Choose a study from the search results."
    sess.pacs_studies["1.2.3.4.5"] = sess.pacs_studies[story.study_uid]  # a study gone from the PACS since
    gone = ctl.pacs_choose_study(sess, "1.2.3.4.5")
    assert gone.message.startswith("⚠ The study's series could not be listed: the PACS has no study"), gone.message
    ctl.pacs_choose_study(sess, story.study_uid)
    over = ctl.pacs_open(sess, None, story.study_uid, story.ct_series_uid)
    assert over.message.startswith("⚠ Not opened:") and "13 instances, over the limit of 4" in over.message, over.message
    from tools.pacs import SeriesSummary

    sess.pacs_series[story.sr_series_uid] = SeriesSummary(story.sr_series_uid, "SR")
    empty = ctl.pacs_open(sess, None, story.study_uid, story.sr_series_uid)
    assert empty.message.startswith("⚠ Not opened:") and "no image" in empty.message, empty.message
    assert sess.case.studies == [] and not list((small.cache_dir / "pacs").glob("*"))
    opened = ctl.pacs_open(sess, None, story.study_uid, story.lung_series_uid)  # 4 images: within the limit
    assert opened.message.startswith("✓ Opened 4 image(s)") and len(sess.case.studies) == 1
    assert [r["action"] for r in AuditLog.from_settings(small).records()].count("pacs_open") == 1


def test_send_needs_a_signed_summary_of_a_study_from_the_pacs(settings, story, tmp_path):
    from tests.conftest import pydicom_file

    s = pacs_settings(settings, story, tmp_path)
    ctl, _ = controller(s, [frame(intent="followup"), text("Noted [E1]."), text("Noted [E1].")])
    sess = ctl.session(None, "browser-upload")
    assert ctl.send_to_pacs(sess, SIGNER).startswith("⚠ draft and sign a summary first")
    copy = tmp_path / "upload.dcm"
    copy.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    assert ctl.upload(sess, SIGNER, [copy]).startswith("✓")
    list(ctl.ask(sess, SIGNER, QUESTION))
    ctl.draft(sess, SIGNER)
    ctl.sign(sess, SIGNER)
    assert not ctl.can_send(sess.case)
    refused = ctl.send_to_pacs(sess, SIGNER)
    assert refused.startswith("⚠ Not sent: the study of this summary was not opened from the PACS"), refused
    nopacs, _ = controller(settings)
    assert not nopacs.pacs_enabled and not nopacs.can_send(sess.case)
    assert nopacs.pacs_search(SessionState(settings.cache_dir / "s"), None, accession="X1").message == \
        "⚠ Search failed: no PACS is configured (settings.pacs_url)"
