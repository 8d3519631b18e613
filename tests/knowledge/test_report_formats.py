"""PDF headings kept as sections, and FHIR Bundles with several DiagnosticReports: real files on disk,
loaded and ingested into a real Chroma store."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from knowledge.loaders import load_documents, load_file
from tests.knowledge.conftest import write
from tools.errors import InputError, UnsupportedFormatError

FINDINGS = ("A 7 mm solid nodule in the right upper lobe, unchanged in size. No pleural effusion. "
            "The mediastinal contours are normal. ")


def _report_pdf(path: Path, author: str = "") -> Path:
    """A two-page PDF report set the way reporting systems print them: a large bold title, bold
    section headings at 12 pt, body text at 10 pt, and a section that runs on to page 2."""
    from fpdf import FPDF

    pdf = FPDF()
    if author:
        pdf.set_author(author)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "CT Chest with Contrast", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Clinical history", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, 5, "Follow-up of a pulmonary nodule found on a prior study.")
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Findings", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, 5, FINDINGS * 90)  # long enough to run on to the next page
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Impression", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, 5, "Stable 7 mm solid nodule; follow-up CT in 12 months.")
    pdf.output(str(path))
    return path


def test_pdf_headings_become_sections_across_pages(tmp_path, kcfg):
    doc = load_file(_report_pdf(tmp_path / "ct.pdf", author="Radiology Dept"), kcfg, "guideline")
    assert doc.meta["title"] == "CT Chest with Contrast" and doc.meta["organisation"] == "Radiology Dept"
    paths = [(s.path, s.page) for s in doc.sections]
    assert (("CT Chest with Contrast", "Clinical history"), 1) in paths
    assert (("CT Chest with Contrast", "Findings"), 1) in paths
    assert (("CT Chest with Contrast", "Findings"), 2) in paths  # the section runs on to page 2
    impression = [s for s in doc.sections if s.path[-1] == "Impression"]
    assert len(impression) == 1 and "follow-up CT in 12 months" in doc.text[impression[0].start:impression[0].end]
    for s in doc.sections:  # headings are paths, not body text
        assert not doc.text[s.start:s.end].lstrip().startswith(("Findings", "Impression", "Clinical history"))


def test_pdf_report_sections_are_cited(tmp_path, kb):
    path = _report_pdf(tmp_path / "Jane_Doe_ct.pdf")
    report = kb.ingest([path], kind="report", patient="DEMO-4242")
    assert report.chunks_added > 0 and not report.failed
    hit = kb.search("follow-up CT in 12 months", kind="report", patient="DEMO-4242", k=1)[0]
    assert hit.section == "CT Chest with Contrast > Impression (p. 2)" and hit.page == 2
    assert hit.title == "Imaging report"  # a report's title is never taken from the file


def test_pdf_label_headings_in_plain_reports(tmp_path, kcfg):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    for line in ("CHEST RADIOGRAPH", "FINDINGS:", "Heart size is normal. Lungs are clear.", "IMPRESSION:",
                 "No acute cardiopulmonary process."):
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "plain.pdf"))
    doc = load_file(tmp_path / "plain.pdf", kcfg, "report")
    labels = {s.path[-1]: doc.text[s.start:s.end].strip() for s in doc.sections if s.path}
    assert labels["FINDINGS"] == "Heart size is normal. Lungs are clear."
    assert labels["IMPRESSION"] == "No acute cardiopulmonary process."


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _bundle() -> dict:
    patient = {"resourceType": "Patient", "id": "p1",
               "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN-5550123"}],
               "name": [{"family": "Grainger", "given": ["Hermione"]}], "birthDate": "1979-09-19"}
    chest = {"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
             "code": {"text": "XR chest 2 views"}, "subject": {"reference": "urn:uuid:aaaa-1111"},
             "effectiveDateTime": "2024-05-02", "conclusion": "Small left pleural effusion.",
             "presentedForm": [{"contentType": "text/plain", "data": _b64(
                 "FINDINGS: Hermione Grainger (MRN-5550123) has a small left pleural effusion.\n")}]}
    ct = {"resourceType": "DiagnosticReport", "id": "r2", "status": "final",
          "code": {"coding": [{"display": "CT chest without contrast"}]},
          "subject": {"reference": "urn:uuid:aaaa-1111"}, "effectiveDateTime": "2024-06-10",
          "conclusion": "Solid 9 mm nodule in the left lower lobe; PET/CT suggested."}
    empty = {"resourceType": "DiagnosticReport", "id": "r3", "status": "registered",
             "code": {"text": "MR brain"}, "subject": {"reference": "urn:uuid:aaaa-1111"}}
    return {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "urn:uuid:aaaa-1111", "resource": patient},
        {"fullUrl": "urn:uuid:bbbb-2222", "resource": chest},
        {"fullUrl": "urn:uuid:cccc-3333", "resource": ct},
        {"fullUrl": "urn:uuid:dddd-4444", "resource": empty}]}


def test_fhir_bundle_gives_one_document_per_report(tmp_path, kcfg):
    from tools.deid import patient_key

    docs = load_documents(write(tmp_path / "bundle.json", json.dumps(_bundle())), kcfg)
    assert [d.part for d in docs] == ["1", "2"]  # the empty third report is skipped with a warning
    assert any("report 3 of 3 skipped" in w for w in docs[0].warnings)
    key = patient_key("MRN-5550123", kcfg.deid)  # urn:uuid subject -> the Patient's MRN
    assert {d.meta["patient"] for d in docs} == {key}
    assert [d.meta["study_date"] for d in docs] == ["2024-05-02", "2024-06-10"]
    assert docs[1].meta["modality"] == "CT" and docs[0].meta["modality"] == "CR"
    for d in docs:
        for secret in ("Hermione", "Grainger", "5550123", "1979"):
            assert secret not in d.text and secret not in str(d.meta)
    assert "small left pleural effusion" in docs[0].text
    with pytest.raises(InputError, match="holds 2 documents"):
        load_file(tmp_path / "bundle.json", kcfg)


def test_fhir_bundle_ingest_update_and_delete(tmp_path, kb):
    path = write(tmp_path / "stream" / "bundle.json", json.dumps(_bundle()))
    first = kb.ingest([path])  # FHIR is a report without --kind
    assert first.files == 1 and len(first.sources) == 2 and first.chunks_added >= 2 and not first.failed
    patient = kb.prior_reports(kb.search("nodule", kind="report", k=1)[0].patient)
    assert [r["study_date"] for r in patient] == ["2024-06-10", "2024-05-02"]
    again = kb.ingest([path])
    assert again.chunks_added == 0 and again.unchanged_files == 1  # skipped without parsing
    bundle = _bundle()
    bundle["entry"] = bundle["entry"][:2]  # the CT report is withdrawn from the file
    path.write_text(json.dumps(bundle))
    changed = kb.ingest([path])
    assert changed.chunks_removed >= 1 and changed.chunks_added == 0
    assert kb.stats()["collections"]["report"]["sources"] == 1
    assert all("9 mm" not in c.quote for c in kb.search("solid nodule PET/CT", kind="report", k=5))
    assert kb.delete(str(path)) > 0
    assert kb.stats()["collections"]["report"]["chunks"] == 0


def test_fhir_bad_bundles(tmp_path, kcfg):
    only_patient = {"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]}
    with pytest.raises(UnsupportedFormatError, match="no DiagnosticReport"):
        load_documents(write(tmp_path / "a.json", json.dumps(only_patient)), kcfg)
    unreadable = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": {"resourceType": "DiagnosticReport", "code": {"text": "x"}}}]}
    with pytest.raises(InputError, match="none of the Bundle"):
        load_documents(write(tmp_path / "b.json", json.dumps(unreadable)), kcfg)
    with pytest.raises(UnsupportedFormatError, match="DiagnosticReport or a Bundle"):
        load_documents(write(tmp_path / "c.json", json.dumps({"resourceType": "Observation"})), kcfg)
    with pytest.raises(UnsupportedFormatError):
        load_documents(write(tmp_path / "d.json", "[1, 2]"), kcfg)
