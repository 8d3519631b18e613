"""Deterministic guideline calculators: Fleischner 2017, Lung-RADS v2022, BI-RADS 5th edition.

Pure functions, no LLM and no I/O: each takes a validated pydantic argument model and returns
a frozen dataclass that carries the recommendation, the table cell (``rule``) it came from and
a :class:`GuidelineCitation` to the bundled knowledge-base section holding that rule
(``knowledge/corpus/guidelines/<source>``, section path = ``##`` and ``###`` headings joined
with ``" > "``). The tests check that every cited section exists in the corpus.

Measurement and rounding (documented, tested):

* Fleischner 2017: ``size_mm`` is the average of the long and short axes; it is rounded to the
  nearest whole millimetre, halves up (5.5 -> 6, 8.4 -> 8, 8.5 -> 9), as the guideline states.
  Bands on the rounded value: smaller than 6, 6 to 8 inclusive, larger than 8 (9 and above).
  So 5.4 mm is "< 6 mm" but 5.9 mm rounds to 6 and is "6-8 mm"; 8.1 mm rounds to 8 ("6-8 mm").
* Lung-RADS v2022: the mean diameter is reported to one decimal place; inputs are rounded to
  0.1 mm, halves up, and compared with the table's thresholds (5.9 -> "< 6", 6.0 -> ">= 6").

Results are decision support for a clinician, never a diagnosis. A tool call with arguments
that do not fit the schema raises :class:`pydantic.ValidationError` (model construction) or,
through :func:`run_calculator`, :class:`tools.errors.ToolArgumentError` with a readable message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tools.errors import ToolArgumentError

__all__ = [
    "BiradsArgs",
    "BiradsResult",
    "BreastScreeningArgs",
    "BreastScreeningResult",
    "CALCULATORS",
    "FleischnerArgs",
    "FleischnerResult",
    "FollowUp",
    "GuidelineCitation",
    "LungRadsArgs",
    "LungRadsResult",
    "LungScreeningArgs",
    "LungScreeningResult",
    "all_citations",
    "birads_category",
    "fleischner_followup",
    "lung_rads_category",
    "run_calculator",
    "uspstf_breast_screening",
    "uspstf_lung_screening",
]

DISCLAIMER = "Decision support from a deterministic guideline rule, not a diagnosis; a clinician decides."


# --- citations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuidelineCitation:
    """Where a rule comes from: corpus file and heading path, plus the guideline's identity."""

    source: str  # file name under knowledge/corpus/guidelines/
    section: str  # "## heading > ### heading"
    title: str
    organisation: str
    year: int
    url: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _citer(
    source: str, title: str, organisation: str, year: int, url: str
) -> Callable[[str], GuidelineCitation]:
    def cite(section: str) -> GuidelineCitation:
        return GuidelineCitation(source, section, title, organisation, year, url)

    return cite


_FLEISCHNER = _citer(
    "fleischner-2017.md",
    "Fleischner Society 2017 guidelines for management of incidental pulmonary nodules",
    "Fleischner Society",
    2017,
    "https://doi.org/10.1148/radiol.2017161659",
)
_LUNG_RADS = _citer(
    "lung-rads-2022.md",
    "ACR Lung-RADS v2022",
    "American College of Radiology",
    2022,
    "https://www.acr.org/Clinical-Resources/Clinical-Tools-and-Reference/Reporting-and-Data-Systems/Lung-RADS",
)
_BIRADS = _citer(
    "bi-rads-5th-edition.md",
    "ACR BI-RADS Atlas, 5th edition",
    "American College of Radiology",
    2013,
    "https://www.acr.org/Clinical-Resources/Clinical-Tools-and-Reference/Reporting-and-Data-Systems/Bi-Rads",
)
_USPSTF_LUNG = _citer(
    "uspstf-2021-lung-cancer-screening.md",
    "USPSTF 2021: screening for lung cancer",
    "US Preventive Services Task Force",
    2021,
    "https://doi.org/10.1001/jama.2021.1117",
)


def _round(value: float, places: int) -> float:
    """Round half up (not Python's bankers' rounding), via the decimal string to avoid 2.675 errors."""
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_").replace(" ", "_")
    return value


@dataclass(frozen=True)
class FollowUp:
    """One follow-up step. ``months`` is (earliest, latest) from the current examination, or None."""

    action: str  # "CT", "PET/CT", "tissue sampling", ...
    months: tuple[int, int] | None
    optional: bool  # the guideline says "consider" / "optional"
    text: str


