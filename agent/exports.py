"""Exports of a summary version: Markdown, PDF (fpdf2) and DICOM Comprehensive SR (highdicom).

Every export states "Decision support, not a diagnosis", the intended use of each model, and is
marked DRAFT until the version is signed (then it names the signer, time and content hash).
The SR joins the source study through its pseudonymised StudyInstanceUID and references the
source images by their pseudonymised SOP Instance UIDs; it carries the patient key as PatientID
and no other identity, so PACS can file it beside the (equally pseudonymised) images.

Labelled lesions measured on the current and prior studies go into an "Imaging Measurements" container
(DCM 126010, as in TID 1500) of TID 1501 measurement groups: one group per lesion and time point, each with
the lesion's Tracking Identifier (its label) and Tracking Unique Identifier (the same on every time point),
a Time Point Context (current or prior, with the study date), and its long / short axis lengths in mm, each
inferred from the line's two points on its source image (SCOORD POLYLINE). Images of a prior study are
listed in the Pertinent Other Evidence Sequence, those of the current study in the Current Requested
Procedure Evidence Sequence.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.signoff import MeasurementRef, ReportVersion, StudyRef
from tools.errors import InputError, RadconsultError

DRAFT_BANNER = "DRAFT - not signed by a clinician"
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts",
              "/Library/Fonts", "C:/Windows/Fonts")
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class ExportError(RadconsultError):
    """An export could not be produced."""


def status_lines(rv: ReportVersion) -> list[str]:
    if rv.is_signed:
        return [f"SIGNED by {rv.signed_by} at {rv.signed_at} (version {rv.version}, "
                f"content SHA-256 {rv.content_hash})"]
    return [f"{DRAFT_BANNER} (version {rv.version})"]


def _evidence_lines(rv: ReportVersion) -> list[str]:
    lines = []
    for e in rv.report.evidence:
        if e.kind == "knowledge" or e.quote:
            where = ", ".join(x for x in (e.source, e.section) if x)
            lines.append(f"[{e.id}] {e.title or e.source or 'passage'} ({where}): \"{e.quote or ''}\"")
        else:
            of = f"P({e.probability_of})" if e.probability_of else "probability"
            prob = f", {of} = {e.probability:.2f}" if e.probability is not None else ""
            prob = (f", output {e.label}" if e.label else "") + prob
            model = " ".join(x for x in (e.model, e.model_version) if x)
            caution = f". Caution: {e.caution}" if e.caution else ""
            lines.append(f"[{e.id}] {e.title or e.kind} ({model}{prob}){caution}")
    return lines


def to_markdown(rv: ReportVersion) -> str:
    """The summary as Markdown, with the status banner first and the disclaimer and intended use last."""
    r = rv.report
    out = [f"# {r.title}", "", f"> **{status_lines(rv)[0]}**", "",
           f"Case: `{r.case_id}`" + (f" - patient key `{r.patient_key}`" if r.patient_key else ""), ""]
    for heading, text in r.sections:
        out += [f"## {heading}", "", text.strip() or "_None._", ""]
    ev = _evidence_lines(rv)
    if ev:
        out += ["## Evidence", ""] + [f"- {line}" for line in ev] + [""]
    out += ["## Intended use", ""] + [f"- {line}" for line in r.intended_use_lines()] + [""]
    out += ["---", "", f"**{r.disclaimer}**", ""]
    return "\n".join(out)


def _find_font() -> tuple[Path, Path | None] | None:
    for d in _FONT_DIRS:
        regular = Path(d) / "DejaVuSans.ttf"
        if regular.is_file():
            bold = Path(d) / "DejaVuSans-Bold.ttf"
            return regular, bold if bold.is_file() else None
    return None


def _latin1(text: str) -> str:
    """Fallback when no Unicode font exists: common typography to ASCII, the rest replaced."""
    table = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
             "\u2264": "<=", "\u2265": ">=", "\u00b1": "+/-", "\u2026": "...", "\u2022": "-", "\u2192": "->"}
    for k, v in table.items():
        text = text.replace(k, v)
    return text.encode("latin-1", "replace").decode("latin-1")


def _plain(md: str) -> str:
    return re.sub(r"[*_`]{1,2}", "", md)


def to_pdf(rv: ReportVersion) -> bytes:
    """The summary as a PDF (A4). Uses DejaVu Sans when installed (full Unicode), else Helvetica with
    characters outside Latin-1 replaced."""
    try:
        from fpdf import FPDF
    except ImportError as exc:  # pragma: no cover - fpdf2 is a core dependency
        raise ExportError("PDF export needs fpdf2: pip install fpdf2") from exc
    r = rv.report
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    font = _find_font()
    if font:
        pdf.add_font("body", "", str(font[0]))
        pdf.add_font("body", "B", str(font[1] or font[0]))
        fam, clean = "body", (lambda s: s)
    else:
        fam, clean = "helvetica", _latin1
    pdf.set_title(clean(r.title))
    pdf.set_creator("radconsult")
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def para(text: str, size: float = 10, style: str = "", color: tuple[int, int, int] = (0, 0, 0)) -> None:
        pdf.set_font(fam, style, size)
        pdf.set_text_color(*color)
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(width, size * 0.5, clean(text))
        pdf.ln(1)

    para(r.title, 16, "B")
    para(status_lines(rv)[0], 10, "B", (0, 100, 0) if rv.is_signed else (180, 0, 0))
    para(f"Case {r.case_id}" + (f" - patient key {r.patient_key}" if r.patient_key else ""), 9)
    if r.study and r.study.study_uid:
        para(f"Study UID (pseudonymised): {r.study.study_uid}", 8, "", (90, 90, 90))
    for heading, text in r.sections:
        para(heading, 12, "B")
        para(_plain(text.strip()) or "None.", 10)
    ev = _evidence_lines(rv)
    if ev:
        para("Evidence", 12, "B")
        for line in ev:
            para(line, 8.5)
    para("Intended use", 12, "B")
    for line in r.intended_use_lines():
        para(line, 8.5)
    para(r.disclaimer, 10, "B", (120, 0, 0))
    if not rv.is_signed:
        para(DRAFT_BANNER, 10, "B", (180, 0, 0))
    return bytes(pdf.output())


def _code(value: str, scheme: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, scheme, meaning)


_AXIS_CODES = {"long axis": ("103339001", "SCT", "Long Axis"), "short axis": ("103340004", "SCT", "Short Axis")}
_DIAMETER = ("81827009", "SCT", "Diameter")


def _time_points(measurements: Sequence[MeasurementRef]) -> dict[str, int]:
    """Order of each study's time point, oldest first (1-based), by study date."""
    studies = sorted({(m.study_date or "", m.study) for m in measurements})
    return {study: n for n, (_, study) in enumerate(studies, start=1)}


