"""ACR BI-RADS Atlas, 5th edition: meaning, likelihood of malignancy and management of a category."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.calculators.common import DISCLAIMER, GuidelineCitation, citer, normalise

_BIRADS = citer(
    "bi-rads-5th-edition.md",
    "ACR BI-RADS Atlas, 5th edition",
    "American College of Radiology",
    2013,
    "https://www.acr.org/Clinical-Resources/Clinical-Tools-and-Reference/Reporting-and-Data-Systems/Bi-Rads",
)


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
        key = normalise(value)
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

    def to_dict(self) -> dict[str, Any]:
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


def citations() -> list[GuidelineCitation]:
    """Every corpus section this calculator can cite."""
    return [_BIRADS(f"{_B_CATEGORIES} > {row.heading}") for row in _BIRADS_TABLE.values()]
