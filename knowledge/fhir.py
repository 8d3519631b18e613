"""FHIR loader: one DiagnosticReport, or a Bundle holding several (a search result, a transaction, a
document, a message), each report becoming its own document.

The report's text is its conclusion, coded conclusions and readable ``presentedForm`` attachments
(plain text, HTML, PDF). Identifiers never pass: the patient becomes a pseudonymous key
(:func:`tools.deid.patient_key` of the reference's id, or, for a ``urn:uuid`` reference inside a
Bundle, of the referenced Patient's medical-record identifier), the Patient resource's names,
identifiers, birth date, phone numbers and address lines are scrubbed from the text, and the text
is redacted (:func:`knowledge.loaders.redact`). Dates follow the date policy (kept or shifted).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from knowledge.loaders import (
    LoadedDocument,
    guess_modality,
    html_to_markdown,
    markdown_sections,
    norm_date,
    redact,
    scrub_values,
)
from tools.errors import CorruptFileError, InputError, UnsupportedFormatError

if TYPE_CHECKING:
    from tools.deid import DeidPolicy

MAX_REPORTS = 10_000  # reports taken from one Bundle


def _resolve(reference: str, index: dict[str, dict[str, Any]], container: dict[str, Any]) -> dict[str, Any] | None:
    """The resource a reference points to inside the Bundle or the report's contained resources."""
    if reference.startswith("#"):
        return next((r for r in container.get("contained") or [] if isinstance(r, dict)
                     and r.get("id") == reference[1:]), None)
    if reference in index:
        return index[reference]
    tail = "/".join(reference.rstrip("/").split("/")[-2:])  # http://server/fhir/Patient/1 -> Patient/1
    return index.get(tail)


def _identifier(patient: dict[str, Any]) -> str | None:
    """The patient's medical-record number (identifier of type MR), else its first identifier."""
    identifiers = [i for i in patient.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    for ident in identifiers:
        codes = {c.get("code") for c in ((ident.get("type") or {}).get("coding") or []) if isinstance(c, dict)}
        if "MR" in codes:
            return str(ident["value"])
    return str(identifiers[0]["value"]) if identifiers else None


def _patient_identity(report: dict[str, Any], index: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Any]]:
    """(raw patient identity, the Patient resource when it is at hand) for a report's subject."""
    subject = report.get("subject") or {}
    if not isinstance(subject, dict):
        return None, {}
    reference = str(subject.get("reference") or "")
    patient = _resolve(reference, index, report) if reference else None
    patient = patient if isinstance(patient, dict) and patient.get("resourceType") == "Patient" else {}
    if reference and not reference.startswith(("urn:", "#")):
        return reference.rstrip("/").split("/")[-1], patient  # a server id: Patient/123 -> 123
    ident = subject.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return str(ident["value"]), patient
    if patient:
        return _identifier(patient) or (str(patient["id"]) if patient.get("id") else reference or None), patient
    return reference or None, patient


def _identifying_strings(patient: dict[str, Any]) -> set[str]:
    """Names, identifiers, birth date, phone numbers and address lines of a Patient resource."""
    out: set[str] = set()
    for name in patient.get("name") or []:
        if isinstance(name, dict):
            parts = [str(name.get("family") or ""), *map(str, name.get("given") or []), str(name.get("text") or "")]
            out.update(p for p in parts if p)
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            out.add(str(ident["value"]))
    for telecom in patient.get("telecom") or []:
        if isinstance(telecom, dict) and telecom.get("value"):
            out.add(str(telecom["value"]))
    for address in patient.get("address") or []:
        if isinstance(address, dict):
            out.update(str(x) for x in [*(address.get("line") or []), address.get("text")] if x)
    if patient.get("birthDate"):
        out.add(str(patient["birthDate"]))
    return {s.strip() for s in out if len(s.strip()) >= 2}


