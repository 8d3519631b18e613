from __future__ import annotations

import io

import pydicom
import pytest
from pypdf import PdfReader

from agent import exports
from agent.signoff import Report, ReportStore
from tests.agent.test_signoff import make_report
from tools.errors import InputError


@pytest.fixture
def draft(settings):
    return ReportStore.from_settings(settings).save_draft(make_report())


@pytest.fixture
def signed(settings, draft):
    return ReportStore.from_settings(settings).sign(draft.report.case_id, draft.version, user="dr_a")


def test_markdown_draft_and_signed(draft, signed):
    md = exports.to_markdown(draft)
    assert "DRAFT" in md and "Decision support, not a diagnosis" in md and "Adult frontal CXR." in md
    assert "[E1]" in md and "Observe small pneumothoraces." in md
    md2 = exports.to_markdown(signed)
    assert "DRAFT" not in md2 and "SIGNED by dr_a" in md2 and signed.content_hash in md2


def _pdf_text(data: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_pdf_opens_and_has_disclaimer(draft):
    text = _pdf_text(exports.to_pdf(draft))
    assert "Decision support, not a diagnosis" in text
    assert "DRAFT" in text and "Intended use" in text


def test_pdf_unicode(settings):
    r = make_report(impression="Nodule ≤ 6 mm — no follow-up; μ ± σ [E1].")
    rv = ReportStore.from_settings(settings).save_draft(r)
    text = _pdf_text(exports.to_pdf(rv))
    assert "Nodule" in text


def test_sr_references_source(draft, tmp_path):
    path = exports.export(draft, "sr", tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert ds.Modality == "SR"
    assert ds.StudyInstanceUID == "2.25.1"
    assert ds.PatientID == "PK-abc123" and not str(ds.PatientName)
    assert ds.CompletionFlag == "PARTIAL" and ds.VerificationFlag == "UNVERIFIED"
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.StudyInstanceUID == "2.25.1"
    refs = ev.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == "2.25.2"
    assert refs.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "2.25.3"
    texts = [str(getattr(item, "TextValue", "")) for item in ds.ContentSequence]
    assert any("Decision support, not a diagnosis" in t and "DRAFT" in t for t in texts)
    img = [i for i in ds.ContentSequence if i.ValueType == "IMAGE"]
    assert img[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "2.25.3"


def test_sr_signed_is_verified(signed):
    ds = exports.to_dicom_sr(signed)
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "VERIFIED"
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName).rstrip("^") == "dr_a"


def test_sr_needs_dicom_source(settings):
    rv = ReportStore.from_settings(settings).save_draft(Report(case_id="png-case"))
    with pytest.raises(InputError, match="DICOM"):
        exports.to_dicom_sr(rv)
    assert "Decision support" in exports.to_markdown(rv)
    with pytest.raises(InputError):
        exports.export(rv, "docx", settings.data_dir)


def _lesion_report():
    import dataclasses

    from agent.signoff import MeasurementRef

    def ref(time_point, study, date, study_uid, sop, axis, mm, uid="2.25.77"):
        return MeasurementRef(lesion="RUL-1", tracking_uid=uid, time_point=time_point, study=study, axis=axis,
                              length_mm=mm, p1=(10.0, 20.0), p2=(22.0, 20.0), evidence_id="E1", study_date=date,
                              study_uid=study_uid, series_uid=study_uid + ".9", sop_instance_uid=sop,
                              sop_class_uid="1.2.840.10008.5.1.4.1.1.2", nodule_type="solid")

    measured = (ref("current", "S1", "20240502", "2.25.1", "2.25.3", "long axis", 8.0),
                ref("current", "S1", "20240502", "2.25.1", "2.25.3", "short axis", 7.0),
                ref("prior", "S2", "20230510", "2.25.50", "2.25.53", "long axis", 6.0),
                ref("prior", "S2", "20230510", "2.25.50", "2.25.54", "short axis", 5.0))
    return dataclasses.replace(make_report(), measurements=measured)


def test_sr_carries_both_time_points_of_a_lesion(settings, tmp_path):
    from tests.agent.sr_read import evidence_studies, measurement_groups, referenced_sops

    rv = ReportStore.from_settings(settings).save_draft(_lesion_report())
    ds = pydicom.dcmread(exports.export(rv, "sr", tmp_path))
    groups = sorted(measurement_groups(ds), key=lambda g: g["study"])
    assert [g["tracking_id"] for g in groups] == ["RUL-1", "RUL-1"]
    assert {g["tracking_uid"] for g in groups} == {"2.25.77"}  # one lesion, tracked across both time points
    assert [(g["study"], g["time_point"]) for g in groups] == [("S1", "current 2024-05-02"), ("S2", "prior 2023-05-10")]
    assert [g["order"] for g in groups] == [2, 1]  # the prior is the first time point
    assert groups[0]["lengths"] == {"Long Axis": 8.0, "Short Axis": 7.0}
    assert groups[1]["lengths"] == {"Long Axis": 6.0, "Short Axis": 5.0}
    assert groups[0]["sources"] == {"2.25.3"} and groups[1]["sources"] == {"2.25.53", "2.25.54"}
    assert evidence_studies(ds) == {"current": {"2.25.1"}, "other": {"2.25.50"}}
    assert referenced_sops(ds) == {"2.25.53", "2.25.54"}


def test_reports_without_lesions_keep_their_content_hash():
    import json

    from agent.signoff import Report

    plain = make_report()
    assert "measurements" not in plain.to_dict()
    lesions = _lesion_report()
    assert Report.from_dict(json.loads(json.dumps(lesions.to_dict()))) == lesions
    assert lesions.content_hash() != plain.content_hash()
