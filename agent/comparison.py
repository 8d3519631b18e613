"""Comparison with prior studies: the case's labelled measurements become one evidence item per lesion.

When a turn brings measurements that name a lesion ("RUL nodule 1"), every measurement of that lesion in the
case (this turn's and earlier turns') is grouped by study, and :func:`tools.comparison.compare_lesion` gives
its change from the most recent earlier study to the newest one. The result is evidence of kind
``comparison`` with its own id; the case frame's status comes from it (agent/frame/comparison.py), the
answer and the summary's Comparison section cite it, and the SR carries the measurements of both time
points.

The newest study of a comparison is the current one. Studies of different patients are never compared
(:class:`DifferentPatientsError`), nor a study without a date (:class:`ComparisonError`); both are raised
before the turn starts, so nothing is written. A lesion measured on one study only, in a case with more
than one study, gets an evidence item that says no change was computed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from agent.evidence import Evidence, Ledger
from tools.comparison import TimePoint, compare_lesion, parse_study_date
from tools.errors import ComparisonError, DifferentPatientsError
from tools.measure import lesion_key

if TYPE_CHECKING:
    from agent.signoff import MeasurementRef

COMPARE_TOOL = "compare_studies"


def _axis(facts: dict[str, Any]) -> str:
    label = str(facts.get("label") or "long axis").lower()
    return "solid" if "solid" in label else "short" if "short" in label else "long"


def _time_point(ref: str, items: list[Evidence]) -> TimePoint:
    """One study's reading of a lesion from its measurement items, oldest first: the latest length per axis;
    a "not seen" mark replaces what came before it, and a length after it replaces the mark."""
    axes: dict[str, float] = {}
    present, kind, date = True, None, None
    for e in items:
        f = e.facts
        date = f.get("study_date") or date
        if f.get("present") is False:
            present, axes, kind = False, {}, None
            continue
        present = True
        axes[_axis(f)] = float(f["length_mm"])
        kind = f.get("nodule_type") or kind
    day = parse_study_date(date, f"study {ref}")
    if not present:
        return TimePoint(day, present=False, study=ref)
    diameters = tuple(axes[k] for k in ("long", "short") if k in axes)
    if not diameters:
        raise ComparisonError(f"only the solid component is measured on study {ref}: measure the whole nodule too")
    return TimePoint(day, diameters, axes.get("solid"), kind, study=ref)


def _same_patient(refs: list[str], records: list[dict[str, Any]], lesion: str) -> None:
    keys = {r["ref"]: r.get("patient_key") for r in records}
    found = {ref: keys.get(ref) for ref in refs}
    missing = [ref for ref, key in found.items() if not key]
    if missing:
        raise DifferentPatientsError(f"study {', '.join(missing)} carries no patient identity, so it cannot be "
                                     f"confirmed to be the same patient's: {lesion} is not compared")
    if len(set(found.values())) > 1:
        raise DifferentPatientsError(f"{lesion} is measured on studies of different patients ("
                                     f"{', '.join(sorted(found))} have different patient keys): a comparison needs "
                                     "the same patient's prior. (A study saved with `radconsult pacs get` and the "
                                     "same patient's original files also get different keys: load both the same way.)")


def comparison_evidence(new: list[Evidence], ledger: Ledger, records: list[dict[str, Any]]) -> list[Evidence]:
    """Comparison items for every lesion this turn's measurements (``new``, already numbered after ``ledger``)
    name, numbered after them. ``records`` are the case's studies ({ref, patient_key, ...}), newest last."""
    touched = {lesion_key(e.facts["lesion"]) for e in new if e.facts.get("lesion")}
    if not touched:
        return []
    everything = ledger.of_kind("measurement") + new
    by_lesion: dict[str, dict[str, list[Evidence]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for e in everything:
        label = e.facts.get("lesion")
        if label and lesion_key(label) in touched:
            names.setdefault(lesion_key(label), str(label))
            by_lesion[lesion_key(label)][str(e.facts.get("study", "?"))].append(e)
    work = Ledger(list(ledger.items) + list(new))
    out: list[Evidence] = []
    for key in sorted(touched):
        lesion, studies = names[key], by_lesion[key]
        ids = [e.id for items in studies.values() for e in items]
        if len(studies) < 2:
            if len(records) > 1:
                ref = next(iter(studies))
                out.append(work.add("comparison", COMPARE_TOOL, "comparison", title=f"{lesion}: not compared",
                                    quote=f"{lesion} is measured on study {ref} only: no change computed (measure "
                                          "it on the other study, or mark it as not seen there)",
                                    facts={"lesion": lesion, "compared": False, "study": ref, "measurements": ids}))
            continue
        _same_patient(list(studies), records, lesion)
        points = [_time_point(ref, items) for ref, items in studies.items()]
        change = compare_lesion(lesion, points)
        used = [e.id for ref in (change.prior_study, change.current_study) for e in studies[ref]]
        out.append(work.add("comparison", COMPARE_TOOL, "comparison",
                            title=f"{lesion}: {change.prior_study} to {change.current_study}",
                            quote=change.statement(), date=change.current_date,
                            facts={"lesion": lesion, "compared": True, "measurements": used,
                                   "change": change.to_dict()}))
    return out


def comparisons_of(items: list[dict[str, Any]] | list[Evidence]) -> list[Evidence]:
    """The compared (not the "measured on one study only") comparison items among ``items``."""
    ev = [e if isinstance(e, Evidence) else Evidence.from_dict(e) for e in items]
    return [e for e in ev if e.kind == "comparison" and e.facts.get("compared")]


def tracking_uid(case_id: str, lesion: str) -> str:
    """The lesion's Tracking Unique Identifier: the same on every study of the case (from the case and the label)."""
    import uuid

    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, f"radconsult-lesion/{case_id}/{lesion_key(lesion)}").int)


