"""Fleischner Society 2017: follow-up of an incidental pulmonary nodule on CT.

``size_mm`` is the average of the long and short axes, rounded to the nearest whole millimetre, halves
up (5.5 -> 6, 8.4 -> 8, 8.5 -> 9), as the guideline states. Bands on the rounded value: smaller than
6, 6 to 8 inclusive, larger than 8. So 5.4 mm is "< 6 mm" but 5.9 mm rounds to 6 and is "6-8 mm".

With a prior examination (``status``; from a measured comparison, :mod:`tools.comparison`, or stated in
words) the rules are, in our own words (MacMahon et al., Radiology 2017;284:228-243, and the corpus section
"Follow-up with a prior examination"):

* stable: a solid nodule stable for at least 24 months, a subsolid one for at least 60, needs no further
  routine follow-up; a shorter or unstated stable period keeps the table's schedule, with a note saying how
  long remains;
* growing: the next step, not the same interval again: a solid nodule is worked up as a suspicious one
  (PET/CT, tissue sampling or resection, as for a solid nodule > 8 mm); a ground-glass nodule that grows or
  gains a solid component, or a part-solid nodule whose solid component grows, is considered for resection;
* resolved: no further imaging;
* new: the table by type and size, as at first detection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.calculators.common import (
    DISCLAIMER,
    NODULE_TYPE_ALIASES,
    FollowUp,
    GuidelineCitation,
    citer,
    normalise,
    round_half_up,
)

_FLEISCHNER = citer(
    "fleischner-2017.md",
    "Fleischner Society 2017 guidelines for management of incidental pulmonary nodules",
    "Fleischner Society",
    2017,
    "https://doi.org/10.1148/radiol.2017161659",
)


class FleischnerArgs(BaseModel):
    """An incidental pulmonary nodule on CT, for the Fleischner Society 2017 table.

    For several nodules, describe the most suspicious one and set ``multiple=True``.
    """

    model_config = ConfigDict(extra="forbid")

    size_mm: float = Field(
        gt=0,
        le=300,
        description="Average of the nodule's long and short axes in mm (rounded to the nearest mm).",
    )
    nodule_type: Literal["solid", "ground_glass", "part_solid"] = Field(
        description="solid, ground_glass (pure ground-glass / non-solid) or part_solid.",
    )
    solid_component_mm: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description="Part-solid only: average diameter of the solid component in mm.",
    )
    multiple: bool = Field(default=False, description="True when more than one nodule is present.")
    risk: Literal["low", "high"] | None = Field(
        default=None,
        description="Patient's lung cancer risk (solid nodules): low or high; omit if unknown.",
    )
    patient_age_years: int | None = Field(default=None, ge=0, le=130, description="Age in years.")
    lung_cancer_screening: bool = Field(default=False, description="Found on a lung cancer screening CT.")
    known_primary_cancer: bool = Field(default=False, description="Patient has a known primary cancer.")
    immunocompromised: bool = Field(default=False, description="Patient is immunosuppressed.")
    typical_perifissural: bool = Field(
        default=False,
        description="Solid nodule with typical perifissural/juxtapleural benign morphology.",
    )
    status: Literal["new", "growing", "stable", "resolved"] | None = Field(
        default=None,
        description="Change since a prior CT: new, growing, stable or resolved; omit without a prior.",
    )
    stable_months: float | None = Field(
        default=None, ge=0, le=600, description="status=stable: months the size has been unchanged."
    )

    @field_validator("nodule_type", mode="before")
    @classmethod
    def _alias_type(cls, value: Any) -> Any:
        key = normalise(value)
        if isinstance(key, str) and key in NODULE_TYPE_ALIASES:
            return NODULE_TYPE_ALIASES[key]
        return value

    @field_validator("risk", mode="before")
    @classmethod
    def _lower_risk(cls, value: Any) -> Any:
        key = normalise(value)
        return None if key in ("", "unknown", "none") else key

    @field_validator("status", mode="before")
    @classmethod
    def _status_words(cls, value: Any) -> Any:
        """The words a clinician uses for change (and Lung-RADS's own status names) mapped onto ours."""
        key = normalise(value)
        aliases = {"baseline": None, "": None, "none": None, "unknown": None, "unchanged": "stable",
                   "smaller": "stable", "shrinking": "stable", "enlarging": "growing", "grown": "growing",
                   "slowly_growing": "growing", "slow_growing": "growing", "gone": "resolved",
                   "disappeared": "resolved"}
        return aliases.get(key, key) if isinstance(key, str) else key

    @model_validator(mode="after")
    def _check_components(self) -> FleischnerArgs:
        if self.nodule_type == "part_solid":
            # under 6 mm the table does not depend on the solid component: it need not be known
            if self.solid_component_mm is None and round_half_up(self.size_mm, 0) >= 6:
                raise ValueError(
                    "a part_solid nodule needs solid_component_mm (size of its solid part in mm)"
                )
            if self.solid_component_mm is not None and self.solid_component_mm >= self.size_mm:
                raise ValueError(
                    "solid_component_mm must be smaller than size_mm; a nodule that is solid throughout is 'solid'"
                )
        elif self.solid_component_mm is not None:
            raise ValueError(f"solid_component_mm applies only to part_solid nodules, not {self.nodule_type}")
        if self.typical_perifissural and self.nodule_type != "solid":
            raise ValueError("typical_perifissural applies only to solid nodules")
        if self.stable_months is not None and self.status != "stable":
            raise ValueError("stable_months applies only to status 'stable'")
        return self


@dataclass(frozen=True)
class FleischnerResult:
    applicable: bool
    recommendation: str
    follow_up: tuple[FollowUp, ...]
    rule: str  # the table cell, e.g. "solid, single, 6-8 mm, high risk"
    size_mm_used: int | None  # the rounded size the rule was applied to
    citation: GuidelineCitation
    notes: tuple[str, ...] = ()
    guideline: str = "Fleischner Society 2017"
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ct(lo: int, hi: int, *, optional: bool = False, text: str | None = None) -> FollowUp:
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    default = f"{'consider ' if optional else ''}CT at {span} months"
    return FollowUp("CT", (lo, hi), optional, text or default)


_NO_FOLLOW_UP = "No routine follow-up."

# (type, multiple, band) -> {risk: (recommendation, follow_up)}; risk key "any" for subsolid/>8 mm
_SOLID_SINGLE = "Solid nodules: single"
_SOLID_MULTI = "Solid nodules: multiple"
_SUB_SINGLE = "Subsolid nodules: single"
_SUB_MULTI = "Subsolid nodules: multiple"

_FLEISCHNER_TABLE: dict[tuple[str, bool, str], tuple[str, dict[str, tuple[str, tuple[FollowUp, ...]]]]] = {
    ("solid", False, "<6"): (
        f"{_SOLID_SINGLE} > Single solid nodule smaller than 6 mm",
        {
            "low": (_NO_FOLLOW_UP, ()),
            "high": ("Optional CT at 12 months.", (_ct(12, 12, optional=True),)),
        },
    ),
    ("solid", False, "6-8"): (
        f"{_SOLID_SINGLE} > Single solid nodule 6 to 8 mm",
        {
            "low": (
                "CT at 6-12 months, then consider CT at 18-24 months.",
                (_ct(6, 12), _ct(18, 24, optional=True)),
            ),
            "high": ("CT at 6-12 months, then CT at 18-24 months.", (_ct(6, 12), _ct(18, 24))),
        },
    ),
    ("solid", False, ">8"): (
        f"{_SOLID_SINGLE} > Single solid nodule larger than 8 mm",
        {
            "any": (
                "Consider CT at 3 months, PET/CT, or tissue sampling.",
                (
                    _ct(3, 3, optional=True),
                    FollowUp("PET/CT", None, True, "consider PET/CT"),
                    FollowUp("tissue sampling", None, True, "consider tissue sampling"),
                ),
            ),
        },
    ),
    ("solid", True, "<6"): (
        f"{_SOLID_MULTI} > Multiple solid nodules smaller than 6 mm",
        {
            "low": (_NO_FOLLOW_UP, ()),
            "high": ("Optional CT at 12 months.", (_ct(12, 12, optional=True),)),
        },
    ),
    ("solid", True, "6-8"): (
        f"{_SOLID_MULTI} > Multiple solid nodules 6 to 8 mm",
        {
            "low": (
                "CT at 3-6 months, then consider CT at 18-24 months.",
                (_ct(3, 6), _ct(18, 24, optional=True)),
            ),
            "high": ("CT at 3-6 months, then CT at 18-24 months.", (_ct(3, 6), _ct(18, 24))),
        },
    ),
    ("solid", True, ">8"): (
        f"{_SOLID_MULTI} > Multiple solid nodules larger than 8 mm",
        {
            "any": (
                "CT at 3-6 months, then consider CT at 18-24 months; manage by the most suspicious nodule.",
                (_ct(3, 6), _ct(18, 24, optional=True)),
            ),
        },
    ),
    ("ground_glass", False, "<6"): (
        f"{_SUB_SINGLE} > Single pure ground-glass nodule smaller than 6 mm",
        {"any": (_NO_FOLLOW_UP, ())},
    ),
    ("ground_glass", False, ">=6"): (
        f"{_SUB_SINGLE} > Single pure ground-glass nodule 6 mm or larger",
        {
            "any": (
                "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years.",
                (
                    _ct(6, 12, text="CT at 6-12 months to confirm persistence"),
                    FollowUp("CT", (24, 24), False, "then CT every 2 years until 5 years from detection"),
                ),
            )
        },
    ),
    ("part_solid", False, "<6"): (
        f"{_SUB_SINGLE} > Single part-solid nodule smaller than 6 mm",
        {"any": (_NO_FOLLOW_UP, ())},
    ),
    ("part_solid", False, ">=6/solid<6"): (
        f"{_SUB_SINGLE} > Single part-solid nodule 6 mm or larger with solid component smaller than 6 mm",
        {
            "any": (
                "CT at 3-6 months to confirm persistence; if unchanged and the solid component stays "
                "smaller than 6 mm, annual CT for 5 years.",
                (
                    _ct(3, 6, text="CT at 3-6 months to confirm persistence"),
                    FollowUp("CT", (12, 12), False, "then annual CT for 5 years if unchanged"),
                ),
            )
        },
    ),
    ("part_solid", False, ">=6/solid>=6"): (
        f"{_SUB_SINGLE} > Single part-solid nodule with solid component 6 mm or larger",
        {
            "any": (
                "Highly suspicious if persistent: CT at 3-6 months to confirm persistence, then consider "
                "PET/CT, biopsy or resection.",
                (
                    _ct(3, 6, text="CT at 3-6 months to confirm persistence"),
                    FollowUp("PET/CT", None, True, "if persistent, consider PET/CT"),
                    FollowUp(
                        "biopsy or resection", None, True, "if persistent, consider biopsy or resection"
                    ),
                ),
            )
        },
    ),
    ("subsolid", True, "<6"): (
        f"{_SUB_MULTI} > Multiple subsolid nodules smaller than 6 mm",
        {
            "any": (
                "CT at 3-6 months; if stable, consider CT at 2 and 4 years.",
                (_ct(3, 6), _ct(24, 24, optional=True), _ct(48, 48, optional=True)),
            )
        },
    ),
    ("subsolid", True, ">=6"): (
        f"{_SUB_MULTI} > Multiple subsolid nodules 6 mm or larger",
        {
            "any": (
                "CT at 3-6 months; further management based on the most suspicious nodule(s).",
                (_ct(3, 6),),
            )
        },
    ),
}
_F_SCOPE = "Scope and exclusions"
_F_PERIFISSURAL = "Special situations > Perifissural and juxtapleural nodules"
_F_PRIOR = "Follow-up with a prior examination"
_F_STABLE = {"solid": f"{_F_PRIOR} > Stable solid nodules", "subsolid": f"{_F_PRIOR} > Stable subsolid nodules"}
_F_GROWING = f"{_F_PRIOR} > Growing nodules"
_F_NEW = f"{_F_PRIOR} > New nodules"
_F_RESOLVED = "Special situations > Nodules that resolve or shrink"
STABLE_MONTHS_NEEDED = {"solid": 24, "subsolid": 60}
_GROWING = {
    "solid": ("A solid nodule that has grown is suspicious: manage it at the next step, as a solid nodule larger "
              "than 8 mm: consider PET/CT, tissue sampling or resection, guided by the probability of malignancy.",
              (FollowUp("PET/CT", None, True, "consider PET/CT"),
               FollowUp("tissue sampling", None, True, "consider tissue sampling"),
               FollowUp("resection", None, True, "consider resection"))),
    "ground_glass": ("A ground-glass nodule that grows or develops a solid component is suspicious: consider "
                     "resection.", (FollowUp("resection", None, True, "consider resection"),)),
    "part_solid": ("A part-solid nodule that grows, or whose solid component grows, is highly suspicious: consider "
                   "PET/CT, biopsy or resection.",
                   (FollowUp("PET/CT", None, True, "consider PET/CT"),
                    FollowUp("biopsy or resection", None, True, "consider biopsy or resection"))),
}


def _fleischner_key(args: FleischnerArgs, size: int) -> tuple[tuple[str, bool, str], str]:
    """(table key, human-readable size band) for a validated nodule of rounded ``size`` mm."""
    if args.nodule_type == "solid":
        band = "<6" if size < 6 else ("6-8" if size <= 8 else ">8")
        label = {"<6": "< 6 mm", "6-8": "6-8 mm", ">8": "> 8 mm"}[band]
        return ("solid", args.multiple, band), label
    if args.multiple:
        band = "<6" if size < 6 else ">=6"
        return ("subsolid", True, band), ("< 6 mm" if band == "<6" else ">= 6 mm")
    if size < 6:
        return (args.nodule_type, False, "<6"), "< 6 mm"
    if args.nodule_type == "ground_glass":
        return ("ground_glass", False, ">=6"), ">= 6 mm"
    solid = int(round_half_up(args.solid_component_mm or 0.0, 0))
    if solid < 6:
        return ("part_solid", False, ">=6/solid<6"), ">= 6 mm, solid component < 6 mm"
    return ("part_solid", False, ">=6/solid>=6"), "solid component >= 6 mm"


def _exclusions(args: FleischnerArgs) -> list[str]:
    """Why the guideline does not apply to this patient ([] when it does)."""
    out: list[str] = []
    if args.patient_age_years is not None and args.patient_age_years < 35:
        out.append(f"the patient is younger than 35 years ({args.patient_age_years})")
    if args.lung_cancer_screening:
        out.append("the nodule was found on lung cancer screening: use ACR Lung-RADS v2022")
    if args.known_primary_cancer:
        out.append("the patient has a known primary cancer: follow the oncological staging or surveillance plan")
    if args.immunocompromised:
        out.append("the patient is immunocompromised: infection is a more likely cause")
    return out


def fleischner_followup(args: FleischnerArgs) -> FleischnerResult:
    """Fleischner Society 2017 follow-up for an incidental pulmonary nodule on CT.

    Returns ``applicable=False`` (with the reason and a pointer to the right pathway) when the
    patient falls under the guideline's exclusions: age under 35, lung cancer screening, a
    known primary cancer, immunosuppression, or a lesion larger than 30 mm (a mass).
    """
    exclusions = _exclusions(args)
    if exclusions:
        return FleischnerResult(
            applicable=False,
            recommendation="The Fleischner 2017 guideline does not apply because "
            + "; ".join(exclusions)
            + ".",
            follow_up=(),
            rule="exclusion",
            size_mm_used=None,
            citation=_FLEISCHNER(_F_SCOPE),
        )

    size = int(round_half_up(args.size_mm, 0))
    notes: list[str] = []
    if size != args.size_mm:
        notes.append(f"Average diameter {args.size_mm:g} mm rounded to {size} mm (nearest mm, halves up).")
    if size > 30:
        return FleischnerResult(
            applicable=False,
            recommendation=(
                f"A {size} mm lesion is a mass rather than a nodule (larger than 30 mm): the nodule table "
                "does not apply; it needs diagnostic work-up."
            ),
            follow_up=(),
            rule="mass > 30 mm",
            size_mm_used=size,
            citation=_FLEISCHNER(_F_SCOPE),
            notes=tuple(notes),
        )
    if size < 3:
        notes.append("Nodules smaller than 3 mm are described as micronodules rather than measured.")

    prior_step = _with_prior(args, size, notes)
    if prior_step is not None:
        return prior_step
    if args.typical_perifissural:
        return FleischnerResult(
            applicable=True,
            recommendation="No follow-up: a nodule with typical perifissural or juxtapleural morphology is most "
            "likely an intrapulmonary lymph node, even when its average diameter exceeds 6 mm.",
            follow_up=(),
            rule="solid, typical perifissural morphology",
            size_mm_used=size,
            citation=_FLEISCHNER(_F_PERIFISSURAL),
            notes=tuple(notes),
        )

    key, band_label = _fleischner_key(args, size)
    section, by_risk = _FLEISCHNER_TABLE[key]
    kind = key[0].replace("_", " ")
    count = "multiple" if args.multiple else "single"
    if "any" in by_risk:
        recommendation, follow_up = by_risk["any"]
        risk_label = "low or high risk"
        if args.nodule_type != "solid" and args.risk is not None:
            notes.append("The patient's risk category does not change the subsolid-nodule recommendations.")
    elif args.risk is None:
        low, high = by_risk["low"], by_risk["high"]
        recommendation = f"Low risk: {low[0]} High risk: {high[0]}"
        follow_up = high[1]
        risk_label = "risk not stated"
        notes.append(
            "Patient risk was not given: both columns are shown; the follow-up list is the high-risk column."
        )
    else:
        recommendation, follow_up = by_risk[args.risk]
        risk_label = f"{args.risk} risk"
    if args.multiple:
        notes.append("Multiple nodules: management is guided by the most suspicious nodule described.")
    if args.nodule_type == "part_solid" and args.solid_component_mm is not None:
        notes.append(f"Solid component {args.solid_component_mm:g} mm.")
        if args.multiple and round_half_up(args.solid_component_mm or 0.0, 0) >= 6:
            notes.append(
                "A persistent solid component of 6 mm or more is highly suspicious (single part-solid rule)."
            )
    rule = f"{kind}, {count}, {band_label}, {risk_label}"
    notes.extend(_table_with_prior_notes(args))
    return FleischnerResult(
        applicable=True,
        recommendation=recommendation,
        follow_up=follow_up,
        rule=rule,
        size_mm_used=size,
        citation=_FLEISCHNER(section),
        notes=tuple(notes),
    )


def _kind(args: FleischnerArgs) -> str:
    return "solid" if args.nodule_type == "solid" else "subsolid"


def _with_prior(args: FleischnerArgs, size: int, notes: list[str]) -> FleischnerResult | None:
    """The result a comparison with a prior decides by itself (resolved, stable long enough, growing); None
    when the table decides (no prior, new, or stable for a shorter time)."""
    kind = args.nodule_type.replace("_", "-")
    if args.status == "resolved":
        return FleischnerResult(True, "No further imaging: the nodule has resolved.", (), f"{kind}, resolved",
                                size, _FLEISCHNER(_F_RESOLVED), tuple(notes))
    if args.status == "growing":
        text, steps = _GROWING[args.nodule_type]
        return FleischnerResult(True, text, steps, f"{kind}, growing since the prior CT", size,
                                _FLEISCHNER(_F_GROWING), tuple(notes))
    needed = STABLE_MONTHS_NEEDED[_kind(args)]
    if args.status == "stable" and args.stable_months is not None and args.stable_months >= needed:
        years = needed // 12
        what = "solid nodule" if _kind(args) == "solid" else f"{kind} nodule"
        return FleischnerResult(True, f"No further routine follow-up: a {what} unchanged for {years} years or more.",
                                (), f"{kind}, stable for {args.stable_months:g} months ({years} years or more)", size,
                                _FLEISCHNER(_F_STABLE[_kind(args)]), tuple(notes))
    return None


def _table_with_prior_notes(args: FleischnerArgs) -> list[str]:
    """What a prior adds to a table result: how long stability must still last; new nodules go by the table."""
    if args.status == "new":
        return ["A nodule first seen on follow-up is managed by the table for its type and size (see "
                f"'{_F_NEW}')."]
    if args.status != "stable":
        return []
    needed = STABLE_MONTHS_NEEDED[_kind(args)]
    what = "a solid nodule" if _kind(args) == "solid" else "a subsolid nodule"
    if args.stable_months is None:
        return [f"Stable, for how long not given: follow-up ends once {what} has been unchanged for {needed // 12} "
                f"years ('{_F_STABLE[_kind(args)]}')."]
    return [f"Stable for {args.stable_months:g} months: follow-up ends once {what} has been unchanged for "
            f"{needed // 12} years ({needed - args.stable_months:g} months more) ('{_F_STABLE[_kind(args)]}')."]


def citations() -> list[GuidelineCitation]:
    """Every corpus section this calculator can cite."""
    cites = [_FLEISCHNER(section) for section, _ in _FLEISCHNER_TABLE.values()]
    return cites + [_FLEISCHNER(_F_SCOPE), _FLEISCHNER(_F_PERIFISSURAL), _FLEISCHNER(_F_RESOLVED),
                    _FLEISCHNER(_F_GROWING), _FLEISCHNER(_F_NEW), *(_FLEISCHNER(v) for v in _F_STABLE.values())]
