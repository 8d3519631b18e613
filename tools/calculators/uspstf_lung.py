"""USPSTF 2021: lung cancer screening eligibility (annual LDCT at 50-80 years, >= 20 pack-years)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.calculators.common import DISCLAIMER, GuidelineCitation, citer, normalise

_USPSTF_LUNG = citer(
    "uspstf-2021-lung-cancer-screening.md",
    "USPSTF 2021: screening for lung cancer",
    "US Preventive Services Task Force",
    2021,
    "https://doi.org/10.1001/jama.2021.1117",
)


class LungScreeningArgs(BaseModel):
    """Smoking and age history for USPSTF 2021 lung cancer screening eligibility."""

    model_config = ConfigDict(extra="forbid")

    age_years: int | None = Field(default=None, ge=0, le=130, description="Age in years.")
    pack_years: float | None = Field(default=None, ge=0, le=300,
                                     description="Packs per day multiplied by years smoked.")
    smoking_status: Literal["current", "former", "never"] | None = Field(
        default=None, description="current, former or never.")
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
        key = normalise(value)
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
        # a criterion that alone rules screening out decides the verdict: the rest need not be known
        decided = bool(_reasons(self))
        for name in ("age_years", "pack_years", "smoking_status"):
            if getattr(self, name) is None and not decided:
                raise ValueError(f"{name} is needed (no other criterion decides eligibility)")
        if self.smoking_status == "former" and self.years_since_quit is None and not decided:
            raise ValueError("a former smoker needs years_since_quit")
        if self.smoking_status != "former" and self.years_since_quit is not None:
            raise ValueError("years_since_quit applies only to former smokers")
        if self.smoking_status == "never" and (self.pack_years or 0) > 0:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reasons(args: LungScreeningArgs) -> list[str]:
    """Each criterion the patient fails, among those known (an unknown one is not counted)."""
    reasons: list[str] = []
    if args.age_years is not None and not 50 <= args.age_years <= 80:
        reasons.append(f"age {args.age_years} is outside 50-80 years")
    if args.pack_years is not None and args.pack_years < 20 and args.smoking_status != "never":
        reasons.append(f"fewer than 20 pack-years ({args.pack_years:g})")
    if args.smoking_status == "never":
        reasons.append("never smoked")
    if args.smoking_status == "former" and (args.years_since_quit or 0) >= 15:
        reasons.append(f"quit {args.years_since_quit:g} years ago (15 years or more)")
    if args.limited_life_expectancy_or_unfit_for_surgery:
        reasons.append(
            "a health problem limits life expectancy or ability/willingness to have curative surgery"
        )
    return reasons


def uspstf_lung_screening(args: LungScreeningArgs) -> LungScreeningResult:
    """Lung cancer screening eligibility (USPSTF 2021, grade B: annual LDCT at 50-80 years with >= 20 pack-years,
    currently smoking or quit within 15 years)."""
    reasons = _reasons(args)
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


def citations() -> list[GuidelineCitation]:
    """Every corpus section this calculator can cite."""
    return [_USPSTF_LUNG(s) for s in ("Recommendation", "Eligibility criteria", "When to stop screening")]
