"""The small interface every LLM backend implements, and the message/tool-call types it speaks.

Messages are plain OpenAI-style dicts (``role``: system | user | assistant | tool, ``content``,
``tool_calls`` on assistant messages, ``tool_call_id`` and ``name`` on tool messages) so that they
checkpoint as JSON and pass unchanged to an OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model emitted. ``arguments`` is the decoded JSON object (not yet validated)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def as_message_dict(self) -> dict[str, Any]:
        import json

        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


@dataclass(frozen=True)
class ToolSchema:
    """What the model is told about one tool: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    # Optional validator of decoded arguments: returns an error message, or None when they are valid.
    check: Callable[[dict[str, Any]], str | None] | None = field(default=None, compare=False, repr=False)

    def openai(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class ChatResult:
    """One model response: either text (the answer) or tool calls, plus timings in milliseconds.

    ``parse_error`` is set when the model tried to call a tool but the call could not be decoded.
    """

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    parse_error: str | None = None
    ttft_ms: float | None = None
    total_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = ""


class ChatBackend(Protocol):
    """A chat model. ``tool_choice``: "auto" (tools or text), "none" (text only), or one tool's name (that
    tool is called: the case frame's ``read_case``)."""

    name: str

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult: ...

    def close(self) -> None: ...
