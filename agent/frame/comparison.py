"""The case frame from a measured comparison with a prior study (agent/comparison.py makes the evidence).

Two functions, called where measurements reach the frame (agent/graph.py ``read_frame``):

* :func:`frame_measurements`: the lengths the frame reads its size from: those of the current (newest) study
  of the lesion that drives management, whichever turn they were marked in;
* :func:`apply_comparison`: the frame's status (new, growing, stable, resolved) and the comparison facts the
  calculators use (how long the lesion has been stable) from that comparison, and the evidence id that the
  answer names as the comparison that drove the category.

A measured comparison outranks a status stated in words (the words are kept as a correction), as measured
lengths outrank a size in the words. The lesion that drives management is the most suspicious: growing,
then new, then stable or smaller, then resolved; the larger one on a tie.
"""

from __future__ import annotations

from typing import Any

from agent.evidence import Evidence
from agent.frame.model import CaseFrame

_RANK = {"growing": 0, "new": 1, "stable": 2, "smaller": 2, "resolved": 3}


def driving_comparison(comparisons: list[Evidence]) -> Evidence | None:
    """The compared lesion that drives management, or None."""
    compared = [e for e in comparisons if e.kind == "comparison" and e.facts.get("compared")]
    if not compared:
        return None

    def rank(e: Evidence) -> tuple[int, float]:
        c = e.facts["change"]
        size = c.get("current_mean_mm") or c.get("prior_mean_mm") or 0.0
        return _RANK.get(c.get("status"), 4), -float(size)

    return min(compared, key=rank)


def frame_measurements(evidence: list[dict[str, Any]], this_turn: list[dict[str, Any]],
                       driving: Evidence | None) -> list[dict[str, Any]]:
    """The measurement facts the frame reads its size from: ``this_turn``'s, unless a comparison drives the
    frame; then the driving lesion's lengths on its current study (on the prior when it resolved), from any
    turn of the case."""
    if driving is None:
        return [m for m in this_turn if m.get("present", True)]
    ids = set(driving.facts.get("measurements", []))
    change = driving.facts["change"]
    # a resolved lesion has no length now: the frame reads the size it had (the calculators say it resolved)
    current = change.get("prior_study") if change.get("status") == "resolved" else change.get("current_study")
    picked = [e.get("facts", {}) for e in evidence if e.get("id") in ids and e.get("kind") == "measurement"
              and e.get("facts", {}).get("study") == current and e.get("facts", {}).get("present", True)]
    return picked[::-1]  # newest first: the frame reads the first length of each axis, so a re-measure wins


def apply_comparison(frame: CaseFrame, driving: Evidence | None) -> None:
    """Set the frame's status and stable period from the driving comparison (nothing when there is none)."""
    if driving is None:
        return
    c: dict[str, Any] = driving.facts["change"]
    status = c.get("frame_status") or c.get("status")
    if frame.status and frame.status != status and frame.source != "previous":
        frame.corrections.append(f"status: {frame.status} -> {status} (the measured comparison [{driving.id}])")
    frame.status = status
    frame.comparison = driving.id
    if c.get("nodule_type") and frame.nodule_type is None:
        frame.nodule_type = c["nodule_type"]
    if status == "resolved":  # the calculators take the size it had; the frame's missing size is not missing
        frame.size_mm = frame.size_mm or c.get("prior_mean_mm")
        frame.missing = [m for m in frame.missing if m not in ("size", "solid component size")]
        frame.no_nodule = False
    elif frame.size_mm is None and c.get("current_mean_mm"):
        frame.size_mm = c["current_mean_mm"]
        frame.missing = [m for m in frame.missing if m != "size"]
    if status == "stable" and c.get("stable_months") is not None:
        frame.stable_months = float(c["stable_months"])  # whole calendar months, as the stability rules count
    frame.assumed = [a for a in frame.assumed if "baseline screen" not in a]
    frame.notes.append(f"{c.get('lesion')}: {status} compared with {c.get('prior_study')} ({c.get('prior_date')})")


# --- rendered sentences -------------------------------------------------------------------------------------
def measured_sentences(measured: list[Evidence]) -> list[str]:
    """"Measured on study S2: RUL-1 long axis 8.5 mm, RUL-1 short axis 7 mm [E1, E2]." One line per study."""
    by_study: dict[str, list[Evidence]] = {}
    for e in measured:
        by_study.setdefault(str(e.facts.get("study", "?")), []).append(e)
    out = []
    for study, items in by_study.items():
        parts = []
        for e in items:
            f = e.facts
            lesion = f"{f['lesion']} " if f.get("lesion") else ""
            parts.append(f"{lesion}not seen" if f.get("present") is False
                         else f"{lesion}{f.get('label', 'length')} {float(f.get('length_mm', 0)):g} mm")
        out.append(f"Measured on study {study}: {', '.join(parts)} [{', '.join(e.id for e in items)}].")
    return out


def comparison_sentences(e: Evidence) -> list[str]:
    """A comparison as its statement says it (or why no change was computed), cited."""
    if not e.facts.get("compared"):
        return [f"{e.quote.rstrip('.')} [{e.id}]."]
    lines = [f"Compared: {e.quote.rstrip('.')} [{e.id}]."]
    lines += [f"Note on {e.facts.get('lesion')}: {n.rstrip('.')} [{e.id}]." for n in e.facts["change"].get("notes", [])]
    return lines


def drove_sentence(frame: CaseFrame, items: list[Evidence]) -> str | None:
    """Which comparison set the status the guideline result used: "The Lung-RADS v2022 category takes the status
    growing from the comparison of RUL-1 with S1 (2023-03-14) [E5, E6]." (the comparison and the result it
    drove); None when no comparison set it."""
    from agent.frame.model import SYSTEM_NAMES

    driving = next((e for e in items if e.id == frame.comparison), None)
    calculators = [e.id for e in items if e.kind == "calculator"]
    if driving is None or not calculators:
        return None
    c = driving.facts["change"]
    what = "category" if frame.system == "lung_rads" else "recommendation"
    return (f"The {SYSTEM_NAMES.get(frame.system, 'guideline')} {what} takes the status {frame.status} from the "
            f"comparison of {c.get('lesion')} with {c.get('prior_study')} ({c.get('prior_date')}) "
            f"[{', '.join([driving.id, *calculators])}].")
