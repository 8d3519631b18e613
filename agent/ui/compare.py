"""The viewer's side of comparison with priors: which study is shown, how slices of two series are linked, and
how a case's studies and a PACS search's studies are labelled current or prior. Plain functions over loaded
studies; the controller (agent/ui/controller.py, "comparison with prior studies") calls them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.imaging import ImageStudy
    from tools.pacs_priors import StudyRole


def _date(value: str | None) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) == 8 and value.isdigit() else "undated"


def linked_slice(source: ImageStudy, slice_index: int, target: ImageStudy) -> int | None:
    """The slice of ``target`` at the position of ``source``'s ``slice_index`` (nearest, by Image Position
    Patient along the slice normal); None when either series lacks positions. Between two studies the patient
    lies differently, so the link is approximate: the clinician scrolls from there."""
    if not source.slice_positions or not target.slice_positions or slice_index >= len(source.slice_positions):
        return None
    where = source.slice_positions[slice_index]
    return min(range(len(target.slice_positions)), key=lambda i: abs(target.slice_positions[i] - where))


def study_choices(studies: list[ImageStudy]) -> list[tuple[str, str]]:
    """(label, index) for each study of a case, in the order attached (S1, S2 ...): modality, body part, date, and
    whether it is the current (newest) study or a prior."""
    from agent.comparison import current_study

    now = current_study(studies)
    out = []
    for n, s in enumerate(studies, start=1):
        m = s.metadata
        role = "current" if s is now else "prior" if (m.study_date and now is not None and now.metadata.study_date
                                                      and m.study_date < now.metadata.study_date) else "other"
        bits = " ".join(b for b in (m.modality, m.body_part) if b) or s.source_format.upper()
        out.append((f"S{n} · {bits} · {_date(m.study_date)} · {role}", str(n - 1)))
    return out


def study_ref(studies: list[ImageStudy], study_key: str | None) -> str | None:
    """"S2" for the study with ``study_key`` among the case's studies (None when not found)."""
    return next((f"S{n}" for n, s in enumerate(studies, start=1) if study_key and s.study_key == study_key), None)


def found_label(base: str, role: StudyRole | None) -> str:
    """A PACS search result's label with its place beside the current study ("... · prior: CHEST, 358 days
    earlier"), when the search was by patient."""
    said = role.describe() if role is not None else ""
    return f"{base} · {said}" if said else base
