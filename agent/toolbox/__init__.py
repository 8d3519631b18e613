"""The tools the agent may call: each declared once (:class:`ToolSpec`) in one registry, :data:`TOOLS`.

Declarations live beside their adapters: ``imaging.py`` (inspect_study, classify_study),
``knowledge.py`` (search_guidelines, search_prior_reports) and ``calculators.py`` (one tool per row of
``tools.calculators.CALCULATORS``). :func:`toolset` gives the specs a consultation uses, with the
classifier's description and enum filled in from the installed bundles.
"""

from __future__ import annotations

import dataclasses

from agent.toolbox.calculators import CALCULATOR_NAMES, CALCULATOR_SPECS
from agent.toolbox.context import AttachedStudy, ImageClassifiers, KnowledgeSearch, ToolContext, ToolServices
from agent.toolbox.imaging import (
    CLASSIFY_STUDY,
    INSPECT_STUDY,
    ClassifyArgs,
    StudyArgs,
    classify_args_model,
    classify_description,
    installed_coverage,
)
from agent.toolbox.knowledge import SEARCH_GUIDELINES, SEARCH_PRIOR_REPORTS, SearchArgs
from agent.toolbox.spec import ToolRegistry, ToolSpec, compact_schema

__all__ = [
    "CALCULATOR_NAMES",
    "TOOLS",
    "AttachedStudy",
    "ClassifyArgs",
    "ImageClassifiers",
    "KnowledgeSearch",
    "SearchArgs",
    "StudyArgs",
    "ToolContext",
    "ToolRegistry",
    "ToolServices",
    "ToolSpec",
    "compact_schema",
    "toolset",
]

# the order is the order of the schemas in the (cached) system prompt
TOOLS = ToolRegistry([INSPECT_STUDY, CLASSIFY_STUDY, SEARCH_GUIDELINES, SEARCH_PRIOR_REPORTS, *CALCULATOR_SPECS])


def toolset(classifiers: ImageClassifiers, registry: ToolRegistry = TOOLS) -> dict[str, ToolSpec]:
    """The registry's specs by name, with ``classify_study``'s description and ``model`` enum taken from the
    installed bundles (what each covers is in its metadata)."""
    out = {spec.name: spec for spec in registry}
    if CLASSIFY_STUDY.name in out:
        out[CLASSIFY_STUDY.name] = dataclasses.replace(
            out[CLASSIFY_STUDY.name], args_model=classify_args_model(classifiers),
            description=classify_description(installed_coverage(classifiers)))
    return out
