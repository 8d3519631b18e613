"""Deterministic guideline calculators: Fleischner 2017, Lung-RADS v2022, BI-RADS 5th edition, USPSTF.

Pure functions, no LLM and no I/O: each takes a validated pydantic argument model and returns a
frozen dataclass that carries the recommendation, the table cell (``rule``) it came from and a
:class:`GuidelineCitation` to the bundled knowledge-base section holding that rule
(``knowledge/corpus/guidelines/<source>``, section path = ``##`` and ``###`` headings joined with
``" > "``). The tests check that every cited section exists in the corpus. One module per guideline;
:data:`CALCULATORS` is the one table that declares them (the agent registers its tools from it).

Results are decision support for a clinician, never a diagnosis. Arguments that do not fit the schema
raise :class:`pydantic.ValidationError` (model construction) or, through :func:`run_calculator`,
:class:`tools.errors.ToolArgumentError` with a readable message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from tools.calculators import birads, fleischner, lung_rads, uspstf_breast, uspstf_lung
from tools.calculators.birads import BiradsArgs, BiradsResult, birads_category
from tools.calculators.common import DISCLAIMER, FollowUp, GuidelineCitation
from tools.calculators.fleischner import FleischnerArgs, FleischnerResult, fleischner_followup
from tools.calculators.lung_rads import (
    LungRadsArgs,
    LungRadsMeaningArgs,
    LungRadsResult,
    lung_rads_category,
    lung_rads_meaning,
)
from tools.calculators.uspstf_breast import (
    BreastScreeningArgs,
    BreastScreeningResult,
    uspstf_breast_screening,
)
from tools.calculators.uspstf_lung import LungScreeningArgs, LungScreeningResult, uspstf_lung_screening
from tools.errors import ToolArgumentError, validation_problems

__all__ = [
    "CALCULATORS",
    "DISCLAIMER",
    "BiradsArgs",
    "BiradsResult",
    "BreastScreeningArgs",
    "BreastScreeningResult",
    "Calculator",
    "CalculatorResult",
    "FleischnerArgs",
    "FleischnerResult",
    "FollowUp",
    "GuidelineCitation",
    "LungRadsArgs",
    "LungRadsMeaningArgs",
    "LungRadsResult",
    "LungScreeningArgs",
    "LungScreeningResult",
    "all_citations",
    "birads_category",
    "fleischner_followup",
    "get_calculator",
    "lung_rads_category",
    "lung_rads_meaning",
    "run_calculator",
    "uspstf_breast_screening",
    "uspstf_lung_screening",
]


class CalculatorResult(Protocol):
    """What every calculator returns: a frozen dataclass with the guideline, its citation and a dict form."""

    @property
    def guideline(self) -> str: ...

    @property
    def citation(self) -> GuidelineCitation: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Calculator:
    """One row of the table: the tool name the agent uses, its argument model, the rule and its guideline.
    The rule's docstring (first paragraph) is its description."""

    name: str
    args_model: type[BaseModel]
    function: Callable[[Any], CalculatorResult]
    guideline: str


CALCULATORS: tuple[Calculator, ...] = (
    Calculator("fleischner_followup", FleischnerArgs, fleischner_followup, "Fleischner Society 2017"),
    Calculator("lung_rads_category", LungRadsArgs, lung_rads_category, "ACR Lung-RADS v2022"),
    Calculator("lung_rads_meaning", LungRadsMeaningArgs, lung_rads_meaning, "ACR Lung-RADS v2022"),
    Calculator("birads_category", BiradsArgs, birads_category, "ACR BI-RADS Atlas, 5th edition"),
    Calculator("uspstf_lung_screening", LungScreeningArgs, uspstf_lung_screening, "USPSTF 2021"),
    Calculator("uspstf_breast_screening", BreastScreeningArgs, uspstf_breast_screening, "USPSTF 2024"),
)


def get_calculator(name: str) -> Calculator:
    """The calculator called ``name``; ToolArgumentError naming the available ones otherwise."""
    for calc in CALCULATORS:
        if calc.name == name:
            return calc
    raise ToolArgumentError(f"unknown calculator {name!r}; available: {', '.join(c.name for c in CALCULATORS)}")


def run_calculator(name: str, arguments: dict[str, Any]) -> CalculatorResult:
    """Validate raw arguments (e.g. from an LLM tool call) and run the named calculator.

    Raises :class:`ToolArgumentError` for an unknown name or arguments that fail validation.
    """
    calc = get_calculator(name)
    try:
        args = calc.args_model.model_validate(arguments)
    except ValidationError as exc:
        raise ToolArgumentError(f"invalid arguments for {name}: {validation_problems(exc)}") from exc
    return calc.function(args)


def all_citations() -> list[GuidelineCitation]:
    """Every knowledge-base section the calculators can cite (the tests check each one exists)."""
    return [c for module in (fleischner, lung_rads, birads, uspstf_lung, uspstf_breast) for c in module.citations()]
