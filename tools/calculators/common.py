"""What every guideline calculator shares: citations of the bundled corpus, rounding, follow-up steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tools.disclaimer import DISCLAIMER
from tools.vocabulary.clinical import NODULE_TYPE_ALIASES  # the one table of nodule-type words

__all__ = ["DISCLAIMER", "FollowUp", "GuidelineCitation", "NODULE_TYPE_ALIASES", "citer", "normalise", "round_half_up"]


@dataclass(frozen=True)
class GuidelineCitation:
    """Where a rule comes from: corpus file and heading path, plus the guideline's identity."""

    source: str  # file name under knowledge/corpus/guidelines/
    section: str  # "## heading > ### heading"
    title: str
    organisation: str
    year: int
    url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def citer(
    source: str, title: str, organisation: str, year: int, url: str
) -> Callable[[str], GuidelineCitation]:
    def cite(section: str) -> GuidelineCitation:
        return GuidelineCitation(source, section, title, organisation, year, url)

    return cite


def round_half_up(value: float, places: int) -> float:
    """Round half up (not Python's bankers' rounding), via the decimal string to avoid 2.675 errors."""
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def normalise(value: Any) -> Any:
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


