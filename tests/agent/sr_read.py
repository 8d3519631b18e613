"""Reading the lesion measurement groups back out of an SR (pydicom only, not through radconsult's writer)."""

from __future__ import annotations

from typing import Any


def _name(item: Any) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning) if "ConceptNameCodeSequence" in item else ""


def _content_items(ds: Any) -> list[Any]:
    """Every content item of the tree, depth first."""
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out += _content_items(item)
    return out


def measurement_groups(ds: Any) -> list[dict[str, Any]]:
    """Every TID 1501 measurement group: tracking identifier and UID, time point, lengths by name, the source
    image each length was marked on."""
    out = []
    for item in _content_items(ds):
        if item.get("ValueType") != "CONTAINER" or _name(item) != "Measurement Group":
            continue
        group: dict[str, Any] = {"lengths": {}, "sources": set()}
        for child in item.ContentSequence:
            name = _name(child)
            if name == "Tracking Identifier":
                group["tracking_id"] = str(child.TextValue)
            elif name == "Tracking Unique Identifier":
                group["tracking_uid"] = str(child.UID)
            elif name == "Time Point":
                group["time_point"] = str(child.TextValue)
            elif name == "Subject Time Point Identifier":
                group["study"] = str(child.TextValue)
            elif name == "Time Point Order":
                group["order"] = int(float(child.MeasuredValueSequence[0].NumericValue))
            elif child.get("ValueType") == "NUM":
                value = float(child.MeasuredValueSequence[0].NumericValue)
                group["lengths"][name] = value
                for sub in child.get("ContentSequence", []):
                    for img in sub.get("ContentSequence", []):
                        if "ReferencedSOPSequence" in img:
                            group["sources"].add(str(img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
            elif name == "Time Point Context" or child.get("ValueType") == "CONTAINER":
                for sub in child.get("ContentSequence", []):
                    if _name(sub) == "Time Point":
                        group["time_point"] = str(sub.TextValue)
                    elif _name(sub) == "Subject Time Point Identifier":
                        group["study"] = str(sub.TextValue)
        out.append(group)
    return out


def evidence_studies(ds: Any) -> dict[str, set[str]]:
    """{"current": study UIDs of the Current Requested Procedure Evidence, "other": of Pertinent Other Evidence}."""
    return {"current": {str(s.StudyInstanceUID) for s in ds.get("CurrentRequestedProcedureEvidenceSequence", [])},
            "other": {str(s.StudyInstanceUID) for s in ds.get("PertinentOtherEvidenceSequence", [])}}


def referenced_sops(ds: Any, which: str = "PertinentOtherEvidenceSequence") -> set[str]:
    return {str(r.ReferencedSOPInstanceUID) for st in ds.get(which, []) for se in st.ReferencedSeriesSequence
            for r in se.ReferencedSOPSequence}
