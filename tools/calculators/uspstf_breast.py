"""USPSTF 2024: breast cancer screening (biennial mammography at 40-74 years, grade B)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.calculators.common import DISCLAIMER, GuidelineCitation, citer

_USPSTF_BREAST = citer(
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

    def to_dict(self) -> dict[str, Any]:
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


def citations() -> list[GuidelineCitation]:
    """Every corpus section this calculator can cite."""
    return [_USPSTF_BREAST(s) for s in ("Population", "Recommendation for ages 40 to 74",
                                         "Women aged 75 years or older", "Dense breasts and supplemental screening")]