def measurement_groups(measurements: Sequence[MeasurementRef]) -> Any:
    """The "Imaging Measurements" container of TID 1501 groups, one per lesion and time point (highdicom)."""
    import highdicom as hd
    import numpy as np

    order = _time_points(measurements)
    by_group: dict[tuple[str, str], list[MeasurementRef]] = {}
    for m in measurements:
        by_group.setdefault((m.tracking_uid, m.study), []).append(m)
    items: list[Any] = []
    for (uid, study), group in sorted(by_group.items(), key=lambda kv: (kv[1][0].lesion, order[kv[0][1]])):
        first = group[0]
        date = first.study_date or ""
        when = f"{first.time_point} {date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else first.time_point
        values = []
        for m in group:
            source = hd.sr.SourceImageForRegion(m.sop_class_uid or _SECONDARY_CAPTURE, m.sop_instance_uid)
            line = hd.sr.CoordinatesForMeasurement(hd.sr.GraphicTypeValues.POLYLINE,
                                                   np.array([m.p1, m.p2], dtype=float), source)
            values.append(hd.sr.Measurement(name=_code(*_AXIS_CODES.get(m.axis, _DIAMETER)), value=m.length_mm,
                                            unit=_code("mm", "UCUM", "millimeter"), referenced_coordinates=[line]))
        group_item = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=first.lesion),
            time_point_context=hd.sr.TimePointContext(when, time_point_order=order[study],
                                                      subject_time_point_identifier=study),
            finding_type=_code("27925004", "SCT", "Nodule"), measurements=values,
            source_images=[hd.sr.SourceImageForMeasurementGroup(m.sop_class_uid or _SECONDARY_CAPTURE,
                                                                 m.sop_instance_uid)
                           for m in {m.sop_instance_uid: m for m in group}.values()])
        items.extend(group_item)
    container = hd.sr.ContainerContentItem(name=_code("126010", "DCM", "Imaging Measurements"),
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def to_dicom_sr(rv: ReportVersion, *, manufacturer: str = "radconsult", software_version: str = "",
                study: StudyRef | None = None, patient: Mapping[str, str] | None = None,
                sop_instance_uid: str | None = None, series_instance_uid: str | None = None,
                measurements: Sequence[MeasurementRef] | None = None):
    """The summary as a DICOM Comprehensive SR (pydicom Dataset).

    Study: the source study's pseudonymised StudyInstanceUID (a new one when the case has no DICOM
    source). Evidence: the source SOP instances, pseudonymised. Completion/verification follow the
    sign-off: a draft is PARTIAL/UNVERIFIED, a signed version COMPLETE/VERIFIED with the signer as
    verifying observer.

    Only for the copy sent back to the PACS (``agent.pacs``): ``study`` (the original UIDs) and ``patient``
    (the original patient and study module, DICOM keyword -> value) replace the pseudonyms, ``measurements``
    (with the original UIDs) replace the report's, and the SR's own UIDs can be fixed so that sending the same
    version again repeats the same instance. Local exports never pass them.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    r = rv.report
    study = study or r.study
    if study is None or not study.study_uid:
        raise InputError("a DICOM SR needs a DICOM source study in the case; export Markdown or PDF instead")
    sop_uids = study.sop_instance_uids or ()
    if not sop_uids:
        raise InputError("the case's study has no SOP Instance UIDs to reference")
    sop_class = study.sop_class_uid or _SECONDARY_CAPTURE
    series_uid = study.series_uid or generate_uid()

    measured = [m for m in (r.measurements if measurements is None else measurements)
                if m.sop_instance_uid and m.study_uid and m.series_uid]
    refs = [(study.study_uid, series_uid, uid, sop_class) for uid in sop_uids]
    known = set(sop_uids)
    for m in measured:  # the measured slices of other series and studies (a prior) are evidence too
        if m.sop_instance_uid not in known:
            known.add(m.sop_instance_uid)
            refs.append((m.study_uid, m.series_uid, m.sop_instance_uid, m.sop_class_uid or _SECONDARY_CAPTURE))
    evidence = []
    for ref_study, ref_series, uid, ref_class in refs:
        ds = Dataset()
        ds.StudyInstanceUID = ref_study
        ds.SeriesInstanceUID = ref_series
        ds.SOPInstanceUID = uid
        ds.SOPClassUID = ref_class
        ds.PatientID = r.patient_key or "ANONYMOUS"
        ds.PatientName = ""
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyID = ""
        ds.AccessionNumber = ""
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.Modality = study.modality or "OT"
        for keyword, value in (patient or {}).items():
            setattr(ds, keyword, value)
        evidence.append(ds)

    rel_contains = hd.sr.RelationshipTypeValues.CONTAINS
    root = hd.sr.ContainerContentItem(name=_code("18748-4", "LN", "Diagnostic imaging report"),
                                      template_id=None)
    items = []
    banner = status_lines(rv)[0]
    items.append(hd.sr.TextContentItem(name=_code("121106", "DCM", "Comment"),
                                       value=f"{banner}. {r.disclaimer}"[:1024],
                                       relationship_type=rel_contains))
    section_codes = {
        "findings": ("121070", "DCM", "Findings"),
        "impression": ("121073", "DCM", "Impressions"),
        "recommendations": ("121074", "DCM", "Recommendations"),
        "comparison": ("121071", "DCM", "Comparison"),
        "conclusions": ("121076", "DCM", "Conclusions"),
    }
    for heading, text in r.sections:
        code = section_codes.get(heading.strip().lower(), ("121106", "DCM", "Comment"))
        sect = hd.sr.ContainerContentItem(name=_code(*code), relationship_type=rel_contains)
        value = text.strip() if code[2] != "Comment" else f"{heading}: {text.strip()}"
        sect.ContentSequence = hd.sr.ContentSequence([
            hd.sr.TextContentItem(name=_code("121106", "DCM", "Comment"), value=_plain(value) or "None.",
                                  relationship_type=rel_contains)])
        items.append(sect)
    for line in _evidence_lines(rv):
        items.append(hd.sr.TextContentItem(name=_code("121106", "DCM", "Comment"),
                                           value=("Evidence " + line)[:8000], relationship_type=rel_contains))
    for line in r.intended_use_lines():
        items.append(hd.sr.TextContentItem(name=_code("121106", "DCM", "Comment"),
                                           value=("Intended use: " + line)[:8000],
                                           relationship_type=rel_contains))
    for uid in sop_uids[:64]:
        items.append(hd.sr.ImageContentItem(name=_code("121112", "DCM", "Source of Measurement"),
                                            referenced_sop_class_uid=sop_class,
                                            referenced_sop_instance_uid=uid,
                                            relationship_type=rel_contains))
    if measured:
        items.append(measurement_groups(measured))
    root.ContentSequence = hd.sr.ContentSequence(items)

    kwargs = {}
    if rv.is_signed:
        # a login name is one PN component; the trailing caret says so (DICOM PS3.5 6.2.1.2)
        kwargs = {"verifying_observer_name": f"{rv.signed_by}^", "verifying_organization": "radconsult"}
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence, content=root, series_instance_uid=series_instance_uid or generate_uid(), series_number=990,
        sop_instance_uid=sop_instance_uid or generate_uid(), instance_number=rv.version, manufacturer=manufacturer,
        is_complete=rv.is_signed, is_final=rv.is_signed, is_verified=rv.is_signed, **kwargs)
    sr.SeriesDescription = ("radconsult summary (signed)" if rv.is_signed else "radconsult summary DRAFT")
    if software_version:
        sr.SoftwareVersions = software_version
    sr.PatientIdentityRemoved = "NO" if patient else "YES"
    return sr


def to_dicom_bytes(rv: ReportVersion, **kwargs) -> bytes:
    ds = to_dicom_sr(rv, **kwargs)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def export(rv: ReportVersion, fmt: str, out_dir: Path) -> Path:
    """Write one export ("md" | "pdf" | "sr") into ``out_dir``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = "signed" if rv.is_signed else "DRAFT"
    stem = f"{rv.report.case_id}_v{rv.version}_{state}"
    if fmt == "md":
        path = out_dir / f"{stem}.md"
        path.write_text(to_markdown(rv), encoding="utf-8")
    elif fmt == "pdf":
        path = out_dir / f"{stem}.pdf"
        path.write_bytes(to_pdf(rv))
    elif fmt == "sr":
        path = out_dir / f"{stem}_SR.dcm"
        path.write_bytes(to_dicom_bytes(rv))
    else:
        raise InputError(f"unknown export format {fmt!r}: expected md, pdf or sr")
    return path
