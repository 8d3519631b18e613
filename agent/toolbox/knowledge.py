"""Knowledge tools: ``search_guidelines`` and ``search_prior_reports`` over the one knowledge base of the process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from agent.evidence import Evidence, Ledger
from agent.toolbox.spec import ToolSpec
from tools.errors import ToolExecutionError

if TYPE_CHECKING:
    from agent.toolbox.context import ToolContext
    from knowledge.retrieve import Citation

RESULTS = 3  # passages per search: enough to cover the question, few enough to read before answering
CANDIDATES = 8  # passages retrieved before the ones that do not fit the case frame are left out


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(..., min_length=2, max_length=400, description="what to look up")


def citations_to_evidence(cits: list[Citation], kind: str, tool: str, ledger: Ledger) -> list[Evidence]:
    """Each retrieved passage as a ledger item with its provenance (source, section, page, date)."""
    out: list[Evidence] = []
    for c in cits:
        source = c.organisation or ("prior report" if kind == "prior_report" else "knowledge base")
        out.append(ledger.add(kind, tool, source, title=c.title, quote=c.quote, section=c.section,
                              page=c.page, year=c.year, url=c.url, date=c.study_date, chunk_id=c.chunk_id,
                              facts={"score": c.score}))
    return out


def _search_guidelines(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    from agent.frame.sections import applicable

    kb = ctx.services.knowledge
    kb.ensure_ready()
    if ctx.frame is not None:  # the sections whose conditions match how the question was read
        cits = applicable(kb.search(args.query, "guideline", k=CANDIDATES), lambda c: c.section, ctx.frame)
        cits = cits[:RESULTS]
    else:
        cits = kb.search(args.query, "guideline", k=RESULTS)
    if not cits:
        raise ToolExecutionError("no guideline passage matches that query")
    return citations_to_evidence(cits, "guideline", "search_guidelines", ledger)


def _search_prior(args: SearchArgs, ctx: ToolContext, ledger: Ledger) -> list[Evidence]:
    if not ctx.patient_key:
        raise ToolExecutionError("no patient is attached to this case, so there are no prior reports to search")
    kb = ctx.services.knowledge
    kb.ensure_ready()
    cits = kb.search(args.query, "report", patient=ctx.patient_key, k=RESULTS)
    if not cits:
        raise ToolExecutionError("no prior report of this patient matches that query")
    return citations_to_evidence(cits, "prior_report", "search_prior_reports", ledger)


SEARCH_GUIDELINES = ToolSpec(
    "search_guidelines", "Search the guideline knowledge base (Fleischner, Lung-RADS, BI-RADS, USPSTF screening) "
    "for passages to cite.", SearchArgs, _search_guidelines, audit_action="search", returns="guideline")
SEARCH_PRIOR_REPORTS = ToolSpec(
    "search_prior_reports", "Search this patient's earlier radiology reports.", SearchArgs, _search_prior,
    audit_action="search", returns="prior_report")