def measurement_refs(evidence: list[Evidence], case_id: str, current_study_uid: str | None) -> tuple[MeasurementRef, ...]:
    """The labelled lengths of the case for the SR: the latest per lesion, study and axis, each marked as the
    current or a prior time point (by the lesion's comparison; else by the report's study)."""
    from agent.signoff import MeasurementRef

    roles: dict[tuple[str, str], str] = {}
    for e in evidence:
        if e.kind == "comparison" and e.facts.get("compared"):
            c = e.facts["change"]
            roles[(lesion_key(c["lesion"]), c["prior_study"])] = "prior"
            roles[(lesion_key(c["lesion"]), c["current_study"])] = "current"
    latest: dict[tuple[str, str, str], Evidence] = {}
    for e in evidence:
        f = e.facts
        if e.kind != "measurement" or not f.get("lesion"):
            continue
        key = (lesion_key(f["lesion"]), str(f.get("study")), str(f.get("label")))
        if f.get("present") is False:  # a "not seen" mark replaces the lengths before it
            latest = {k: v for k, v in latest.items() if k[:2] != key[:2]}
            continue
        latest[key] = e
    out = []
    for (key, study, _), e in latest.items():
        f = e.facts
        role = roles.get((key, study)) or ("current" if f.get("study_uid") == current_study_uid else "prior")
        out.append(MeasurementRef(
            lesion=str(f["lesion"]), tracking_uid=tracking_uid(case_id, str(f["lesion"])), time_point=role,
            study=study, axis=str(f.get("label") or "long axis"), length_mm=float(f["length_mm"]),
            p1=(float(f["p1"][0]), float(f["p1"][1])), p2=(float(f["p2"][0]), float(f["p2"][1])), evidence_id=e.id,
            study_date=f.get("study_date"), study_uid=f.get("study_uid"), series_uid=f.get("series_uid"),
            sop_instance_uid=f.get("sop_instance_uid"), sop_class_uid=f.get("sop_class_uid"),
            nodule_type=f.get("nodule_type")))
    return tuple(out)


def current_study(studies: list[Any]) -> Any:
    """The current study among loaded ``studies`` (ImageStudy): the newest by study date; the last attached when
    none is dated. None for no study."""
    dated = [s for s in studies if s.metadata.study_date]
    if dated:
        return max(dated, key=lambda s: s.metadata.study_date)
    return studies[-1] if studies else None
