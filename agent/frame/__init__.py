"""The case frame: every question is read into a typed frame before it is answered.

* :mod:`agent.frame.model`: the frame (and the draft the LLM writes under its JSON schema);
* :mod:`agent.frame.text`: what the words of the question state, read deterministically;
* :mod:`agent.frame.reader`: the draft checked against the text and the previous turn;
* :mod:`agent.frame.findings`: image findings and which installed model covers them;
* :mod:`agent.frame.plan`: the tool calls, clarifying question or statement a frame needs;
* :mod:`agent.frame.compose`: answers rendered from calculator and classifier results.
"""

from __future__ import annotations

from agent.frame.compose import compose_answer
from agent.frame.model import CaseFrame, FrameDraft
from agent.frame.plan import Plan, plan_for
from agent.frame.reader import read_case

__all__ = ["CaseFrame", "FrameDraft", "Plan", "compose_answer", "plan_for", "read_case"]
