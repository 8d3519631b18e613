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