# =================================================================================================
# Fleischner Society 2017
# =================================================================================================
_NODULE_TYPE_ALIASES = {
    "solid": "solid",
    "ground_glass": "ground_glass",
    "groundglass": "ground_glass",
    "ggn": "ground_glass",
    "ggo": "ground_glass",
    "pure_ground_glass": "ground_glass",
    "non_solid": "ground_glass",
    "nonsolid": "ground_glass",
    "part_solid": "part_solid",
    "partsolid": "part_solid",
    "partly_solid": "part_solid",
    "semi_solid": "part_solid",
    "semisolid": "part_solid",
}


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

    @field_validator("nodule_type", mode="before")
    @classmethod
    def _alias_type(cls, value: Any) -> Any:
        key = _normalise(value)
        if isinstance(key, str) and key in _NODULE_TYPE_ALIASES:
            return _NODULE_TYPE_ALIASES[key]
        return value

    @field_validator("risk", mode="before")
    @classmethod
    def _lower_risk(cls, value: Any) -> Any:
        key = _normalise(value)
        return None if key in ("", "unknown", "none") else key

    @model_validator(mode="after")
    def _check_components(self) -> FleischnerArgs:
        if self.nodule_type == "part_solid":
            if self.solid_component_mm is None:
                raise ValueError(
                    "a part_solid nodule needs solid_component_mm (size of its solid part in mm)"
                )
            if self.solid_component_mm >= self.size_mm:
                raise ValueError(
                    "solid_component_mm must be smaller than size_mm; a nodule that is solid throughout is 'solid'"
                )
        elif self.solid_component_mm is not None:
            raise ValueError(f"solid_component_mm applies only to part_solid nodules, not {self.nodule_type}")
        if self.typical_perifissural and self.nodule_type != "solid":
            raise ValueError("typical_perifissural applies only to solid nodules")
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

    def as_dict(self) -> dict[str, Any]:
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
    solid = int(_round(args.solid_component_mm or 0.0, 0))
    if solid < 6:
        return ("part_solid", False, ">=6/solid<6"), ">= 6 mm, solid component < 6 mm"
    return ("part_solid", False, ">=6/solid>=6"), "solid component >= 6 mm"


def fleischner_followup(args: FleischnerArgs) -> FleischnerResult:
    """Fleischner Society 2017 follow-up for an incidental pulmonary nodule on CT.

    Returns ``applicable=False`` (with the reason and a pointer to the right pathway) when the
    patient falls under the guideline's exclusions: age under 35, lung cancer screening, a
    known primary cancer, immunosuppression, or a lesion larger than 30 mm (a mass).
    """
    exclusions: list[str] = []
    if args.patient_age_years is not None and args.patient_age_years < 35:
        exclusions.append(f"the patient is younger than 35 years ({args.patient_age_years})")
    if args.lung_cancer_screening:
        exclusions.append("the nodule was found on lung cancer screening: use ACR Lung-RADS v2022")
    if args.known_primary_cancer:
        exclusions.append(
            "the patient has a known primary cancer: follow the oncological staging or surveillance plan"
        )
    if args.immunocompromised:
        exclusions.append("the patient is immunocompromised: infection is a more likely cause")
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

    size = int(_round(args.size_mm, 0))
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
    if args.nodule_type == "part_solid":
        notes.append(f"Solid component {args.solid_component_mm:g} mm.")
        if args.multiple and _round(args.solid_component_mm or 0.0, 0) >= 6:
            notes.append(
                "A persistent solid component of 6 mm or more is highly suspicious (single part-solid rule)."
            )
    return FleischnerResult(
        applicable=True,
        recommendation=recommendation,
        follow_up=follow_up,
        rule=f"{kind}, {count}, {band_label}, {risk_label}",
        size_mm_used=size,
        citation=_FLEISCHNER(section),
        notes=tuple(notes),
    )


# =================================================================================================
# ACR Lung-RADS v2022
# =================================================================================================
_LR_TYPE_ALIASES = {
    **_NODULE_TYPE_ALIASES,
    "juxtapleural": "juxtapleural",
    "perifissural": "juxtapleural",
    "juxta_pleural": "juxtapleural",
    "airway": "airway",
    "endobronchial": "airway",
    "endotracheal": "airway",
}
LungRadsCategory = Literal["0", "1", "2", "3", "4A", "4B", "4X"]

