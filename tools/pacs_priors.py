"""Which of a patient's studies in the PACS are priors of the current one: pure, over what QIDO returned.

A prior is a study of the same patient (Patient ID), dated before the current study (same day: earlier time),
sharing one of its modalities, and of the same body part when both say which (Body Part Examined of their
series); a study whose series do not say is still listed as a prior, with the body part marked unknown. The
current study is the one named, else the newest found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from tools.pacs_models import StudySummary

Role = Literal["current", "prior", "other"]


@dataclass(frozen=True)
class StudyRole:
    """One found study's place beside the current one. ``days_before``: how much earlier than the current."""

    role: Role
    days_before: int | None = None
    body_parts: tuple[str, ...] = ()
    body_part_known: bool = True

    def describe(self) -> str:
        """"current", "prior: CT CHEST, 358 days earlier", or "" for another study."""
        if self.role == "current":
            return "current"
        if self.role == "other":
            return ""
        part = "/".join(self.body_parts) if self.body_parts else "body part not stated"
        when = f", {self.days_before} days earlier" if self.days_before is not None else ""
        return f"prior: {part}{when}"


def _day(value: str) -> dt.date | None:
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) if len(value) >= 8 else None
    except ValueError:
        return None


def study_roles(studies: list[StudySummary], body_parts: dict[str, tuple[str, ...]],
                current_uid: str | None = None) -> dict[str, StudyRole]:
    """The role of every study in ``studies`` (by Study Instance UID). ``body_parts``: each study's Body Part
    Examined values (upper case; empty when its series do not say). ``current_uid``: the current study (the
    newest when None or not among them)."""
    if not studies:
        return {}
    by_uid = {s.study_uid: s for s in studies}
    current = by_uid.get(current_uid or "") or max(studies, key=lambda s: (s.study_date, s.study_time))
    now = _day(current.study_date)
    parts_now = set(body_parts.get(current.study_uid, ()))
    roles: dict[str, StudyRole] = {current.study_uid: StudyRole("current", body_parts=tuple(sorted(parts_now)))}
    for s in studies:
        if s.study_uid == current.study_uid:
            continue
        parts = set(body_parts.get(s.study_uid, ()))
        earlier = (s.study_date, s.study_time) < (current.study_date, current.study_time) and bool(s.study_date)
        same_patient = bool(s.patient_id) and s.patient_id == current.patient_id
        same_modality = not current.modalities or bool(set(s.modalities) & set(current.modalities))
        known = bool(parts and parts_now)
        same_part = not known or bool(parts & parts_now)
        if earlier and same_patient and same_modality and same_part:
            day = _day(s.study_date)
            days = (now - day).days if now and day else None
            roles[s.study_uid] = StudyRole("prior", days, tuple(sorted(parts)), known)
        else:
            roles[s.study_uid] = StudyRole("other", body_parts=tuple(sorted(parts)))
    return roles
