"""Thin adapters between the agent and the pure tools: argument models, execution, evidence.

Each :class:`AgentTool` has a pydantic argument model (its JSON schema is what the model sees), and a
``run(args, ctx)`` that calls the pure function and turns its typed result into ledger evidence.
``as_langchain(ctx)`` exposes the same tool as a LangChain ``StructuredTool`` for other runtimes.

The case's patient key and the attached studies come from :class:`ToolContext`, never from the
model: ``search_prior_reports`` has no patient argument, so a model (or an instruction injected
into data) cannot choose another patient.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.evidence import Evidence, Ledger
from agent.llm.base import ToolSchema
from tools.errors import RadconsultError, ToolArgumentError, ToolExecutionError

if TYPE_CHECKING:
    from agent.settings import Settings
    from knowledge.base import KnowledgeBase
    from tools.imaging import ImageStudy

log = logging.getLogger(__name__)


@dataclass
class AttachedStudy:
    """A study attached to the case: ``ref`` is what the model uses (S1, S2 ...)."""

    ref: str
    study: ImageStudy | None
    label: str = ""          # a display name without identifiers (file stem is not used: it may hold a name)


@dataclass
class ToolContext:
    settings: Settings
    studies: list[AttachedStudy] = field(default_factory=list)
    patient_key: str | None = None
    question: str = ""
    kb: KnowledgeBase | None = None  # the process's knowledge base; None: ensure_kb(settings)

    def study(self, ref: str | None) -> AttachedStudy:
        if not self.studies:
            raise ToolExecutionError("no image is attached to this case; ask the user to attach a study")
        if not ref or ref.lower() in ("latest", "current", "last", "this"):
            return self.studies[-1]
        for s in self.studies:
            if s.ref.lower() == ref.strip().lower():
                return s
        if len(self.studies) == 1 and not re.fullmatch(r"[Ss]\d+", ref.strip()):
            return self.studies[0]  # one study attached: a free-text reference ("the chest X-ray") means it
        raise ToolArgumentError(f"unknown study '{ref}'; attached: {', '.join(s.ref for s in self.studies)}")


# --- argument models ---------------------------------------------------------------------------
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudyArgs(_Args):
    study: str = Field("latest", max_length=200, description="S1, S2 or latest")


class ClassifyArgs(StudyArgs):
    model: str | None = Field(None, max_length=64, description="classifier name; needed for PNG/JPEG images")
    saliency: bool = Field(False, description="also compute a saliency map")


_MODEL_HINTS = {"pneumonia-cxr": "chest X-ray", "breast-us": "breast ultrasound"}


def classify_args_model(settings: Settings | None) -> type[ClassifyArgs]:
    """ClassifyArgs whose ``model`` is an enum of the registered classifiers (when the registry loads)."""
    from typing import Literal

    from pydantic import create_model

    try:
        from tools.classifiers.registry import list_models

        names = [b.name for b in list_models(settings)]
    except Exception as exc:  # registry unavailable: free text, checked by classify()
        log.info("classifier registry unavailable for the tool schema: %s", exc)
        return ClassifyArgs
    if not names:
        return ClassifyArgs
    hint = ", ".join(f"{n} ({_MODEL_HINTS[n]})" if n in _MODEL_HINTS else n for n in names)
    return create_model("ClassifyArgs", __base__=ClassifyArgs,
                        model=(Literal[tuple(names)] | None, Field(None, description=f"classifier: {hint}")))


class SearchArgs(_Args):
    query: str = Field(..., min_length=2, max_length=400, description="what to look up")


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


@dataclass
class AgentTool:
    name: str
    description: str
    args_model: type[BaseModel]
    run_fn: Callable[[Any, ToolContext, Ledger], list[Evidence]]

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
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                                 for e in exc.errors())
            raise ToolArgumentError(f"{self.name}: invalid arguments ({problems})") from None

    def run(self, arguments: dict[str, Any], ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        args = self.validate(arguments)
        try:
            return self.run_fn(args, ctx, ledger)
        except (ToolArgumentError, ToolExecutionError):
            raise
        except RadconsultError as exc:
            raise ToolExecutionError(f"{self.name} failed: {exc}") from None
        except ValidationError as exc:
            raise ToolArgumentError(f"{self.name}: {exc.errors()[0]['msg']}") from None

    def as_langchain(self, ctx: ToolContext, ledger: Ledger) -> Any:
        from langchain_core.tools import StructuredTool

        def _call(**kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
            items = self.run(kwargs, ctx, ledger)
            return "\n\n".join(e.prompt_block() for e in items), [e.as_dict() for e in items]

        return StructuredTool.from_function(func=_call, name=self.name, description=self.description,
                                            args_schema=self.args_model, response_format="content_and_artifact")


# --- helpers -------------------------------------------------------------------------------------
def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def _plain(obj: Any, depth: int = 0) -> Any:
    """JSON-able view of a result object: arrays and big blobs dropped."""
    if depth > 4:
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, BaseModel):
        obj = obj.model_dump()
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()
                if not isinstance(v, np.ndarray | bytes) and not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [_plain(v, depth + 1) for v in obj if not isinstance(v, np.ndarray | bytes)]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


# --- tools -----------------------------------------------------------------------------------------
def _inspect(args: StudyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    att = ctx.study(args.study)
    if att.study is None:
        raise ToolExecutionError(f"study {att.ref} is no longer loaded (the service restarted); attach it again")
    s = att.study
    meta = {k: v for k, v in s.metadata.as_dict().items() if v not in (None, "")}
    facts = {"study": att.ref, "format": s.source_format, "shape": list(s.shape),
             "spacing_mm": [round(x, 3) if x else None for x in s.spacing], **meta}
    from agent.evidence import sanitize_data

    # each DICOM string is untrusted text: sanitised on its own so one bad tag cannot hide the others
    parts = [f"{k.replace('_', ' ')}: {sanitize_data(str(v), 200)[0] if isinstance(v, str) else v}"
             for k, v in facts.items() if k != "study"]
    return [ledger.add("dicom", "inspect_study", "DICOM header" if s.source_format == "dicom"
                       else f"{s.source_format.upper()} file", title=f"study {att.ref}",
                       quote="; ".join(parts), facts=facts, date=meta.get("study_date"))]


def _classify(args: ClassifyArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    import importlib

    classify = importlib.import_module("tools.classifiers.inference").classify
    att = ctx.study(args.study)
    if att.study is None:
        raise ToolExecutionError(f"study {att.ref} is no longer loaded (the service restarted); attach it again")
    finding = classify(att.study, model=args.model, settings=ctx.settings, saliency=args.saliency)
    card = _plain(_get(finding, "model_card", default=None))
    name = _get(finding, "model", "model_name", "name", default="classifier")
    version = _get(finding, "model_version", "version", default=None)
    probs = _plain(_get(finding, "probabilities", default={})) or {}
    abstain = bool(_get(finding, "abstain", "abstained", default=False))
    reason = _get(finding, "abstain_reason", default=None)
    caution = _get(finding, "caution", default=None)
    label = _get(finding, "label", default=None)
    if callable(getattr(finding, "text", None)):
        quote = finding.text()
    else:
        quote = f"{name} {version or ''}: " + (f"abstained ({reason})" if abstain else f"{label}; " + ", ".join(
            f"P({k}) = {float(v):.2f}" for k, v in probs.items()))
        if caution:
            quote += f"; caution: {caution}"
    if isinstance(card, dict) and isinstance(card.get("intended_use"), str):
        quote += f". Intended use: {card['intended_use'][:200]}"
    facts = {"study": att.ref, "model": name, "version": version, "label": label, "probabilities": probs,
             "probability": _plain(_get(finding, "probability", default=None)),
             "positive_label": _get(finding, "positive_label", default=None),
             "threshold": _plain(_get(finding, "threshold", default=None)),
             "abstained": abstain, "abstain_reason": reason, "caution": caution,
             "ood_flag": bool(_get(finding, "ood_flag", default=False)), "saliency": bool(args.saliency),
             "model_card": card}
    return [ledger.add("classifier", "classify_study", str(name), title=f"{name} on study {att.ref}",
                       quote=quote, facts=facts)]


def _citations_to_evidence(cits: list[Any], kind: str, tool: str, ledger: Ledger) -> list[Evidence]:
    out: list[Evidence] = []
    for c in cits:
        source = _get(c, "organisation", "organization", "source", default=None) or \
            ("prior report" if kind == "prior_report" else "knowledge base")
        out.append(ledger.add(kind, tool, str(source), title=str(_get(c, "title", default="") or ""),
                              quote=str(_get(c, "quote", "text", default="") or ""),
                              section=_get(c, "section", default=None), page=_get(c, "page", default=None),
                              year=_get(c, "year", default=None), url=_get(c, "url", default=None),
                              date=_get(c, "study_date", "date", "report_date", default=None),
                              chunk_id=_get(c, "chunk_id", "id", default=None),
                              facts={"score": _get(c, "score", default=None)}))
    return out


_KBS: dict[str, KnowledgeBase] = {}
_KB_LOCK = threading.Lock()


def ensure_kb(settings: Settings) -> KnowledgeBase:
    """The process's one knowledge base for the settings' store: opened once, the bundled corpus built
    (or found up to date) on first use. While another process builds it, searches see what is committed."""
    from agent.wiring import knowledge_config
    from knowledge.base import KnowledgeBase

    config = knowledge_config(settings)
    with _KB_LOCK:
        kb = _KBS.get(config.location)
        if kb is None or kb.config != config:
            kb = _KBS[config.location] = KnowledgeBase(config)
    return kb.ready()


def _search_guidelines(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    kb = ctx.kb.ready() if ctx.kb is not None else ensure_kb(ctx.settings)
    cits = kb.search(args.query, "guideline", k=3)
    if not cits:
        raise ToolExecutionError("no guideline passage matches that query")
    return _citations_to_evidence(cits, "guideline", "search_guidelines", ledger)


def _search_prior(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    if not ctx.patient_key:
        raise ToolExecutionError("no patient is attached to this case, so there are no prior reports to search")
    kb = ctx.kb.ready() if ctx.kb is not None else ensure_kb(ctx.settings)
    cits = kb.search(args.query, "report", patient=ctx.patient_key, k=3)
    if not cits:
        raise ToolExecutionError("no prior report of this patient matches that query")
    return _citations_to_evidence(cits, "prior_report", "search_prior_reports", ledger)


_RESULT_KEYS = ("applicable", "eligible", "rule", "category", "label", "name", "descriptor", "likelihood_of_malignancy",
                "probability_of_malignancy", "recommendation", "management", "reasons", "notes")


def _describe(key: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    return f"{key.replace('_', ' ')}: {value}"


def _calculator_tool(name: str, entry: Any) -> AgentTool | None:
    """Adapter over one entry of ``tools.calculators.CALCULATORS`` (an object, dict or (model, fn) pair)."""
    if isinstance(entry, tuple) and len(entry) >= 2:
        args_model, fn = entry[0], entry[1]
        description = (fn.__doc__ or name).strip().split("\n\n")[0]
    else:
        args_model = _get(entry, "args_model", "args", "model", "schema")
        fn = _get(entry, "func", "fn", "function", "compute", "run")
        description = _get(entry, "description", default=None) or ((fn.__doc__ or name) if fn else name)
    if not (isinstance(args_model, type) and issubclass(args_model, BaseModel) and callable(fn)):
        log.warning("calculator %s has no usable argument model/function; skipped", name)
        return None

    def run(args: BaseModel, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
        try:
            result = fn(args)
        except TypeError:
            result = fn(**args.model_dump())
        data = _plain(result.as_dict() if hasattr(result, "as_dict") else result)
        data = data if isinstance(data, dict) else {"result": data}
        cite = data.get("citation") if isinstance(data.get("citation"), dict) else {}
        quote = "; ".join(_describe(k, data[k]) for k in _RESULT_KEYS
                          if data.get(k) not in (None, "", [], ()) and not (k == "applicable" and data[k] is True))
        return [ledger.add("calculator", name, str(cite.get("organisation") or data.get("guideline") or name),
                           title=str(cite.get("title") or data.get("guideline") or name),
                           quote=quote or json.dumps(data, default=str)[:600], section=cite.get("section"),
                           url=cite.get("url"), year=cite.get("year"),
                           facts={"inputs": args.model_dump(mode="json"),
                                  "result": {k: v for k, v in data.items() if k not in ("citation", "disclaimer")}})]

    return AgentTool(name, " ".join(str(description).split())[:300], args_model, run)


_CALC_NAMES = {"fleischner": "fleischner_followup", "lung_rads": "lung_rads_category", "lungrads": "lung_rads_category",
               "birads": "birads_category", "bi_rads": "birads_category"}


def build_tools(settings: Settings | None = None) -> dict[str, AgentTool]:
    """Every tool the agent may call, keyed by name."""
    tools = [
        AgentTool("inspect_study", "Technical facts of an attached image (modality, view, body part, size, date).",
                  StudyArgs, _inspect),
        AgentTool("classify_study", "Run the image classifier on an attached image: calibrated probabilities, "
                  "caution or abstention, optional saliency.", classify_args_model(settings), _classify),
        AgentTool("search_guidelines", "Search the guideline knowledge base (Fleischner, Lung-RADS, BI-RADS, "
                  "USPSTF screening) for passages to cite.", SearchArgs, _search_guidelines),
        AgentTool("search_prior_reports", "Search this patient's earlier radiology reports.", SearchArgs,
                  _search_prior),
    ]
    try:
        from tools.calculators import CALCULATORS
    except ImportError:
        CALCULATORS = {}
    for key, entry in CALCULATORS.items():
        norm = key.lower().replace("-", "_").replace(" ", "_")
        name = next((v for k, v in _CALC_NAMES.items() if norm.startswith(k)), norm)
        tool = _calculator_tool(name, entry)
        if tool is not None:
            tools.append(tool)
    return {t.name: t for t in tools}
