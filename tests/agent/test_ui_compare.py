"""Comparison with a prior in the UI, without a browser: the controller over the REAL Consultation (real tools,
calculators and comparison; a scripted chat model for the frame draft) and a REAL Orthanc holding one patient's
current and prior chest CT and an abdominal CT. Search by patient ID (the prior marked, the abdomen not), open
both chest CTs into one case, switch the viewer between them (slices linked by position), measure the labelled
nodule on each, ask, and draft: the answer and the summary compare them. Bad input: no lesion name for "not
seen", a study index that does not exist."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.ui import compare
from tests.agent.fakes import frame
from tests.agent.test_ui_pacs import SIGNER, controller
from tests.orthanc import PriorStory, prior_story_fixture

# the 128-pixel slices are shown at 512 (4x): 48 shown pixels are 12 source pixels of 0.661468 mm = 7.94 mm
NOW = (((40, 100), (88, 100)), ((200, 200), (200, 240)))      # 7.94 and 6.61 mm
THEN = (((40, 100), (72, 100)), ((200, 200), (200, 228)))     # 5.29 and 4.63 mm


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[PriorStory]:
    yield from prior_story_fixture(tmp_path_factory, "orthanc-ui-priors")


def pacs_settings(settings, story, tmp_path):
    path = tmp_path / "pacs-credential"
    path.write_text(f"{story.server.user}:{story.server.password}\n")
    path.chmod(0o600)
    return settings.model_copy(update={"pacs_url": story.server.dicomweb_url, "pacs_auth": "basic",
                                       "pacs_auth_file": path})


def measure_both_axes(ctl, sess, lines, lesion: str, slice_index: int) -> list[str]:
    out = []
    for (p1, p2), axis in zip(lines, ("long axis", "short axis"), strict=True):
        ctl.mark_point(sess, p1, slice_index=slice_index, label=axis, nodule_type="solid", lesion=lesion)
        out.append(ctl.mark_point(sess, p2, slice_index=slice_index, label=axis, nodule_type="solid",
                                  lesion=lesion).message)
    return out


def test_measure_the_same_nodule_on_the_prior_opened_from_the_pacs(settings, story, tmp_path):
    s = pacs_settings(settings, story, tmp_path)
    ctl, _ = controller(s, [frame(intent="followup")])
    sess = ctl.session(None, "browser-priors")
    found = ctl.pacs_search(sess, SIGNER, accession=story.patient.accession)
    assert [uid for _, uid in found.studies] and "prior" not in found.message  # by accession: no roles
    ctl.pacs_choose_study(sess, story.current[0])
    assert ctl.pacs_open(sess, SIGNER, story.current[0], story.current[1]).message.startswith("✓ Opened 6 image(s)")

    # by patient ID: the study opened in this case is the current one, the earlier chest CT its prior
    found = ctl.pacs_search(sess, SIGNER, patient_id=story.patient.patient_id)
    labels = dict((uid, label) for label, uid in found.studies)
    assert labels[story.current[0]].endswith("· current")
    assert labels[story.prior[0]].endswith("· prior: CHEST, 358 days earlier")
    assert "prior" not in labels[story.abdomen[0]].rsplit("·", 1)[-1]
    assert "1 prior(s) of the current study are marked" in found.message
    ctl.pacs_choose_study(sess, story.prior[0])
    assert ctl.pacs_open(sess, SIGNER, story.prior[0], story.prior[1]).message.startswith("✓ Opened 6 image(s)")

    case = sess.case
    current, prior = case.studies
    view = ctl.viewer(case)
    assert [label for label, _ in view.study_choices] == ["S1 · CT CHEST · 2024-05-02 · current",
                                                           "S2 · CT CHEST · 2023-05-10 · prior"]
    assert view.shown == "1"  # the study opened last is shown

    # measure the prior, then switch to the current study: the slice at the same position is shown
    assert all(m.startswith("✓") for m in measure_both_axes(ctl, sess, THEN, "RUL nodule 1", 3))
    assert ctl.viewer(case).measurements_html.count("(S2, slice 3)") == 2
    switched = ctl.show_study(sess, "0", slice_index=3)
    assert switched.viewer.shown == "0" and switched.viewer.slice_index == 3
    assert "linked by Image Position" in switched.message
    assert current.slice_positions[3] == prior.slice_positions[3]
    assert all(m.startswith("✓") for m in measure_both_axes(ctl, sess, NOW, "RUL nodule 1", 3))
    assert [m.study_key for m in case.measurements] == [prior.study_key] * 2 + [current.study_key] * 2

    final = list(ctl.ask(sess, SIGNER, "Incidental nodule in a never smoker, 61. What follow-up?"))[-1]
    answer = final.chat[-1]["content"]
    assert "Compared: RUL nodule 1: mean diameter 5 mm to 7.3 mm (+2.3 mm, +46%) from S2 2023-05-10 to S1 " \
           "2024-05-02" in answer, answer
    assert "takes the status growing from the comparison of RUL nodule 1 with S2 (2023-05-10)" in answer
    assert {e.kind for e in case.evidence.values()} >= {"measurement", "comparison", "calculator"}

    draft = ctl.draft(sess, SIGNER)
    assert "Prior study S2: CT CHEST, 2023-05-10, 358 days before S1" in draft.markdown
    report = ctl.reports.load(case.case_id, case.report_version).report
    assert report.study.study_uid == current.study_uid  # the report is about the current study
    assert {m.time_point for m in report.measurements} == {"current", "prior"}


def test_not_seen_and_bad_choices(settings, tmp_path):
    from tests.agent.test_comparison import load_ct

    ctl, _ = controller(settings)
    sess = ctl.session(None, "browser-not-seen")
    assert ctl.mark_not_seen(sess, "RUL-1").message.startswith("⚠ Open or upload a study first")
    sess.case.studies += [load_ct(settings, tmp_path, "now", date="20240502"),
                          load_ct(settings, tmp_path, "then", date="20230510")]
    assert ctl.show_study(sess, "7").message == "⚠ Choose one of the case's studies."
    assert ctl.show_study(sess, None).message == "⚠ Choose one of the case's studies."
    assert ctl.mark_not_seen(sess, "  ").message.startswith("⚠ Not recorded: name the lesion")
    assert ctl.mark_not_seen(sess, "<b>").message.startswith("⚠ Not recorded: a lesion label is up to 40")
    done = ctl.mark_not_seen(sess, "LLL-2")
    assert done.message == "✓ M1: LLL-2 not seen (S2): goes with the next question."
    assert compare.linked_slice(sess.case.studies[0], 2, sess.case.studies[1]) == 2
    flat = sess.case.studies[0]
    import dataclasses

    assert compare.linked_slice(dataclasses.replace(flat, slice_positions=()), 2, sess.case.studies[1]) is None