_LR_DESCRIPTOR = {
    "1": "Negative",
    "2": "Benign appearance or behaviour",
    "3": "Probably benign",
    "4A": "Suspicious",
    "4B": "Very suspicious",
    "4X": "Very suspicious (category 3 or 4 with additional suspicious features)",
}
_LR_MANAGEMENT = {
    "1": "Continue annual screening with LDCT in 12 months.",
    "2": "Continue annual screening with LDCT in 12 months.",
    "3": "LDCT in 6 months.",
    "4A": "LDCT in 3 months; PET/CT may be considered if there is a solid nodule or solid component of 8 mm or larger.",
    "4B": "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a solid nodule or "
    "solid component of 8 mm or larger; tissue sampling and/or referral for further clinical evaluation, "
    "depending on the probability of malignancy, comorbidity and patient preference.",
}
_LR_MANAGEMENT["4X"] = _LR_MANAGEMENT["4B"]
_LR_MALIGNANCY = {"1": "< 1%", "2": "< 1%", "3": "1-2%", "4A": "5-15%", "4B": "> 15%", "4X": "> 15%"}
_LR_SECTION = {
    "1": "Category 1: negative",
    "2": "Category 2: benign appearance or behaviour",
    "3": "Category 3: probably benign",
    "4A": "Category 4A: suspicious",
    "4B": "Category 4B: very suspicious",
    "4X": "Category 4X: category 3 or 4 with additional suspicious features",
}
_LR_TYPE_HEADING = {
    "solid": "Solid nodules",
    "part_solid": "Part-solid nodules",
    "ground_glass": "Non-solid nodules",
    "juxtapleural": "Juxtapleural nodules",
    "airway": "Airway nodules",
}
_LR_GROWTH = "Measurement, growth and definitions > Growth"
_LR_S = "Modifier S: significant other findings"


def _lr_section(category: str, nodule_type: str) -> str:
    return f"{_LR_SECTION[category]} > {_LR_TYPE_HEADING[nodule_type]} in category {category}"


