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
DAYS_PER_MONTH = 365.25 / 12


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
    frame; then the driving lesion's lengths on its current study (from any turn of the case)."""
    if driving is None:
        return [m for m in this_turn if m.get("present", True)]
    ids = set(driving.facts.get("measurements", []))
    current = driving.facts["change"].get("current_study")
    return [e.get("facts", {}) for e in evidence if e.get("id") in ids and e.get("kind") == "measurement"
            and e.get("facts", {}).get("study") == current and e.get("facts", {}).get("present", True)]


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
    if status == "stable" and c.get("stable_days") is not None:
        frame.stable_months = round(float(c["stable_days"]) / DAYS_PER_MONTH, 1)
    frame.assumed = [a for a in frame.assumed if "baseline screen" not in a]
    frame.notes.append(f"{c.get('lesion')}: {status} compared with {c.get('prior_study')} ({c.get('prior_date')})")
