"""Lesion labels on measurements and "not seen" marks (tools/measure.py), on a real CT series."""

from __future__ import annotations

import pytest

from tools.measure import MeasurementError, lesion_key, lesion_label, mark_absent, measure


@pytest.fixture
def ct(settings, tmp_path):
    from agent.wiring import imaging_config
    from tests.orthanc import HILDA, ct_series
    from tools.imaging import load

    for i, data in enumerate(ct_series(HILDA, 4, seed="measure", study_date="20240502")):
        (tmp_path / f"{i}.dcm").write_bytes(data)
    return load(tmp_path, imaging_config(settings))


def test_lesion_labels_are_tidied_and_compared_loosely():
    assert lesion_label("  RUL   nodule 1 ") == "RUL nodule 1"
    assert lesion_label("") is None and lesion_label(None) is None
    assert lesion_key("RUL-1") == lesion_key("rul 1") == lesion_key("RUL_1") == "rul 1"
    assert lesion_key("RUL nodule 1") != lesion_key("RUL-1")
    for bad in ("x" * 41, "<script>", "RUL;1"):
        with pytest.raises(MeasurementError, match="lesion label"):
            lesion_label(bad)


def test_a_measurement_carries_its_lesion_study_date_and_slice(ct):
    m = measure(ct, 2, (10, 20), (22, 20), lesion="RUL-1", nodule_type="solid")
    assert (m.lesion, m.study_date, m.study_uid, m.present) == ("RUL-1", "20240502", ct.study_uid, True)
    assert m.sop_instance_uid == ct.sop_instance_uids[2] and m.sop_class_uid == ct.sop_class_uid
    assert m.describe().startswith("RUL-1 long axis 7.9 mm, solid (on slice 2")
    assert measure(ct, 2, (10, 20), (22, 20)).lesion is None


def test_not_seen_marks(ct):
    gone = mark_absent(ct, "LLL 2")
    assert (gone.present, gone.lesion, gone.length_mm, gone.study_key) == (False, "LLL 2", 0.0, ct.study_key)
    assert gone.describe() == "LLL 2 not seen on this study"
    with pytest.raises(MeasurementError, match="name the lesion"):
        mark_absent(ct, " ")


def test_slice_positions_follow_the_sorted_slices(ct):
    assert len(ct.slice_positions) == ct.shape[0] == 4
    gaps = {round(b - a, 3) for a, b in zip(ct.slice_positions, ct.slice_positions[1:], strict=False)}
    assert gaps == {2.5}  # the series' 2.5 mm spacing, in slice order
