"""Calculator tools: one per row of ``tools.calculators.CALCULATORS``, through one adapter.

The ledger item quotes the result's decisive fields (rule, category, recommendation ...) and keeps
the whole structured result in ``facts`` (``inputs`` and ``result``), which the answer renderer and
the contradiction check read.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from agent.evidence import Evidence, Ledger
from agent.toolbox.spec import ToolSpec
from tools.calculators import CALCULATORS, Calculator

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agent.toolbox.context import ToolContext

# result fields quoted for the model, in this order (the rest stays in the structured facts)
RESULT_KEYS = ("applicable", "eligible", "rule", "category", "label", "name", "descriptor",
               "likelihood_of_malignancy", "probability_of_malignancy", "recommendation", "management",
               "reasons", "notes")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


def _describe(key: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    return f"{key.replace('_', ' ')}: {value}"


def calculator_quote(data: dict[str, Any]) -> str:
    """The quoted line of a calculator result (an applicable result does not say "applicable: True")."""
    return "; ".join(_describe(k, data[k]) for k in RESULT_KEYS
                     if data.get(k) not in (None, "", [], ()) and not (k == "applicable" and data[k] is True))


def _runner(calc: Calculator):
    def run(args: BaseModel, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        result = calc.function(args)
        data = _jsonable(dataclasses.asdict(result))  # frozen dataclasses, by the CalculatorResult protocol
        cite = result.citation
        quote = calculator_quote(data)
        return [ledger.add("calculator", calc.name, cite.organisation or calc.guideline, title=cite.title,
                           quote=quote or json.dumps(data, default=str)[:600], section=cite.section,
                           url=cite.url, year=cite.year,
                           facts={"inputs": args.model_dump(mode="json"),
                                  "result": {k: v for k, v in data.items() if k not in ("citation", "disclaimer")}})]
    return run


def calculator_spec(calc: Calculator) -> ToolSpec:
    """The tool for one calculator: its description is the first paragraph of the rule's docstring."""
    doc = (calc.function.__doc__ or calc.name).strip().split("\n\n")[0]
    return ToolSpec(calc.name, " ".join(doc.split())[:300], calc.args_model, _runner(calc),
                    audit_action="calculate", returns="calculator")


CALCULATOR_SPECS: tuple[ToolSpec, ...] = tuple(calculator_spec(c) for c in CALCULATORS)
CALCULATOR_NAMES: frozenset[str] = frozenset(c.name for c in CALCULATORS)
