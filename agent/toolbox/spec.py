"""One tool the agent may call, declared once: name, argument model, description, audit action, what it returns.

A :class:`ToolSpec` validates the model's arguments against its pydantic model (whose compact JSON
schema is what the model sees), runs a pure adapter over the tool in ``tools/`` or ``knowledge/``, and
checks that the evidence it adds is of the kind it declared. :class:`ToolRegistry` holds the specs by
name and rejects duplicates and malformed entries when it is built (at import of the registry).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from agent.evidence import EVIDENCE_KINDS, Evidence, Ledger
from agent.llm.base import ToolSchema
from tools.errors import (
    RadconsultError,
    ToolArgumentError,
    ToolExecutionError,
    UnknownNameError,
    validation_problems,
)

if TYPE_CHECKING:
    from agent.toolbox.context import ToolContext

AuditAction = Literal["inspect", "classify", "search", "calculate"]
AUDIT_ACTIONS: tuple[str, ...] = ("inspect", "classify", "search", "calculate")
RunFn = Callable[[Any, "ToolContext", Ledger], list[Evidence]]
_NAME = re.compile(r"^[a-z][a-z0-9_]{2,47}$")
_PROMPT_DROP = {"exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum", "minLength", "maxLength"}


def compact_schema(model: type[BaseModel], description_chars: int = 48) -> dict[str, Any]:
    """The model's JSON schema made small for a prompt: no titles, ``X | None`` as plain ``X``, null
    defaults dropped, descriptions cut to their first clause. Validation still uses the full model."""
    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            variants = obj.get("anyOf")
            if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
                other = next(v for v in variants if v != {"type": "null"})
                obj = {**{k: v for k, v in obj.items() if k != "anyOf"}, **other}
            out = {}
            for k, v in obj.items():
                if (k == "title" and isinstance(v, str)) or k in _PROMPT_DROP:
                    continue
                if k == "default" and v is None:
                    continue
                if k == "description" and isinstance(v, str):
                    v = v.split(". ")[0].split("; ")[0].rstrip(".")
                    v = v if len(v) <= description_chars else v[: description_chars].rsplit(" ", 1)[0] + "..."
                out[k] = strip(v)
            return out
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    schema = strip(model.model_json_schema())
    schema.pop("description", None)
    return schema


@dataclass(frozen=True)
class ToolSpec:
    """A tool declaration. ``run`` adds evidence of kind ``returns`` to the ledger and returns the items."""

    name: str
    description: str
    args_model: type[BaseModel]
    run_fn: RunFn = field(repr=False)
    audit_action: AuditAction
    returns: str

    def check_declaration(self) -> None:
        """Raise ValueError when the declaration is malformed (checked when the registry is built)."""
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be 3-48 characters of a-z, 0-9 and _")
        if not (isinstance(self.args_model, type) and issubclass(self.args_model, BaseModel)):
            raise ValueError(f"tool {self.name}: args_model must be a pydantic model")
        if self.args_model.model_config.get("extra") != "forbid":
            raise ValueError(f"tool {self.name}: args_model must forbid extra arguments")
        if not self.description.strip() or len(self.description) > 300:
            raise ValueError(f"tool {self.name}: the description must be 1-300 characters")
        if self.audit_action not in AUDIT_ACTIONS:
            raise ValueError(f"tool {self.name}: audit_action must be one of {', '.join(AUDIT_ACTIONS)}")
        if self.returns not in EVIDENCE_KINDS:
            raise ValueError(f"tool {self.name}: returns must be an evidence kind ({', '.join(EVIDENCE_KINDS)})")
        if not callable(self.run_fn):
            raise ValueError(f"tool {self.name}: run_fn must be callable")

    def schema(self) -> ToolSchema:
        return ToolSchema(self.name, self.description, compact_schema(self.args_model), check=self.check)

    def check(self, arguments: dict[str, Any]) -> str | None:
        """The validation error message for ``arguments``, or None when they are valid."""
        try:
            self.validate(arguments)
        except ToolArgumentError as exc:
            return str(exc)
        return None

    def validate(self, arguments: dict[str, Any]) -> BaseModel:
        """The validated arguments. Optional fields that small models fill with placeholders (null, "",
        0 where 0 is not allowed) are dropped before a second try; anything else is an error. A null, "" or 0
        in an optional field whose default is "unknown" (None) means "not given" and is dropped first."""
        fields = self.args_model.model_fields
        arguments = {k: v for k, v in arguments.items()
                     if not (k in fields and fields[k].default is None and not fields[k].is_required()
                             and (v is None or v == "" or (v == 0 and not isinstance(v, bool))))}
        try:
            return self.args_model.model_validate(arguments)
        except ValidationError as first:
            bad = {str(e["loc"][0]) for e in first.errors() if e["loc"]}
            optional = {k for k in bad if k in fields and not fields[k].is_required()
                        and arguments.get(k) in (None, "", 0, "null", "none", "None")}
            exc = first
            if optional and optional == bad:
                try:
                    return self.args_model.model_validate({k: v for k, v in arguments.items() if k not in optional})
                except ValidationError as second:
                    exc = second
            raise ToolArgumentError(f"{self.name}: invalid arguments ({validation_problems(exc)})") from None

    def run(self, arguments: dict[str, Any], ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        """Validate and run. Raises ToolArgumentError or ToolExecutionError, never returns an error as a result."""
        args = self.validate(arguments)
        try:
            items = self.run_fn(args, ctx, ledger)
        except (ToolArgumentError, ToolExecutionError):
            raise
        except RadconsultError as exc:
            raise ToolExecutionError(f"{self.name} failed: {exc}") from None
        except ValidationError as exc:
            raise ToolArgumentError(f"{self.name}: {validation_problems(exc)}") from None
        wrong = [e.kind for e in items if e.kind != self.returns]
        if wrong:  # a declaration bug, not the user's problem: fail loudly in tests
            raise ToolExecutionError(f"{self.name} returned {', '.join(wrong)} evidence, declared {self.returns}")
        return items

    def as_langchain(self, ctx: ToolContext, ledger: Ledger) -> Any:
        """The same tool as a LangChain ``StructuredTool`` (content and the evidence as its artifact)."""
        from langchain_core.tools import StructuredTool

        def _call(**kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
            items = self.run(kwargs, ctx, ledger)
            return "\n\n".join(e.prompt_block() for e in items), [e.to_dict() for e in items]

        return StructuredTool.from_function(func=_call, name=self.name, description=self.description,
                                            args_schema=self.args_model, response_format="content_and_artifact")


class ToolRegistry:
    """Tool specs by name, in declaration order (the order the model sees them)."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec) -> None:
        spec.check_declaration()
        if spec.name in self._specs:
            raise ValueError(f"tool {spec.name!r} is declared twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ToolSpec:
        if name in self._specs:
            return self._specs[name]
        near = difflib.get_close_matches(name, list(self._specs), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise UnknownNameError(f"unknown tool {name!r} (available: {', '.join(self._specs)}){hint}")

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)
