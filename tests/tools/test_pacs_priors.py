"""Which found studies are priors of the current one (tools/pacs_priors.py), over StudySummary values."""

from __future__ import annotations

from tools.pacs_models import StudySummary
from tools.pacs_priors import study_roles


def study(uid: str, date: str, modalities=("CT",), patient="P1", time="") -> StudySummary:
    return StudySummary(study_uid=uid, study_date=date, study_time=time, modalities=tuple(modalities),
                        patient_id=patient)


def test_priors_are_earlier_same_patient_modality_and_body_part():
    found = [study("now", "20240502", time="120000"), study("prior", "20230510"), study("abdomen", "20220301"),
             study("mr", "20230101", ("MR",)), study("other-patient", "20230510", patient="P2"),
             study("unknown-part", "20210101"), study("same-day-earlier", "20240502", time="080000")]
    parts = {"now": ("CHEST",), "prior": ("CHEST",), "abdomen": ("ABDOMEN",), "mr": ("CHEST",),
             "other-patient": ("CHEST",), "unknown-part": (), "same-day-earlier": ("CHEST",)}
    roles = study_roles(found, parts)
    assert roles["now"].role == "current" and roles["now"].describe() == "current"
    assert (roles["prior"].role, roles["prior"].days_before) == ("prior", 358)
    assert roles["prior"].describe() == "prior: CHEST, 358 days earlier"
    assert roles["abdomen"].role == "other" and roles["abdomen"].describe() == ""
    assert roles["mr"].role == "other" and roles["other-patient"].role == "other"
    unknown = roles["unknown-part"]
    assert unknown.role == "prior" and not unknown.body_part_known
    assert unknown.describe() == "prior: body part not stated, 1217 days earlier"
    assert roles["same-day-earlier"].role == "prior" and roles["same-day-earlier"].days_before == 0


def test_the_named_current_study_and_empty_input():
    found = [study("now", "20240502"), study("prior", "20230510")]
    roles = study_roles(found, {}, current_uid="prior")
    assert roles["prior"].role == "current" and roles["now"].role == "other"  # later than the current: no prior
    assert study_roles(found, {}, current_uid="missing")["now"].role == "current"
    assert study_roles([], {}) == {}
