from __future__ import annotations

import json
import os

import pytest

from agent.signoff import EvidenceRef, Report, ReportStore, SignoffError, StudyRef
from tools.errors import InputError


def make_report(case_id="case-1", impression="No pneumothorax [E1].") -> Report:
    return Report(
        case_id=case_id, patient_key="PK-abc123",
        sections=(("Findings", "Lungs clear [E1]."), ("Impression", impression),
                  ("Recommendations", "Follow guideline [E2].")),
        evidence=(EvidenceRef(id="E1", kind="classifier", title="pneumothorax", model="ptx-densenet",
                              model_version="1.0", probability=0.08, caution="Not for triage."),
                  EvidenceRef(id="E2", kind="knowledge", title="BTS", source="BTS pleural guideline",
                              section="Management", quote="Observe small pneumothoraces.")),
        models=({"name": "ptx-densenet", "version": "1.0", "intended_use": "Adult frontal CXR."},),
        study=StudyRef(study_uid="2.25.1", series_uid="2.25.2", sop_instance_uids=("2.25.3",),
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.1", modality="CR"),
    )


@pytest.fixture
def store(settings):
    return ReportStore(settings.data_dir / "reports")


def test_round_trip_and_hash(store):
    r = make_report()
    assert Report.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.content_hash() == make_report().content_hash()
    assert r.content_hash() != make_report(impression="Different.").content_hash()


def test_draft_replaced_until_signed(store):
    v1 = store.save_draft(make_report(), user="dr_a")
    assert v1.version == 1 and v1.status == "draft" and v1.signed_by is None
    v1b = store.save_draft(make_report(impression="Edited [E1]."), user="dr_a")
    assert v1b.version == 1 and store.versions("case-1") == [1]
    signed = store.sign("case-1", 1, user="dr_a")
    assert signed.is_signed and signed.signed_by == "dr_a" and signed.signed_at
    assert signed.content_hash == make_report(impression="Edited [E1].").content_hash()
    assert store.load("case-1").is_signed


def test_signed_is_immutable(store):
    store.save_draft(make_report())
    store.sign("case-1", 1, user="dr_a")
    with pytest.raises(SignoffError, match="already signed"):
        store.sign("case-1", 1, user="dr_b")
    v2 = store.edit("case-1", 1, make_report(impression="Amended [E1]."), user="dr_b")
    assert v2.version == 2 and v2.supersedes == 1 and not v2.is_signed
    old = store.load("case-1", 1)
    assert old.is_signed and "Amended" not in json.dumps(old.to_dict())
    # a new draft after signing also makes a new version, never touches v1
    v3 = store.save_draft(make_report(impression="Again."))
    assert v3.version == 2
    store.sign("case-1", 2, user="dr_b")
    assert store.save_draft(make_report()).version == 3


def test_tampered_signed_file_detected(store, settings):
    store.save_draft(make_report())
    store.sign("case-1", 1, user="dr_a")
    path = settings.data_dir / "reports" / "case-1" / "v0001.json"
    data = json.loads(path.read_text())
    data["report"]["sections"][1][1] = "Tension pneumothorax."
    os.chmod(path, 0o600)
    path.write_text(json.dumps(data))
    with pytest.raises(SignoffError, match="altered"):
        store.load("case-1", 1)


def test_bad_inputs(store):
    with pytest.raises(InputError):
        store.load("case-1")
    with pytest.raises(InputError):
        store.save_draft(make_report(case_id="../evil"))
    store.save_draft(make_report())
    with pytest.raises(InputError):
        store.sign("case-1", 1, user="")
    with pytest.raises(InputError):
        store.load("case-1", 7)
