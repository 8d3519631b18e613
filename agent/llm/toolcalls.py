"""Tool calls from model text, in the forms small models emit, and schema validation of their arguments.

Accepted forms: ``<tool_call>{...}</tool_call>`` (Qwen, Hermes), fenced ```json {...}``` blocks and a
bare JSON object (or list of objects) that makes up the whole reply; and, inside prose, a fenced block
that holds a call, or holds the arguments of the one tool the prose names. Each object is
``{"name": ..., "arguments": {...}}`` (``parameters`` / ``args`` are accepted for ``arguments``, and
``{"function": {...}}`` wrappers are unwrapped). JSON is decoded with ``json.loads``; nothing is evaluated.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from agent.llm.base import ToolCall, ToolSchema

# How a reply starts a tool call, shared by the backends that decode locally (gguf, hf): the reply is
# streamed as prose until it starts with one of CALL_OPENERS or turns into a call after prose (MID_CALL).
CALL_OPENERS = ("<tool_call>", "{", "```", "[")
MID_CALL = re.compile(r"<tool_call>|```(?:json|tool_call|JSON)?\s*[{\[]")
# Qwen's native opening of a call: decoding a call after it gives compact JSON in the trained format
CALL_HEAD = '<tool_call>\n{"name": "'

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_call|JSON)?\s*(.*?)\s*```", re.S)


class ToolCallParseError(ValueError):
    """The text looks like a tool call but cannot be decoded into one."""


def starts_call(head: str) -> bool | None:
    """Whether a reply that begins with ``head`` (leading space stripped) is a tool call: True, False, or
    None while it is still a prefix of an opener (keep reading)."""
    if any(head.startswith(o) for o in CALL_OPENERS):
        return True
    if any(o.startswith(head) for o in CALL_OPENERS):
        return None
    return False


def tools_instructions(tools: list[ToolSchema]) -> str:
    """The Hermes/Qwen tool block for a system message, where the chat template cannot carry tools."""
    sigs = "\n".join(json.dumps(t.openai()["function"]) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query. Function signatures "
            f"are within <tools></tools>:\n<tools>\n{sigs}\n</tools>\n\nFor each function call, return a JSON "
            "object within <tool_call></tool_call> tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def args_object(args: Any) -> Any:
    """Tool-call arguments as a JSON object when they arrive as a JSON string (OpenAI style)."""
    if isinstance(args, str):
        try:
            return json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return args
    return args


def call_text(msg: dict[str, Any]) -> str:
    """An assistant message's tool calls written out as Qwen/Hermes ``<tool_call>`` blocks, compact JSON."""
    calls = []
    for c in msg.get("tool_calls") or []:
        fn = c.get("function", c)
        call = {"name": fn.get("name"), "arguments": args_object(fn.get("arguments", {}))}
        calls.append("<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(calls)


def calls_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each assistant tool call moved into its content as ``<tool_call>`` text."""
    out = []
    for msg in messages:
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            content = msg.get("content") or ""
            msg = {"role": "assistant", "content": (content + "\n" if content else "") + call_text(msg)}
        out.append(msg)
    return out


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:12]


def _to_call(obj: Any, known: set[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str):
        return None
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"arguments of {name} are not valid JSON: {exc}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolCallParseError(f"arguments of {name} must be a JSON object")
    if known is not None and name not in known:
        raise ToolCallParseError(f"unknown tool '{name}'; available: {', '.join(sorted(known))}")
    return ToolCall(name=name, arguments=args, id=new_call_id())


def _decode(blob: str) -> Any:
    blob = blob.strip()
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        # tolerate trailing text after one JSON value
        try:
            value, _ = json.JSONDecoder().raw_decode(blob)
            return value
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"tool call is not valid JSON: {exc.msg} at char {exc.pos}") from None


def parse_tool_calls(text: str, known: set[str] | None = None) -> list[ToolCall]:
    """Tool calls found in ``text``; ``[]`` when the text is a plain answer.

    Raises :class:`ToolCallParseError` when the text clearly attempts a call (a ``<tool_call>`` tag, or
    a JSON object with a ``name`` key as the whole reply) that cannot be decoded or names an unknown tool.
    """
    stripped = text.strip()
    blobs: list[str] = []
    tagged = "<tool_call>" in stripped
    if tagged:
        blobs = _TAGGED.findall(stripped)
    elif stripped.startswith("```"):
        blobs = _FENCED.findall(stripped)
    elif stripped.startswith(("{", "[")):
        blobs = [stripped]
    if not blobs and known:
        return _embedded_calls(stripped, known)
    calls: list[ToolCall] = []
    for blob in blobs:
        try:
            value = _decode(blob)
        except ToolCallParseError:
            if tagged:
                raise
            return []
        items = value if isinstance(value, list) else [value]
        for item in items:
            call = _to_call(item, known)
            if call is None and tagged:
                raise ToolCallParseError("a <tool_call> must hold {\"name\": ..., \"arguments\": {...}}")
            if call is not None:
                calls.append(call)
    return calls


def _embedded_calls(text: str, known: set[str]) -> list[ToolCall]:
    """Calls written inside prose: a fenced JSON block (``{"name", "arguments"}``, or just the arguments
    when the prose before it names exactly one tool, as in "I would call `lung_rads_category` with:
    ```json {...}```"), or an inline ``{"name": ...}`` object. Unparsable blocks are ignored here."""
    calls: list[ToolCall] = []
    for match in _FENCED.finditer(text):
        try:
            value = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        try:
            call = _to_call(value, known)
        except ToolCallParseError:
            call = None
        if call is None and "name" not in value:
            before = text[: match.start()]
            named = [n for n in known if re.search(rf"\b{re.escape(n)}\b", before)]
            if len(named) == 1:
                call = _to_call({"name": named[0], "arguments": value}, known)
        if call is not None:
            calls.append(call)
    if not calls:
        for m in re.finditer(r'\{\s*"name"\s*:', text):
            try:
                value, _ = json.JSONDecoder().raw_decode(text[m.start():])
                call = _to_call(value, known)
            except (json.JSONDecodeError, ToolCallParseError):
                continue
            if call is not None:
                calls.append(call)
                break
    return calls
