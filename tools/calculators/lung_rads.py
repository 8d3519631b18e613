"""ACR Lung-RADS v2022: category and management of a lung cancer screening CT.

The mean diameter is reported to one decimal place: inputs are rounded to 0.1 mm, halves up, and
compared with the table's thresholds (5.9 -> "< 6", 6.0 -> ">= 6").

``status`` comes from the words or from a measured comparison with the prior screen (:mod:`tools.comparison`:
growing is an increase in mean diameter of more than 1.5 mm within 12 months). A nodule that has resolved
since the prior screen leaves no nodule: category 1 when nothing else remains (our reading of the table,
whose category 1 is "no lung nodules"; the examination is otherwise categorised by its most suspicious
remaining finding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.calculators.common import (
    DISCLAIMER,
    NODULE_TYPE_ALIASES,
    GuidelineCitation,
    citer,
    normalise,
    round_half_up,
)
from tools.errors import ToolArgumentError

_LUNG_RADS = citer(
    "lung-rads-2022.md",
    "ACR Lung-RADS v2022",
    "American College of Radiology",
    2022,
    "https://www.acr.org/Clinical-Resources/Clinical-Tools-and-Reference/Reporting-and-Data-Systems/Lung-RADS",
)


_LR_TYPE_ALIASES = {
    **NODULE_TYPE_ALIASES,
    "juxtapleural": "juxtapleural",
    "perifissural": "juxtapleural",
    "juxta_pleural": "juxtapleural",
    "airway": "airway",
    "endobronchial": "airway",
    "endotracheal": "airway",
}
LungRadsCategory = Literal["0", "1", "2", "3", "4A", "4B", "4X"]

_LR_DESCRIPTOR = {
    "0": "Incomplete",
    "1": "Negative",
    "2": "Benign appearance or behaviour",
    "3": "Probably benign",
    "4A": "Suspicious",
    "4B": "Very suspicious",
    "4X": "Very suspicious (category 3 or 4 with additional suspicious features)",
}
_LR_MANAGEMENT = {
    "0": "Obtain the comparison or additional screening images; for a suspected infectious or inflammatory "
    "finding, LDCT in 1-3 months, then re-categorise by the most suspicious finding.",
    "1": "Continue annual screening with LDCT in 12 months.",
    "2": "Continue annual screening with LDCT in 12 months.",
    "3": "LDCT in 6 months.",
    "4A": "LDCT in 3 months; PET/CT may be considered if there is a solid nodule or solid component of 8 mm or larger.",
    "4B": "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a solid nodule or "
    "solid component of 8 mm or larger; tissue sampling and/or referral for further clinical evaluation, "
    "depending on the probability of malignancy, comorbidity and patient preference.",
}
_LR_MANAGEMENT["4X"] = _LR_MANAGEMENT["4B"]
_LR_MALIGNANCY = {"0": "not applicable (incomplete)", "1": "< 1%", "2": "< 1%", "3": "1-2%", "4A": "5-15%", "4B": "> 15%", "4X": "> 15%"}
_LR_SECTION = {
    "0": "Category 0: incomplete",
    "1": "Category 1: negative",
    "2": "Category 2: benign appearance or behaviour",
    "3": "Category 3: probably benign",
    "4A": "Category 4A: suspicious",
    "4B": "Category 4B: very suspicious",
    "4X": "Category 4X: category 3 or 4 with additional suspicious features",
}
# the S modifier, explained like a category (it is added to categories 0-4, never a category itself)
_S_MEANING = {"descriptor": "Significant other finding (modifier S, added to categories 0-4)",
              "management": "As appropriate to the specific finding: clinically significant or potentially "
                            "significant findings unrelated to lung cancer (for example coronary artery "
                            "calcification, emphysema, an aortic aneurysm or a suspicious mass in another organ).",
              "malignancy": "not applicable (a finding unrelated to lung cancer)"}
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
    status: Literal["baseline", "new", "growing", "slowly_growing", "stable", "resolved"] = Field(
        default="baseline",
        description=(
            "baseline (first screen), new (not on prior screen), growing (> 1.5 mm increase in mean diameter "
            "within 12 months), slowly_growing (enlarging over several screens below that rate), stable, "
            "resolved (gone since the prior screen)."
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
        key = normalise(value)
        if isinstance(key, str) and key in _LR_TYPE_ALIASES:
            return _LR_TYPE_ALIASES[key]
        return value

    @field_validator("status", "airway_location", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        key = normalise(value)
        aliases = {
            "unchanged": "stable",
            "smaller": "stable",
            "enlarging": "growing",
            "gone": "resolved",
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
            assert self.size_mm is not None
            # a baseline or new part-solid nodule under 6 mm is categorised by its total size alone
            small = self.size_mm < 6 and self.status in ("baseline", "new")
            if self.solid_component_mm is None and not small:
                raise ValueError(
                    "a part_solid nodule needs solid_component_mm (mean diameter of its solid part)"
                )
            if self.solid_component_mm is not None and self.solid_component_mm >= self.size_mm:
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

    def to_dict(self) -> dict[str, Any]:
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


def _airway_rule(args: LungRadsArgs, notes: list[str]) -> tuple[str, str, str]:
    status = args.status
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
    return category, rule, _lr_section(category, "airway")


def _non_solid_rule(size: float, status: str, notes: list[str]) -> tuple[str, str, str]:
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
    return category, rule, _lr_section(category, "ground_glass")


def _solid_rule_cell(args: LungRadsArgs, size: float, solid: float | None,
                     notes: list[str]) -> tuple[str, str, str]:
    """Solid, part-solid and juxtapleural nodules (a juxtapleural one without the category-2 criteria is
    categorised as solid)."""
    kind, status = args.nodule_type, args.status
    if kind == "juxtapleural":
        if args.typical_morphology and size < 10 and status in ("baseline", "new", "stable"):
            return "2", f"juxtapleural, typical morphology, {status}, < 10 mm", _lr_section("2", "juxtapleural")
        notes.append(
            "Juxtapleural nodule without all category-2 criteria (typical morphology, < 10 mm, baseline or "
            "new): categorised as a solid nodule."
        )
        kind = "solid"
    if status == "slowly_growing":
        return "4B", f"{kind.replace('_', '-')}, slowly growing over several screening examinations", _LR_GROWTH
    if status == "stable":
        return _stepped(args.prior_category, kind)
    if kind == "solid":
        category, rule = _solid_rule(size, status)
        return category, rule, _lr_section(category, "solid")
    category, rule = _part_solid_rule(size, solid if solid is not None else 0.0, status)  # < 6 mm: total decides
    if solid is not None:
        notes.append(f"Solid component {solid:g} mm.")
    return category, rule, _lr_section(category, "part_solid")


def _modifiers(args: LungRadsArgs, category: str, rule: str, section: str,
               notes: list[str]) -> tuple[str, str, str]:
    """Upgrade to 4X for suspicious features; the notes on growth, the S modifier and negative screens."""
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
    if args.status == "growing":
        notes.append("Growth means an increase in mean diameter of more than 1.5 mm within 12 months.")
    if args.significant_other_finding:
        notes.append(f"S modifier: see '{_LR_S}'; manage the other finding as appropriate.")
    if category in ("1", "2"):
        notes.append("Categories 1 and 2 are negative screens; 3 and 4 are positive screens.")
    return category, rule, section


def lung_rads_category(args: LungRadsArgs) -> LungRadsResult:
    """ACR Lung-RADS v2022 category and management for one screening-CT nodule.

    Sizes are rounded to 0.1 mm (halves up) before the thresholds are applied. Combinations the
    table does not define raise :class:`ToolArgumentError` naming what is missing.
    """
    size = round_half_up(args.size_mm, 1) if args.size_mm is not None else None
    solid = round_half_up(args.solid_component_mm, 1) if args.solid_component_mm is not None else None
    notes: list[str] = []
    if args.size_mm is not None and size != args.size_mm:
        notes.append(f"Mean diameter {args.size_mm:g} mm rounded to {size:g} mm (one decimal place).")
    kind = args.nodule_type
    if args.status == "resolved":
        category, rule, section = "1", "nodule resolved since the prior screen: no nodule remains", _LR_SECTION["1"]
        notes.append("Category 1 only when no other nodule or finding remains; otherwise the examination is "
                     "categorised by its most suspicious remaining finding.")
    elif args.benign_features and kind in ("solid", "part_solid", "juxtapleural", "ground_glass"):
        category, rule, section = "1", "nodule with benign calcification or fat", _LR_SECTION["1"]
    elif kind == "airway":
        category, rule, section = _airway_rule(args, notes)
    elif kind == "ground_glass":
        assert size is not None
        category, rule, section = _non_solid_rule(size, args.status, notes)
    else:
        assert size is not None
        category, rule, section = _solid_rule_cell(args, size, solid, notes)
    if args.prior_category is not None and args.status != "stable":
        notes.append("prior_category is only used for status 'stable' (stepped management); ignored.")
    category, rule, section = _modifiers(args, category, rule, section, notes)
    return LungRadsResult(
        category=category,
        label=category + ("S" if args.significant_other_finding else ""),
        descriptor=_LR_DESCRIPTOR[category],
        management=_LR_MANAGEMENT[category],
        probability_of_malignancy=_LR_MALIGNANCY[category],
        rule=rule,
        size_mm_used=size,
        solid_component_mm_used=solid,
        citation=_LUNG_RADS(section),
        notes=tuple(notes),
        s_modifier=args.significant_other_finding,
    )


class LungRadsMeaningArgs(BaseModel):
    """A Lung-RADS v2022 category to explain (accepts '4a', 'Lung-RADS 4B', 3 ...)."""

    model_config = ConfigDict(extra="forbid")

    category: Literal["0", "1", "2", "3", "4A", "4B", "4X", "S"] = Field(
        description="Lung-RADS category: 0, 1, 2, 3, 4A, 4B or 4X (or S, the significant-other-finding modifier).")

    @field_validator("category", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            text = value.strip().upper().replace("LUNG-RADS", "").replace("LUNGRADS", "").replace("CATEGORY", "")
            return text.replace(" ", "").replace(":", "")
        return value


def lung_rads_meaning(args: LungRadsMeaningArgs) -> LungRadsResult:
    """Meaning, probability of malignancy and management of a Lung-RADS v2022 category.

    Category 1 is also the category of a screening CT without lung nodules (or with only benign-pattern
    calcified or fat-containing nodules).
    """
    c = args.category
    if c == "S":
        return LungRadsResult(category="S", label="S", descriptor=_S_MEANING["descriptor"],
                              management=_S_MEANING["management"], probability_of_malignancy=_S_MEANING["malignancy"],
                              rule="modifier S: significant other finding", size_mm_used=None,
                              solid_component_mm_used=None, citation=_LUNG_RADS(_LR_S), notes=(),
                              s_modifier=True)
    notes = ["Categories 1 and 2 are negative screens; 3 and 4 are positive screens."] if c in ("1", "2", "3", "4A",
                                                                                               "4B", "4X") else []
    return LungRadsResult(category=c, label=c, descriptor=_LR_DESCRIPTOR[c], management=_LR_MANAGEMENT[c],
                          probability_of_malignancy=_LR_MALIGNANCY[c], rule=f"category {c}: {_LR_DESCRIPTOR[c].lower()}",
                          size_mm_used=None, solid_component_mm_used=None, citation=_LUNG_RADS(_LR_SECTION[c]),
                          notes=tuple(notes))


# (category, type) pairs for which the v2022 table has no entry (so no section exists)
_LR_NOT_IN_TABLE = {
    _lr_section("3", "juxtapleural"),
    _lr_section("3", "airway"),
    _lr_section("4A", "juxtapleural"),
    _lr_section("4A", "ground_glass"),
    _lr_section("4B", "juxtapleural"),
    _lr_section("4B", "ground_glass"),
}


def citations() -> list[GuidelineCitation]:
    """Every corpus section this calculator can cite."""
    cites = [_LUNG_RADS(_lr_section(category, kind)) for category in ("2", "3", "4A", "4B")
             for kind in _LR_TYPE_HEADING]
    cites = [c for c in cites if c.section not in _LR_NOT_IN_TABLE]
    cites += [_LUNG_RADS(s) for s in _LR_SECTION.values()]
    return cites + [
        _LUNG_RADS(_LR_GROWTH),
        _LUNG_RADS(_LR_S),
        _LUNG_RADS(f"{_LR_SECTION['2']} > Stepped management to category 2"),
        _LUNG_RADS(f"{_LR_SECTION['3']} > Stepped management to category 3"),
    ]