class LungRadsArgs(BaseModel):
    """One nodule on a lung cancer screening low-dose CT, for the ACR Lung-RADS v2022 table.

    Describe the most suspicious finding: the examination's category is driven by it.
    """

    model_config = ConfigDict(extra="forbid")

    nodule_type: Literal["solid", "part_solid", "ground_glass", "juxtapleural", "airway"] = Field(
        description="solid, part_solid, ground_glass (non-solid), juxtapleural (incl. perifissural) or airway."
    )
    size_mm: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description="Mean diameter (average of long and short axes) in mm; required except for airway nodules.",
    )
    solid_component_mm: float | None = Field(
        default=None, gt=0, le=300, description="Part-solid only: mean diameter of the solid component in mm."
    )
    status: Literal["baseline", "new", "growing", "slowly_growing", "stable"] = Field(
        default="baseline",
        description=(
            "baseline (first screen), new (not on prior screen), growing (> 1.5 mm increase in mean diameter "
            "within 12 months), slowly_growing (enlarging over several screens below that rate), stable."
        ),
    )
    prior_category: Literal["2", "3", "4A", "4B"] | None = Field(
        default=None,
        description="For status=stable (solid/part-solid): the category at the previous examination.",
    )
    airway_location: Literal["subsegmental", "segmental_or_proximal"] | None = Field(
        default=None, description="Airway nodules only: subsegmental, or segmental or more proximal."
    )
    typical_morphology: bool = Field(
        default=True,
        description="Juxtapleural only: solid, smooth margins, oval/lentiform/triangular shape.",
    )
    benign_features: bool = Field(
        default=False,
        description="Benign calcification (complete, central, popcorn, concentric rings) or fat in the nodule.",
    )
    suspicious_features: bool = Field(
        default=False,
        description="Additional features that raise suspicion (e.g. spiculation, enlarged nodes): category 4X.",
    )
    significant_other_finding: bool = Field(
        default=False, description="A clinically significant finding unrelated to lung cancer (S modifier)."
    )

    @field_validator("nodule_type", mode="before")
    @classmethod
    def _alias_type(cls, value: Any) -> Any:
        key = _normalise(value)
        if isinstance(key, str) and key in _LR_TYPE_ALIASES:
            return _LR_TYPE_ALIASES[key]
        return value

    @field_validator("status", "airway_location", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        key = _normalise(value)
        aliases = {
            "unchanged": "stable",
            "enlarging": "growing",
            "slow_growing": "slowly_growing",
            "segmental": "segmental_or_proximal",
            "central": "segmental_or_proximal",
            "proximal": "segmental_or_proximal",
        }
        return aliases.get(key, key) if isinstance(key, str) else key

    @field_validator("prior_category", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> LungRadsArgs:
        if self.nodule_type == "airway":
            if self.airway_location is None:
                raise ValueError(
                    "an airway nodule needs airway_location: subsegmental or segmental_or_proximal"
                )
        elif self.size_mm is None:
            raise ValueError(f"a {self.nodule_type} nodule needs size_mm (mean diameter in mm)")
        elif self.airway_location is not None:
            raise ValueError("airway_location applies only to airway nodules")
        if self.nodule_type == "part_solid":
            if self.solid_component_mm is None:
                raise ValueError(
                    "a part_solid nodule needs solid_component_mm (mean diameter of its solid part)"
                )
            assert self.size_mm is not None
            if self.solid_component_mm >= self.size_mm:
                raise ValueError(
                    "solid_component_mm must be smaller than size_mm; a nodule that is solid throughout is 'solid'"
                )
        elif self.solid_component_mm is not None:
            raise ValueError(f"solid_component_mm applies only to part_solid nodules, not {self.nodule_type}")
        return self


@dataclass(frozen=True)
class LungRadsResult:
    category: str  # "1", "2", "3", "4A", "4B", "4X"
    label: str  # category plus the S modifier when set, e.g. "4AS"
    descriptor: str
    management: str
    probability_of_malignancy: str
    rule: str
    size_mm_used: float | None
    solid_component_mm_used: float | None
    citation: GuidelineCitation
    notes: tuple[str, ...] = ()
    s_modifier: bool = False
    guideline: str = "ACR Lung-RADS v2022"
    disclaimer: str = DISCLAIMER

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _solid_rule(size: float, status: str) -> tuple[str, str]:
    """(category, rule) for a solid nodule of rounded mean diameter ``size`` (baseline/new/growing)."""
    if status == "baseline":
        if size < 6:
            return "2", "solid, baseline, < 6 mm"
        if size < 8:
            return "3", "solid, baseline, >= 6 to < 8 mm"
        if size < 15:
            return "4A", "solid, baseline, >= 8 to < 15 mm"
        return "4B", "solid, baseline, >= 15 mm"
    if status == "new":
        if size < 4:
            return "2", "solid, new, < 4 mm"
        if size < 6:
            return "3", "solid, new, 4 to < 6 mm"
        if size < 8:
            return "4A", "solid, new, 6 to < 8 mm"
        return "4B", "solid, new, >= 8 mm"
    # growing
    if size < 8:
        return "4A", "solid, growing, < 8 mm"
    return "4B", "solid, growing, >= 8 mm"


def _part_solid_rule(total: float, solid: float, status: str) -> tuple[str, str]:
    if status == "baseline":
        if total < 6:
            return "2", "part-solid, baseline, total < 6 mm"
        if solid < 6:
            return "3", "part-solid, baseline, total >= 6 mm with solid component < 6 mm"
        if solid < 8:
            return "4A", "part-solid, baseline, solid component >= 6 to < 8 mm"
        return "4B", "part-solid, baseline, solid component >= 8 mm"
    if status == "new" and total < 6:
        return "3", "part-solid, new, total < 6 mm"
    if solid < 4:
        return "4A", f"part-solid, {status}, solid component < 4 mm"
    return "4B", f"part-solid, {status}, solid component >= 4 mm"


def _stepped(prior: str | None, nodule_type: str) -> tuple[str, str, str]:
    """Stepped management for a stable solid or part-solid finding: (category, rule, section)."""
    if prior is None:
        raise ToolArgumentError(
            "status 'stable' for a solid or part-solid nodule needs prior_category (the Lung-RADS category at the "
            "previous examination: 2, 3, 4A or 4B) so that v2022 stepped management can be applied"
        )
    if prior == "2":
        return "2", f"{nodule_type}, stable, previously category 2", _lr_section("2", nodule_type)
    if prior == "3":
        return (
            "2",
            "stable category 3 finding at 6-month follow-up",
            f"{_LR_SECTION['2']} > Stepped management to category 2",
        )
    if prior == "4A":
        return (
            "3",
            "stable category 4A finding at 3-month follow-up",
            f"{_LR_SECTION['3']} > Stepped management to category 3",
        )
    return "4B", "category 4B finding unchanged: remains 4B until proven benign", _LR_SECTION["4B"]


def lung_rads_category(args: LungRadsArgs) -> LungRadsResult:
    """ACR Lung-RADS v2022 category and management for one screening-CT nodule.

    Sizes are rounded to 0.1 mm (halves up) before the thresholds are applied. Combinations the
    table does not define raise :class:`ToolArgumentError` naming what is missing.
    """
    size = _round(args.size_mm, 1) if args.size_mm is not None else None
    solid = _round(args.solid_component_mm, 1) if args.solid_component_mm is not None else None
    notes: list[str] = []
    if args.size_mm is not None and size != args.size_mm:
        notes.append(f"Mean diameter {args.size_mm:g} mm rounded to {size:g} mm (one decimal place).")
    kind = args.nodule_type
    status = args.status

    if args.benign_features and kind in ("solid", "part_solid", "juxtapleural", "ground_glass"):
        category, rule, section = "1", "nodule with benign calcification or fat", _LR_SECTION["1"]
    elif kind == "airway":
        if args.airway_location == "subsegmental":
            if status not in ("baseline", "new", "stable"):
                raise ToolArgumentError(
                    f"Lung-RADS v2022 has no rule for a {status} subsegmental airway nodule; it lists subsegmental "
                    "airway nodules at baseline, new or stable (category 2). Categorise by the reader's judgement."
                )
            category, rule = "2", f"airway, subsegmental, {status}"
        elif status in ("baseline", "new"):
            category, rule = "4A", f"airway, segmental or more proximal, {status}"
        else:
            category, rule = "4B", f"airway, segmental or more proximal, {status} at 3-month follow-up"
            if status == "slowly_growing":
                rule = "airway, segmental or more proximal, growing at follow-up"
            notes.append("Persistent proximal airway nodules are usually assessed with bronchoscopy.")
        section = _lr_section(category, "airway")
    elif kind == "ground_glass":
        assert size is not None
        if size < 30:
            category, rule = "2", f"non-solid, {status}, < 30 mm"
        elif status in ("stable", "slowly_growing"):
            category, rule = "2", f"non-solid, {status}, >= 30 mm"
        elif status in ("baseline", "new"):
            category, rule = "3", f"non-solid, {status}, >= 30 mm"
        else:
            category, rule = "3", "non-solid, growing, >= 30 mm"
            notes.append(
                "The v2022 table does not list a growing non-solid nodule of 30 mm or more explicitly; it is "
                "managed like a baseline or new one (category 3). Consider 4X if features raise suspicion."
            )
        section = _lr_section(category, "ground_glass")
    else:
        if kind == "juxtapleural":
            assert size is not None
            if args.typical_morphology and size < 10 and status in ("baseline", "new", "stable"):
                category, rule = "2", f"juxtapleural, typical morphology, {status}, < 10 mm"
                section = _lr_section("2", "juxtapleural")
                kind = ""  # done
            else:
                notes.append(
                    "Juxtapleural nodule without all category-2 criteria (typical morphology, < 10 mm, baseline or "
                    "new): categorised as a solid nodule."
                )
                kind = "solid"
        if kind == "solid" or kind == "part_solid":
            assert size is not None
            if status == "slowly_growing":
                category, rule, section = (
                    "4B",
                    f"{kind.replace('_', '-')}, slowly growing over several screening examinations",
                    _LR_GROWTH,
                )
            elif status == "stable":
                category, rule, section = _stepped(args.prior_category, kind)
            elif kind == "solid":
                category, rule = _solid_rule(size, status)
                section = _lr_section(category, "solid")
            else:
                assert solid is not None
                category, rule = _part_solid_rule(size, solid, status)
                section = _lr_section(category, "part_solid")
                notes.append(f"Solid component {solid:g} mm.")
    if args.prior_category is not None and status != "stable":
        notes.append("prior_category is only used for status 'stable' (stepped management); ignored.")

    if args.suspicious_features:
        if category in ("3", "4A", "4B"):
            notes.append(f"Category {category} finding with additional suspicious features: upgraded to 4X.")
            category, section = "4X", _LR_SECTION["4X"]
            rule = f"{rule}; additional suspicious features"
        else:
            notes.append(
                "Category 4X applies only to category 3 or 4 findings; the suspicious features were noted but the "
                "category is unchanged. Consider whether the finding needs diagnostic work-up."
            )
    if status == "growing":
        notes.append("Growth means an increase in mean diameter of more than 1.5 mm within 12 months.")
    if args.significant_other_finding:
        notes.append(f"S modifier: see '{_LR_S}'; manage the other finding as appropriate.")
    management = _LR_MANAGEMENT[category]
    if category == "1" or category == "2":
        notes.append("Categories 1 and 2 are negative screens; 3 and 4 are positive screens.")
    return LungRadsResult(
        category=category,
        label=category + ("S" if args.significant_other_finding else ""),
        descriptor=_LR_DESCRIPTOR[category],
        management=management,
        probability_of_malignancy=_LR_MALIGNANCY[category],
        rule=rule,
        size_mm_used=size,
        solid_component_mm_used=solid,
        citation=_LUNG_RADS(section),
        notes=tuple(notes),
        s_modifier=args.significant_other_finding,
    )


# =================================================================================================
# ACR BI-RADS 5th edition
# =================================================================================================
BiradsCategory = Literal["0", "1", "2", "3", "4", "4A", "4B", "4C", "5", "6"]


@dataclass(frozen=True)
class _BiradsRow:
    name: str
    likelihood: str
    malignancy_percent: tuple[float, float] | None  # (lower, upper) bounds in %, None when not applicable
    management: str
    heading: str


_BIRADS_TABLE: dict[str, _BiradsRow] = {
    "0": _BiradsRow(
        "Incomplete: need additional imaging evaluation and/or prior examinations for comparison",
        "not applicable",
        None,
        "Recall for additional imaging and/or comparison with prior examinations.",
        "Category 0: incomplete",
    ),
    "1": _BiradsRow("Negative", "essentially 0%", (0.0, 0.0), "Routine screening.", "Category 1: negative"),
    "2": _BiradsRow("Benign", "essentially 0%", (0.0, 0.0), "Routine screening.", "Category 2: benign"),
    "3": _BiradsRow(
        "Probably benign",
        "> 0% but <= 2%",
        (0.0, 2.0),
        "Short-interval (6-month) follow-up, then continued surveillance (typically 6, 12 and 24 months).",
        "Category 3: probably benign",
    ),
    "4": _BiradsRow(
        "Suspicious",
        "> 2% but < 95%",
        (2.0, 95.0),
        "Tissue diagnosis (usually image-guided core biopsy).",
        "Category 4: suspicious",
    ),
    "4A": _BiradsRow(
        "Low suspicion for malignancy",
        "> 2% to <= 10%",
        (2.0, 10.0),
        "Tissue diagnosis.",
        "Category 4A: low suspicion for malignancy",
    ),
    "4B": _BiradsRow(
        "Moderate suspicion for malignancy",
        "> 10% to <= 50%",
        (10.0, 50.0),
        "Tissue diagnosis.",
        "Category 4B: moderate suspicion for malignancy",
    ),
    "4C": _BiradsRow(
        "High suspicion for malignancy",
        "> 50% to < 95%",
        (50.0, 95.0),
        "Tissue diagnosis.",
        "Category 4C: high suspicion for malignancy",
    ),
    "5": _BiradsRow(
        "Highly suggestive of malignancy",
        ">= 95%",
        (95.0, 100.0),
        "Tissue diagnosis; a benign result is discordant and needs repeat sampling or excision.",
        "Category 5: highly suggestive of malignancy",
    ),
    "6": _BiradsRow(
        "Known biopsy-proven malignancy",
        "not applicable (malignancy proven)",
        None,
        "Surgical excision when clinically appropriate.",
        "Category 6: known biopsy-proven malignancy",
    ),
}
_B_CATEGORIES = "Assessment categories"


class BiradsArgs(BaseModel):
    """A BI-RADS final assessment category to explain (accepts '4a', 'BI-RADS 4B', 3, ...)."""

    model_config = ConfigDict(extra="forbid")

    category: BiradsCategory = Field(description="BI-RADS category: 0, 1, 2, 3, 4, 4A, 4B, 4C, 5 or 6.")
    modality: Literal["mammography", "ultrasound", "mri"] | None = Field(
        default=None, description="mammography, ultrasound or mri (MRI does not use 4A/4B/4C)."
    )

    @field_validator("category", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            text = value.strip().upper().replace("BI-RADS", "").replace("BIRADS", "").replace("CATEGORY", "")
            return text.replace(" ", "").replace(":", "")
        return value

    @field_validator("modality", mode="before")
    @classmethod
    def _modality(cls, value: Any) -> Any:
        key = _normalise(value)
        aliases = {
            "us": "ultrasound",
            "mg": "mammography",
            "mammogram": "mammography",
            "mr": "mri",
            "breast_mri": "mri",
            "sonography": "ultrasound",
        }
        return aliases.get(key, key) if isinstance(key, str) else key

    @model_validator(mode="after")
    def _mri(self) -> BiradsArgs:
        if self.modality == "mri" and self.category in ("4A", "4B", "4C"):
            raise ValueError("breast MRI does not use the 4A/4B/4C subdivisions; use category 4")
        return self


@dataclass(frozen=True)
class BiradsResult:
    category: str
    name: str
    likelihood_of_malignancy: str
    malignancy_percent: tuple[float, float] | None
    management: str
    citation: GuidelineCitation
    notes: tuple[str, ...] = ()
    guideline: str = "ACR BI-RADS Atlas, 5th edition"
    disclaimer: str = DISCLAIMER

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def birads_category(args: BiradsArgs) -> BiradsResult:
    """Meaning, likelihood of malignancy and management of a BI-RADS 5th edition category."""
    row = _BIRADS_TABLE[args.category]
    notes: list[str] = []
    if args.category == "4":
        notes.append("Category 4 may be subdivided into 4A, 4B and 4C for mammography and ultrasound.")
    if args.category == "0":
        notes.append("After a complete diagnostic work-up a final category (1 to 6) should be given.")
    if args.category == "3":
        notes.append(
            "Stability over 2-3 years allows downgrading to category 2; growth or new suspicious features "
            "should prompt biopsy."
        )
    return BiradsResult(
        category=args.category,
        name=row.name,
        likelihood_of_malignancy=row.likelihood,
        malignancy_percent=row.malignancy_percent,
        management=row.management,
        citation=_BIRADS(f"{_B_CATEGORIES} > {row.heading}"),
        notes=tuple(notes),
    )


# =================================================================================================
# USPSTF 2021 lung cancer screening eligibility
# =================================================================================================
class LungScreeningArgs(BaseModel):
    """Smoking and age history for USPSTF 2021 lung cancer screening eligibility."""

    model_config = ConfigDict(extra="forbid")

    age_years: int = Field(ge=0, le=130, description="Age in years.")
    pack_years: float = Field(ge=0, le=300, description="Packs per day multiplied by years smoked.")
    smoking_status: Literal["current", "former", "never"] = Field(description="current, former or never.")
    years_since_quit: float | None = Field(
        default=None, ge=0, le=130, description="Former smokers: years since quitting."
    )
    limited_life_expectancy_or_unfit_for_surgery: bool = Field(
        default=False,
        description="A health problem that substantially limits life expectancy or ability/willingness to have "
        "curative lung surgery.",
    )

    @field_validator("smoking_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        key = _normalise(value)
        aliases = {
            "smoker": "current",
            "current_smoker": "current",
            "ex": "former",
            "ex_smoker": "former",
            "former_smoker": "former",
            "quit": "former",
            "non_smoker": "never",
            "never_smoker": "never",
        }
        return aliases.get(key, key) if isinstance(key, str) else key

    @model_validator(mode="after")
    def _check(self) -> LungScreeningArgs:
        if self.smoking_status == "former" and self.years_since_quit is None:
            raise ValueError("a former smoker needs years_since_quit")
        if self.smoking_status != "former" and self.years_since_quit is not None:
            raise ValueError("years_since_quit applies only to former smokers")
        if self.smoking_status == "never" and self.pack_years > 0:
            raise ValueError("a never smoker cannot have pack_years above 0")
        return self


@dataclass(frozen=True)
class LungScreeningResult:
    eligible: bool
    recommendation: str
    reasons: tuple[str, ...]
    citation: GuidelineCitation
    guideline: str = "USPSTF 2021 lung cancer screening"
    disclaimer: str = DISCLAIMER

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def uspstf_lung_screening(args: LungScreeningArgs) -> LungScreeningResult:
    """Lung cancer screening eligibility (USPSTF 2021, grade B: annual LDCT at 50-80 years with >= 20 pack-years,
    currently smoking or quit within 15 years)."""
    reasons: list[str] = []
    if not 50 <= args.age_years <= 80:
        reasons.append(f"age {args.age_years} is outside 50-80 years")
    if args.pack_years < 20:
        reasons.append(f"{args.pack_years:g} pack-years is below 20")
    if args.smoking_status == "never":
        reasons.append("never smoked")
    if args.smoking_status == "former" and (args.years_since_quit or 0) >= 15:
        reasons.append(f"quit {args.years_since_quit:g} years ago (15 years or more)")
    if args.limited_life_expectancy_or_unfit_for_surgery:
        reasons.append(
            "a health problem limits life expectancy or ability/willingness to have curative surgery"
        )
    if reasons:
        stop = any("quit" in r or "health problem" in r for r in reasons)
        section = "When to stop screening" if stop else "Eligibility criteria"
        return LungScreeningResult(
            eligible=False,
            recommendation="Not eligible for lung cancer screening under USPSTF 2021: "
            + "; ".join(reasons)
            + ".",
            reasons=tuple(reasons),
            citation=_USPSTF_LUNG(section),
        )
    return LungScreeningResult(
        eligible=True,
        recommendation="Eligible: annual low-dose CT screening (USPSTF 2021, grade B), after shared "
        "decision-making; offer smoking cessation support to people who smoke.",
        reasons=("age 50-80", ">= 20 pack-years", "currently smokes or quit within 15 years"),
        citation=_USPSTF_LUNG("Recommendation"),
    )


# =================================================================================================
# USPSTF 2024 breast cancer screening
# =================================================================================================
_USPSTF_BREAST = _citer(
    "uspstf-2024-breast-cancer-screening.md",
    "USPSTF 2024: screening for breast cancer",
    "US Preventive Services Task Force",
    2024,
    "https://doi.org/10.1001/jama.2024.5534",
)


class BreastScreeningArgs(BaseModel):
    """A woman (or person assigned female at birth) considering screening mammography (USPSTF 2024)."""

    model_config = ConfigDict(extra="forbid")

    age_years: int = Field(ge=0, le=130, description="Age in years.")
    high_risk: bool = Field(
        default=False,
        description="Known high-risk mutation (e.g. BRCA1/2), high-dose chest radiation when young, prior breast "
        "cancer or a high-risk lesion on biopsy (the statement does not apply).",
    )
    dense_breasts: bool = Field(default=False, description="BI-RADS density c or d on mammography.")


@dataclass(frozen=True)
class BreastScreeningResult:
    applicable: bool
    recommendation: str
    grade: str | None  # "B", "I" or None when the statement does not cover the person
    citation: GuidelineCitation
    notes: tuple[str, ...] = ()
    guideline: str = "USPSTF 2024 breast cancer screening"
    disclaimer: str = DISCLAIMER

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def uspstf_breast_screening(args: BreastScreeningArgs) -> BreastScreeningResult:
    """Breast cancer screening recommendation (USPSTF 2024): biennial mammography at 40-74 (grade B);
    insufficient evidence at 75+ and for supplemental imaging of dense breasts (I statements)."""
    notes: list[str] = []
    if args.dense_breasts:
        notes.append(
            "Dense breasts: evidence is insufficient to assess supplemental screening with ultrasound or MRI "
            "(I statement); see 'Dense breasts and supplemental screening'."
        )
    if args.high_risk:
        return BreastScreeningResult(
            applicable=False,
            recommendation="The USPSTF 2024 statement does not apply to people at high risk (genetic mutation, "
            "chest radiation at a young age, prior breast cancer or high-risk lesion): use a high-risk pathway.",
            grade=None,
            citation=_USPSTF_BREAST("Population"),
            notes=tuple(notes),
        )
    if args.age_years < 40:
        return BreastScreeningResult(
            applicable=False,
            recommendation=f"At {args.age_years} years, average-risk screening mammography is not recommended by "
            "the USPSTF 2024 statement, which starts at age 40.",
            grade=None,
            citation=_USPSTF_BREAST("Recommendation for ages 40 to 74"),
            notes=tuple(notes),
        )
    if args.age_years <= 74:
        return BreastScreeningResult(
            applicable=True,
            recommendation="Biennial screening mammography (every other year) for ages 40 to 74 (grade B).",
            grade="B",
            citation=_USPSTF_BREAST("Recommendation for ages 40 to 74"),
            notes=tuple(notes),
        )
    return BreastScreeningResult(
        applicable=True,
        recommendation="At 75 years or older the evidence is insufficient to assess the balance of benefits and "
        "harms of screening mammography (I statement): decide individually.",
        grade="I",
        citation=_USPSTF_BREAST("Women aged 75 years or older"),
        notes=tuple(notes),
    )


# =================================================================================================
# registry
# =================================================================================================
CALCULATORS: dict[str, tuple[type[BaseModel], Callable[[Any], Any]]] = {
    "fleischner_followup": (FleischnerArgs, fleischner_followup),
    "lung_rads_category": (LungRadsArgs, lung_rads_category),
    "birads_category": (BiradsArgs, birads_category),
    "uspstf_lung_screening": (LungScreeningArgs, uspstf_lung_screening),
    "uspstf_breast_screening": (BreastScreeningArgs, uspstf_breast_screening),
}


def _format_validation_error(name: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "arguments"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return f"invalid arguments for {name}: " + "; ".join(parts)


def run_calculator(name: str, arguments: dict[str, Any]) -> Any:
    """Validate raw arguments (e.g. from an LLM tool call) and run the named calculator.

    Raises :class:`ToolArgumentError` for an unknown name or arguments that fail validation.
    """
    if name not in CALCULATORS:
        raise ToolArgumentError(f"unknown calculator {name!r}; available: {', '.join(sorted(CALCULATORS))}")
    model, function = CALCULATORS[name]
    try:
        args = model.model_validate(arguments)
    except ValidationError as exc:
        raise ToolArgumentError(_format_validation_error(name, exc)) from exc
    return function(args)


def all_citations() -> list[GuidelineCitation]:
    """Every knowledge-base section the calculators can cite (the tests check each one exists)."""
    cites = [_FLEISCHNER(section) for section, _ in _FLEISCHNER_TABLE.values()]
    cites += [_FLEISCHNER(_F_SCOPE), _FLEISCHNER(_F_PERIFISSURAL)]
    for category in ("2", "3", "4A", "4B"):
        for kind in _LR_TYPE_HEADING:
            cites.append(_LUNG_RADS(_lr_section(category, kind)))
    cites = [c for c in cites if c.section not in _LR_NOT_IN_TABLE]
    cites += [_LUNG_RADS(s) for s in _LR_SECTION.values()]
    cites += [
        _LUNG_RADS(_LR_GROWTH),
        _LUNG_RADS(_LR_S),
        _LUNG_RADS(f"{_LR_SECTION['2']} > Stepped management to category 2"),
        _LUNG_RADS(f"{_LR_SECTION['3']} > Stepped management to category 3"),
    ]
    cites += [_BIRADS(f"{_B_CATEGORIES} > {row.heading}") for row in _BIRADS_TABLE.values()]
    cites += [_USPSTF_LUNG(s) for s in ("Recommendation", "Eligibility criteria", "When to stop screening")]
    cites += [
        _USPSTF_BREAST(s)
        for s in ("Population", "Recommendation for ages 40 to 74", "Women aged 75 years or older")
    ]
    cites.append(_USPSTF_BREAST("Dense breasts and supplemental screening"))
    return cites


# (category, type) pairs for which the v2022 table has no entry (so no section exists)
_LR_NOT_IN_TABLE = {
    _lr_section("3", "juxtapleural"),
    _lr_section("3", "airway"),
    _lr_section("4A", "juxtapleural"),
    _lr_section("4A", "ground_glass"),
    _lr_section("4B", "juxtapleural"),
    _lr_section("4B", "ground_glass"),
}
