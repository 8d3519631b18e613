"""tools/pacs_reid.py: the re-identification map (private file, both pseudonym passes, all-or-nothing resolve)."""

from __future__ import annotations

import stat

import pytest

from agent.wiring import deid_policy
from tools.errors import PacsError, ReidentificationError
from tools.pacs_reid import OriginalInstance, OriginalPatient, Pseudonymiser, ReidMap

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.100", "1.2.826.0.1.3680043.8.498.101"
CT = "1.2.840.10008.5.1.4.1.1.2"
PATIENT = OriginalPatient(patient_name="Roe^Jane", patient_id="MRN-4411", patient_birth_date="19610203",
                          patient_sex="F", accession_number="ACC-77", study_date="20240105")


@pytest.fixture
def ps(settings) -> Pseudonymiser:
    return Pseudonymiser(deid_policy(settings))


def instances(n: int = 3) -> list[OriginalInstance]:
    return [OriginalInstance(STUDY, SERIES, f"1.2.826.0.1.3680043.8.498.2{i}", CT) for i in range(n)]


def test_record_and_resolve_under_both_pseudonym_passes(settings, ps):
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    assert reid.record(instances(), PATIENT, ps) == 2 * (1 + 1 + 3)
    assert stat.S_IMODE(reid.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(reid.path.parent.stat().st_mode) == 0o700
    for passes in (1, 2):
        def pseudo(uid: str, n: int = passes) -> str:
            for _ in range(n):
                uid = ps.uid(uid)
            return uid

        found = reid.resolve(pseudo(STUDY), pseudo(SERIES), [pseudo(i.sop_instance_uid) for i in instances()])
        assert found.study_uid == STUDY and found.series_uid == SERIES and found.sop_class_uid == CT
        assert found.sop_instance_uids == tuple(i.sop_instance_uid for i in instances())
        assert found.patient == PATIENT
    assert PATIENT.dicom_attributes()["PatientID"] == "MRN-4411"
    assert reid.counts() == {"studies": 1, "instances": 3}


def test_an_unknown_image_or_study_is_refused(settings, ps):
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    reid.record(instances(2), PATIENT, ps)
    with pytest.raises(ReidentificationError, match="1 of the report's 3 referenced images"):
        reid.resolve(ps.uid(STUDY), ps.uid(SERIES), [ps.uid(i.sop_instance_uid) for i in instances(3)])
    with pytest.raises(ReidentificationError, match="not opened from the PACS"):
        reid.resolve("2.25.12345", None, ["2.25.1"])
    with pytest.raises(ReidentificationError, match="references no images"):
        reid.resolve(ps.uid(STUDY), None, [])


def test_one_series_of_one_study_per_record(settings, ps):
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    mixed = [*instances(1), OriginalInstance("1.2.3.999", SERIES, "1.2.3.1000", CT)]
    with pytest.raises(PacsError, match="several studies"):
        reid.record(mixed, PATIENT, ps)
    assert not reid.path.exists() or reid.counts() == {"studies": 0, "instances": 0}


def test_forget_by_original_or_pseudonym(settings, ps):
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    reid.record(instances(), PATIENT, ps)
    assert reid.forget_study(ps.uid(ps.uid(STUDY))) > 0 and reid.counts()["studies"] == 0
    reid.record(instances(), PATIENT, ps)
    assert reid.forget_study(STUDY) > 0 and reid.counts() == {"studies": 0, "instances": 0}
    assert reid.forget_study(STUDY) == 0


def test_a_map_made_readable_is_closed_again(settings, ps):
    reid = ReidMap(settings.pacs_dir / "reid.sqlite")
    reid.record(instances(1), PATIENT, ps)
    reid.path.chmod(0o644)
    reid.record(instances(2), PATIENT, ps)
    assert stat.S_IMODE(reid.path.stat().st_mode) == 0o600
