"""OpenAI-compatible server backend (vLLM, llama.cpp server, Ollama's /v1, LM Studio): the scale-out path.

Native tool calling (``tools`` in the request, ``tool_calls`` in the response), with the same text
fallback as the embedded backend for servers or models that write calls as text. Streams with
server-sent events so the first token reaches the user early. Talks plain HTTP through httpx.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from agent.llm.base import ChatResult, TokenCallback, ToolCall, ToolSchema
from agent.llm.toolcalls import ToolCallParseError, new_call_id, parse_tool_calls
from tools.errors import LLMContextError, LLMCrashedError, LLMError, LLMTimeoutError, LLMUnavailableError

log = logging.getLogger(__name__)


class OpenAIBackend:
    """``base_url`` like ``http://127.0.0.1:8000/v1``; ``model`` is the server's model name."""

    name: str

    def __init__(self, base_url: str, model: str, *, timeout_s: float = 120.0, max_tokens: int = 512,
                 api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.api_key = api_key
        self.name = f"openai:{model}"

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        import httpx

        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0, "stream": True,
                                "max_tokens": max_tokens or self.max_tokens}
        if tools:
            body["tools"] = [t.openai() for t in tools]
            body["tool_choice"] = wire_tool_choice(tool_choice)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        result = ChatResult()
        text, first = "", None
        partial: dict[int, dict[str, str]] = {}
        decided, is_call, streamed = not tools, False, 0
        try:
            timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
            with httpx.stream("POST", f"{self.base_url}/chat/completions", json=body, headers=headers,
                              timeout=timeout) as resp:
                if resp.status_code >= 400:
                    detail = resp.read().decode("utf-8", "replace")[:500]
                    if "context" in detail.lower() and ("exceed" in detail.lower() or "length" in detail.lower()):
                        raise LLMContextError("the conversation is too long for the model's context; start a new case")
                    raise LLMError(f"the LLM server answered HTTP {resp.status_code}: {detail}")
                finished = False
                for line in resp.iter_lines():
                    if time.perf_counter() > deadline:
                        raise LLMTimeoutError(f"the LLM server timed out after {self.timeout_s:.0f} s")
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(data)
                    if chunk.get("usage"):
                        result.prompt_tokens = chunk["usage"].get("prompt_tokens", 0) or 0
                        result.completion_tokens = chunk["usage"].get("completion_tokens", 0) or 0
                    if not chunk.get("choices"):
                        continue
                    choice = chunk["choices"][0]
                    delta = choice.get("delta") or {}
                    if first is None and (delta.get("content") or delta.get("tool_calls")):
                        first = time.perf_counter()
                    for tc in delta.get("tool_calls") or []:
                        slot = partial.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
                        fn = tc.get("function") or {}
                        slot["id"] = tc.get("id") or slot["id"]
                        name = fn.get("name") or ""
                        # OpenAI sends the name once; llama.cpp's server repeats it in every delta of a forced call
                        if name and name != slot["name"]:
                            slot["name"] += name
                        slot["arguments"] += fn.get("arguments") or ""
                    piece = delta.get("content") or ""
                    if piece:
                        text += piece
                        if not decided and text.strip():
                            head = text.lstrip()
                            if head.startswith(("<tool_call>", "{", "```", "[")):
                                decided, is_call = True, True
                            elif not any(o.startswith(head) for o in ("<tool_call>",)):
                                decided = True
                        if decided and not is_call and on_token is not None:
                            on_token(text[streamed:])
                            streamed = len(text)
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                        finished = True
                if not finished:
                    raise LLMCrashedError("the LLM server stopped in the middle of the answer; please ask again")
        except LLMError:
            raise
        except httpx.ConnectError:
            raise LLMUnavailableError(f"the LLM server at {self.base_url} is not reachable: start it, or point "
                           "RADCONSULT_LLM at a running server (or at the embedded gguf:qwen2.5-coder-1.5b)") from None
        except httpx.TimeoutException:
            raise LLMTimeoutError(f"the LLM server timed out after {self.timeout_s:.0f} s; check the server, or raise "
                           "RADCONSULT_LLM_TIMEOUT_S") from None
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise LLMCrashedError(f"the LLM server at {self.base_url} dropped the connection mid-answer "
                           f"({type(exc).__name__}); check that it is still running, then ask again") from None
        result.ttft_ms = (first - t0) * 1000 if first else None
        known = {t.name for t in tools} if tools else set()
        if partial:
            for idx in sorted(partial):
                slot = partial[idx]
                try:
                    args = json.loads(slot["arguments"]) if slot["arguments"].strip() else {}
                except json.JSONDecodeError as exc:
                    result.parse_error = f"arguments of {slot['name']} are not valid JSON: {exc.msg}"
                    break
                if slot["name"] not in known:
                    result.parse_error = f"unknown tool '{slot['name']}'; available: {', '.join(sorted(known))}"
                    break
                if not isinstance(args, dict):
                    result.parse_error = f"arguments of {slot['name']} must be a JSON object"
                    break
                result.tool_calls.append(ToolCall(slot["name"], args, slot["id"] or new_call_id()))
        elif tools and tool_choice != "none":
            try:
                result.tool_calls = parse_tool_calls(text, known)
            except ToolCallParseError as exc:
                result.parse_error = str(exc)
        if result.tool_calls or result.parse_error:
            result.text = ""
        else:
            result.text = text
            if not decided and on_token is not None and text:
                on_token(text)
        result.total_ms = (time.perf_counter() - t0) * 1000
        return result

    def close(self) -> None:
        return None


def wire_tool_choice(tool_choice: str) -> str | dict[str, Any]:
    """Our ``tool_choice`` ("auto", "none", "required" or one tool's name, which forces that tool) as the
    OpenAI API spells it: a forced tool is ``{"type": "function", "function": {"name": ...}}``."""
    if tool_choice in ("auto", "none", "required"):
        return tool_choice
    return {"type": "function", "function": {"name": tool_choice}}
