"""Which retrieved guideline sections apply to a case frame: a section whose heading names a size band, a
nodule type, a count or a category that the frame contradicts is left out ("Single solid nodule smaller
than 6 mm" for a 7 mm nodule). Sections that name no condition stay. When nothing fits, nothing is
dropped: the retrieval order stands."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from agent.frame.model import CaseFrame

T = TypeVar("T")

_BANDS = ((re.compile(r"smaller than 6 mm|< ?6 mm", re.I), lambda s: s < 6),
          (re.compile(r"6 to 8 mm|6-8 mm", re.I), lambda s: 6 <= s <= 8),
          (re.compile(r"larger than 8 mm|> ?8 mm", re.I), lambda s: s > 8),
          (re.compile(r"6 mm or larger|>= ?6 mm", re.I), lambda s: s >= 6))
_TYPES = ((re.compile(r"part-solid", re.I), {"part_solid"}),
          (re.compile(r"ground-glass|non-solid", re.I), {"ground_glass"}),
          (re.compile(r"subsolid", re.I), {"part_solid", "ground_glass"}),
          (re.compile(r"(?<![-\w])solid(?! component)", re.I), {"solid"}))
_CATEGORY = re.compile(r"\bcategory\s+(0|1|2|3|4[ABX]?|5|6)\b", re.I)


def _round_mm(size: float) -> int:
    return int(size + 0.5)


def fits(section: str, frame: CaseFrame) -> bool:
    """False when the section's heading names a condition the frame contradicts."""
    leaf = section.split(" > ")[-1] if section else ""
    if frame.size_mm is not None:
        size = _round_mm(frame.size_mm)
        for pattern, test in _BANDS:
            if pattern.search(leaf) and not test(size):
                return False
    if frame.nodule_type:
        for pattern, types in _TYPES:
            if pattern.search(leaf):
                if frame.nodule_type not in types:
                    return False
                break  # the most specific type named decides
    if frame.count:
        if re.search(r"\bsingle\b", leaf, re.I) and frame.count == "multiple":
            return False
        if re.search(r"\bmultiple\b", leaf, re.I) and frame.count == "single":
            return False
    if frame.category:
        named = {m.group(1).upper() for m in _CATEGORY.finditer(section or "")}
        if named and frame.category.upper() not in named:
            return False
    return True


def applicable(items: list[T], section_of: callable, frame: CaseFrame | None, keep: int = 2) -> list[T]:
    """The items whose section fits ``frame`` (at most ``keep``), in their order; all of them when none fits."""
    if frame is None:
        return items
    fitting = [it for it in items if fits(section_of(it) or "", frame)]
    return fitting[:keep] if fitting else items