def _report_text(report: dict[str, Any], name: str, warnings: list[str]) -> tuple[str, str]:
    """(title, Markdown text) of one DiagnosticReport, before redaction."""
    from knowledge.pdf import load_pdf

    code = report.get("code") or {}
    codings = code.get("coding") or []
    title = str(code.get("text") or (codings[0].get("display") if codings else "") or "Diagnostic report")
    parts = [f"# {title}", ""]
    if report.get("conclusion"):
        parts += ["## Conclusion", "", str(report["conclusion"]).strip(), ""]
    concl_codes = [c.get("text") or ((c.get("coding") or [{}])[0].get("display"))
                   for c in report.get("conclusionCode") or [] if isinstance(c, dict)]
    if any(concl_codes):
        parts += ["## Coded conclusion", "", "; ".join(c for c in concl_codes if c), ""]
    for form in report.get("presentedForm") or []:
        if not isinstance(form, dict) or not form.get("data"):
            continue
        content_type = str(form.get("contentType", "text/plain")).split(";")[0].strip().lower()
        try:
            raw = base64.b64decode(form["data"], validate=False)
        except (binascii.Error, ValueError):
            warnings.append(f"{name}: a presentedForm is not valid base64; skipped")
            continue
        if content_type == "application/pdf":
            body = load_pdf(raw, name, "report", warnings).text
        elif content_type.startswith("text/"):
            body = raw.decode("utf-8", errors="replace")
            if content_type == "text/html":
                body = html_to_markdown(body)[0]
        else:
            warnings.append(f"{name}: presentedForm of type {content_type} skipped")
            continue
        parts += [f"## {form.get('title') or 'Report'}", "", body.strip(), ""]
    if len(parts) <= 2:
        raise InputError(f"{name}: the DiagnosticReport has no conclusion and no readable presentedForm")
    return title, "\n".join(parts)


def _report_document(report: dict[str, Any], name: str, deid_values: DeidPolicy,
                     index: dict[str, dict[str, Any]], warnings: list[str]) -> LoadedDocument:
    from tools import deid

    title, text = _report_text(report, name, warnings)
    raw_id, patient = _patient_identity(report, index)
    identifying = _identifying_strings(patient) | ({raw_id} if raw_id else set())
    report_text = redact(scrub_values(text, identifying)) + "\n"
    meta: dict[str, Any] = {"title": redact(scrub_values(title, identifying))}
    date = report.get("effectiveDateTime") or (report.get("effectivePeriod") or {}).get("start") \
        or report.get("issued")
    study_date = norm_date(date)
    if raw_id:
        meta["patient"] = deid.patient_key(raw_id, deid_values)
        if deid_values.shifts_dates and study_date:
            days = deid.date_shift_days(raw_id, deid_values)
            study_date = norm_date(deid.shift_date(study_date.replace("-", ""), days))
    meta["study_date"] = study_date
    meta["modality"] = guess_modality(title)
    sections, _ = markdown_sections(report_text)
    return LoadedDocument(report_text, sections, meta, "fhir", warnings)


def load_fhir(text: str, name: str, deid_values: DeidPolicy, warnings: list[str]) -> list[LoadedDocument]:
    """One document per DiagnosticReport: the resource itself, or each report in a Bundle (numbered
    1, 2 ... in ``part``). A report in a Bundle with nothing readable is skipped with a warning; a
    Bundle without any readable report is an error."""
    try:
        resource = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rtype = resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
    if rtype == "DiagnosticReport":
        return [_report_document(resource, name, deid_values, {}, warnings)]
    if rtype != "Bundle":
        raise UnsupportedFormatError(f"{name}: JSON input must be a FHIR DiagnosticReport or a Bundle of them, "
                                     f"got {rtype!r}")
    entries = [e.get("resource") for e in resource.get("entry") or [] if isinstance(e, dict)]
    index: dict[str, dict[str, Any]] = {}
    for entry in resource.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            if entry.get("fullUrl"):
                index[str(entry["fullUrl"])] = res
            if res.get("resourceType") and res.get("id"):
                index[f"{res['resourceType']}/{res['id']}"] = res
    reports = [r for r in entries if isinstance(r, dict) and r.get("resourceType") == "DiagnosticReport"]
    if not reports:
        found = sorted({str(r.get("resourceType")) for r in entries if isinstance(r, dict)}) or ["nothing"]
        raise UnsupportedFormatError(f"{name}: the FHIR Bundle holds no DiagnosticReport (found: {', '.join(found)})")
    if len(reports) > MAX_REPORTS:
        raise InputError(f"{name}: the Bundle holds {len(reports)} DiagnosticReports; at most {MAX_REPORTS} per file")
    docs: list[LoadedDocument] = []
    for number, report in enumerate(reports, start=1):
        own: list[str] = []
        try:
            doc = _report_document(report, name, deid_values, index, own)
        except InputError as exc:
            warnings.append(f"report {number} of {len(reports)} skipped: {exc}")
            continue
        doc.part = str(number)
        docs.append(doc)
    if not docs:
        raise InputError(f"{name}: none of the Bundle's {len(reports)} DiagnosticReports has a conclusion or "
                         f"a readable presentedForm")
    docs[0].warnings[:0] = warnings  # the file's own warnings are reported once
    return docs
