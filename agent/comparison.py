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
from typing import Any

from agent.evidence import Evidence, Ledger
from tools.comparison import TimePoint, compare_lesion, parse_study_date
from tools.errors import ComparisonError, DifferentPatientsError
from tools.measure import lesion_key

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
