"""Embedded llama.cpp backend (llama-cpp-python), the default.

Prompt: rendered with the chat template carried in the GGUF (tools in the system turn), so the
fixed prefix (system prompt + tool schemas) is byte-identical across turns and llama.cpp reuses its
KV cache for it (``Llama.generate`` skips the longest common token prefix with the previous call).

Tool calls: the reply is decoded freely and plain text is streamed. As soon as the reply starts a tool
call (``<tool_call>``, ``{``, ``[`` or a fence), or prose turns into one, free decoding stops and the
call is decoded again after the opening of Qwen's native form (``<tool_call>\n{"name": "``): compact
JSON in the trained format, about half the tokens of the pretty-printed fenced JSON small models
write on their own. A call that still does not decode (bad JSON, unknown tool, failed check) is
decoded again under a grammar compiled from the JSON schema of the tool's arguments (or of every
tool's ``{"name", "arguments"}`` object), so it becomes valid JSON of the right shape. Grammar
sampling is slow on a large vocabulary, so well-formed calls and plain answers never pay for it.

Decoding: greedy, in our own loop (:mod:`agent.llm.speculative`). A call's keys, punctuation and unstated
flags are guessed from the tools' schemas and checked in one batch, so a Fleischner call of ~90 tokens
takes ~10 batched steps instead of ~90. Earlier calls are put back into the prompt exactly as the model
wrote them, so the next round finds them in the KV cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.llm.base import ChatResult, TokenCallback, ToolSchema
from agent.llm.cpu import auto_threads, repack_weights
from agent.llm.llama_handle import LlamaHandle, load_llama
from agent.llm.speculative import CallDrafter, DecodeStats, call_complete, greedy_decode
from agent.llm.toolcalls import (
    CALL_HEAD,
    MID_CALL,
    ToolCallParseError,
    calls_as_text,
    parse_tool_calls,
    starts_call,
    tools_instructions,
)
from tools.errors import LLMContextError, LLMError, LLMTimeoutError, ModelUnavailableError

log = logging.getLogger(__name__)



def tool_call_schema(tools: list[ToolSchema]) -> dict[str, Any]:
    """JSON schema of one call ``{"name": <tool>, "arguments": {...}}`` for any of ``tools``."""
    variants = []
    for tool in tools:
        params = dict(tool.parameters)
        params.pop("title", None)
        variants.append({"type": "object",
                         "properties": {"name": {"const": tool.name}, "arguments": params},
                         "required": ["name", "arguments"]})
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def _chatml(messages: list[dict[str, Any]], tools: list[ToolSchema] | None) -> str:
    """Fallback ChatML rendering (Hermes-style tools) for GGUF files without a chat template."""
    out: list[str] = []
    for i, msg in enumerate(messages):
        role, content = msg["role"], msg.get("content") or ""
        if i == 0 and role == "system" and tools:
            content += "\n\n" + tools_instructions(tools)
        if role == "tool":
            out.append(f"<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n")
            continue
        if role == "assistant" and msg.get("tool_calls"):
            calls = "\n".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                            "arguments": json.loads(c["function"]["arguments"])})
                              + "\n</tool_call>" for c in msg["tool_calls"])
            content = (content + "\n" if content else "") + calls
        out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


class GGUFBackend:
    """llama.cpp in-process. Loading is lazy (first :meth:`chat`); calls are serialised by a lock."""

    name: str

    def __init__(self, model_path: Path, *, n_ctx: int = 8192, n_threads: int = 0, timeout_s: float = 120.0,
                 max_tokens: int = 512, name: str | None = None, seed: int = 0,
                 state_dir: Path | None = None, repack: str = "auto",
                 progress: Callable[[], None] | None = None) -> None:
        self.model_path = Path(model_path)
        self.progress = progress  # called after every forward pass (the worker's sign of life)
        self.repack = repack_weights(repack)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or auto_threads()
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.seed = seed
        self.name = name or f"gguf:{self.model_path.name}"
        self._llm: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._drafters: dict[tuple[str, ...], CallDrafter] = {}
        self.decode_stats: list[DecodeStats] = []  # of the last chat() call, for its log line
        self.state_dir = Path(state_dir) if state_dir else None
        self._prefix_done: set[str] = set()

    # --- loading --------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Load the model now; what was chosen for this CPU."""
        t0 = time.perf_counter()
        self._load()
        return {"load_s": round(time.perf_counter() - t0, 2), "n_threads": self.n_threads,
                "repack": self.repack}

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp  # noqa: F401 - the runtime is an optional extra
        except ImportError:
            raise ModelUnavailableError("the embedded LLM runtime is not installed: pip install 'radconsult[llm]' "
                                        "(llama-cpp-python)") from None
        if not self.model_path.is_file():
            raise ModelUnavailableError(f"GGUF model file not found: {self.model_path.name}")
        t0 = time.perf_counter()
        try:
            self._llm = load_llama(str(self.model_path), repack=self.repack, n_ctx=self.n_ctx,
                                   n_threads=self.n_threads, n_threads_batch=self.n_threads, n_batch=512,
                                   seed=self.seed, verbose=False)
        except Exception as exc:  # llama.cpp raises ValueError / RuntimeError on a bad file
            raise ModelUnavailableError(f"could not load GGUF model {self.model_path.name}: {exc}") from None
        template = self._llm.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "ignore")
            bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "ignore") \
                if self._llm.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        log.info("loaded %s in %.1f s (ctx %d, threads %d, weight repack %s)", self.model_path.name,
                 time.perf_counter() - t0, self.n_ctx, self.n_threads, "on" if self.repack else "off")
        return self._llm

    def render(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None) -> tuple[str, list[str]]:
        """The prompt text and stop strings for ``messages`` (loads the model for its template)."""
        self._load()
        if self._formatter is None:
            return _chatml(messages, tools), ["<|im_end|>"]
        # Earlier tool calls are written as the model writes them (compact JSON, its key order). The GGUF
        # template would print OpenAI-style string arguments as an escaped JSON string: not the trained
        # format, and a KV-cache miss for every token of the call on the next round.
        resp = self._formatter(messages=calls_as_text(messages), tools=[t.openai() for t in tools] if tools else None)
        stop = resp.stop if isinstance(resp.stop, list) else [resp.stop] if resp.stop else []
        return resp.prompt, [s for s in stop if s]

    def _grammar(self, tools: list[ToolSchema] | dict[str, Any]) -> Any:
        """Grammar for one call to any of ``tools``, or for one JSON value of ``schema`` when given a dict."""
        schema = tools if isinstance(tools, dict) else tool_call_schema(tools)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def _call_drafter(self, tools: list[ToolSchema]) -> CallDrafter:
        key = tuple(t.name for t in tools)
        if key not in self._drafters:
            self._drafters[key] = CallDrafter({t.name: t.parameters for t in tools})
        return self._drafters[key]

    # --- the fixed prefix, kept on disk across processes --------------------------------------------
    def _prefix_tokens(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None,
                       tokens: list[int]) -> list[int]:
        """Tokens of the part of the prompt that does not depend on the conversation (system + tools)."""
        if not messages or messages[0]["role"] != "system":
            return []
        a, _ = self.render(messages[:1] + [{"role": "user", "content": "\x01"}], tools)
        b, _ = self.render(messages[:1] + [{"role": "user", "content": "\x02"}], tools)
        n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        head = self._llm.tokenize(a[: max(0, n - 16)].encode("utf-8"), add_bos=False, special=True)
        return tokens[: _common_prefix(head, tokens)]

    def _state_path(self, prefix: list[int]) -> Path | None:
        if self.state_dir is None or len(prefix) < 64:
            return None
        import hashlib

        h = hashlib.sha256(f"{self.model_path.name}:{self.model_path.stat().st_size}:{self.n_ctx}".encode())
        h.update(json.dumps(prefix).encode())
        return self.state_dir / f"{self.model_path.stem}.prefix-{h.hexdigest()[:16]}.kv"

    def _restore_or_save_prefix(self, prefix: list[int]) -> None:
        """Load the KV state of ``prefix`` from disk, or compute it once and save it (atomically)."""
        handle = LlamaHandle(self._llm, self.progress)
        if _common_prefix(handle.cached(), prefix) == len(prefix):
            return  # already in the KV cache
        path = self._state_path(prefix)
        if path is None or str(path) in self._prefix_done:
            return  # too short to matter, or saving failed before: let llama.cpp evaluate it
        if path.is_file():
            try:
                handle.restore(path.read_bytes(), prefix)
                log.info("restored the prompt prefix (%d tokens) from %s", len(prefix), path.name)
                return
            except Exception as exc:  # a stale or corrupt state file: recompute it
                log.warning("ignoring prefix state %s: %s", path.name, exc)
                self._llm.reset()
                path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        self._llm.reset()
        handle.eval(prefix, 0)
        try:
            data = handle.state()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.partial")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            stale = sorted(path.parent.glob(f"{self.model_path.stem}.prefix-*.kv"), key=lambda p: p.stat().st_mtime)
            for old in stale[:-3]:  # prompts or tools changed: keep the three newest states per model
                old.unlink(missing_ok=True)
        except Exception:
            self._prefix_done.add(str(path))  # do not retry a failing save in this process
            raise
        log.info("computed the prompt prefix (%d tokens) in %.1f s and saved it (%d MB)", len(prefix),
                 time.perf_counter() - t0, len(data) // 2**20)

    # --- generation -----------------------------------------------------------------------------
    def _stream(self, prompt_tokens: list[int], *, max_tokens: int, stop: list[str], grammar: Any = None,
                deadline: float, on_text: Any = None, drafter: Any = None) -> tuple[str, str, float | None]:
        """Decode; ``on_text(acc) -> bool`` may end decoding early by returning False.

        Greedy decoding runs our own loop (drafted tokens checked in batches); grammar-constrained
        decoding goes through llama-cpp-python's sampler.
        """
        llm = self._llm
        if grammar is None:
            stats = DecodeStats()
            out = greedy_decode(llm, prompt_tokens, max_tokens=max_tokens, stop=stop, deadline=deadline,
                                timeout_s=self.timeout_s, on_text=on_text, drafter=drafter, stats=stats,
                                progress=self.progress)
            self.decode_stats.append(stats)
            return out
        text, finish, first = "", "", None
        try:
            stream = llm.create_completion(prompt_tokens, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                           stop=stop, stream=True, grammar=grammar, seed=self.seed)
            for chunk in stream:
                if self.progress is not None:
                    self.progress()
                if first is None:
                    first = time.perf_counter()
                choice = chunk["choices"][0]
                text += choice.get("text") or ""
                finish = choice.get("finish_reason") or finish
                if time.perf_counter() > deadline:
                    raise LLMTimeoutError(f"the language model timed out after {self.timeout_s:.0f} s")
                if on_text is not None and on_text(text) is False:
                    finish = "interrupted"
                    break
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"the language model failed while generating: {exc}") from None
        return text, finish, first

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        """One reply. ``tool_choice``: "auto", "none", or a tool's name to force a call of that tool."""
        with self._lock:
            return self._chat(messages, tools, tool_choice, on_token, max_tokens or self.max_tokens)

    def _prepare(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None,
                 max_tokens: int) -> tuple[str, list[str], list[int], int, int]:
        """(prompt, stop strings, prompt tokens, max new tokens, tokens already in the KV cache)."""
        llm = self._load()
        prompt, stop = self.render(messages, tools)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + min(max_tokens, 64) > self.n_ctx:
            raise LLMContextError(f"the conversation is too long for the model's context ({len(tokens)} tokens of "
                           f"{self.n_ctx}); start a new case or raise RADCONSULT_LLM_CTX")
        try:
            self._restore_or_save_prefix(self._prefix_tokens(messages, tools, tokens))
        except Exception as exc:  # the cache is an optimisation: never fail a turn for it
            log.warning("prompt prefix cache unavailable: %s", exc)
        cached = _common_prefix(LlamaHandle(llm).cached(), tokens)
        return prompt, stop, tokens, min(max_tokens, self.n_ctx - len(tokens)), cached

    def _free_reply(self, tokens: list[int], stop: list[str], max_tokens: int, deadline: float, want_tools: bool,
                    on_token: TokenCallback | None) -> tuple[str, str, float | None, bool]:
        """Decode freely, streaming prose; stop as soon as the reply turns out to be a tool call.
        Returns (text, finish reason, time of the first token, is a call)."""
        state = {"streamed": 0, "decided": not want_tools, "call": False}

        def on_text(acc: str) -> bool:
            if not state["decided"]:
                head = acc.lstrip()
                if not head:
                    return True
                kind = starts_call(head)
                if kind is None:
                    return True  # still ambiguous: a prefix of an opener
                state["decided"] = True
                if kind:
                    state["call"] = True
                    return False  # a tool call: stop here and decode it in the canonical form
            if want_tools and MID_CALL.search(acc):
                state["call"] = True  # prose that turns into a call ("I would call ...: ```json")
                return False
            if on_token is not None:
                new = acc[state["streamed"]:]
                if new:
                    state["streamed"] = len(acc)
                    on_token(new)
            return True

        text, finish, first = self._stream(tokens, max_tokens=max_tokens, stop=stop, deadline=deadline,
                                           on_text=on_text)
        if not state["decided"] and on_token is not None and text:
            on_token(text)
        return text, finish, first, bool(state["call"])

    def _decode_call(self, prompt: str, tools: list[ToolSchema], stop: list[str], max_tokens: int,
                     deadline: float, forced: str | None = None) -> tuple[str, str]:
        """Decode a call after the opening of Qwen's native form (and the tool's name when ``forced``).

        Small models otherwise write pretty-printed fenced JSON after a prose preamble: twice the tokens,
        and sometimes only the arguments. Compact JSON in the trained format is faster and parses first time.
        """
        prefill = f'{forced}", "arguments": ' if forced else ""
        call_tokens = self._llm.tokenize((prompt + CALL_HEAD + prefill).encode("utf-8"), add_bos=False, special=True)
        drafter = self._call_drafter(tools)
        body, finish, _ = self._stream(call_tokens, max_tokens=max_tokens, stop=stop, deadline=deadline,
                                       drafter=lambda acc: drafter.draft(prefill + acc),
                                       on_text=lambda acc: not call_complete(prefill + acc))
        if finish == "interrupted":  # the call object closed: the closing tag adds nothing
            body, finish = body + "\n</tool_call>", "stop"
        return CALL_HEAD + prefill + body, finish

    def _parse_calls(self, result: ChatResult, text: str, prompt: str, tools: list[ToolSchema], stop: list[str],
                     max_tokens: int, deadline: float) -> str:
        """Fill ``result.tool_calls`` (or ``parse_error``) from ``text``; a call that does not decode or check
        is decoded again under the JSON-schema grammar. Returns the reply text ("" when it was a call)."""
        known = {t.name for t in tools}
        problem, failing = None, None
        try:
            result.tool_calls = parse_tool_calls(text, known)
            checks = {t.name: t.check for t in tools if t.check}
            for c in result.tool_calls:
                if c.name in checks and (err := checks[c.name](c.arguments)):
                    problem, failing = err, c.name
                    break
        except ToolCallParseError as exc:
            problem = str(exc)
        if problem:
            log.info("tool call unusable (%s); re-decoding under the JSON-schema grammar", problem)
            schema = next((t.parameters for t in tools if t.name == failing), None)
            if schema is not None:
                # the model chose a real tool: keep its choice, constrain only the arguments object
                head = '<tool_call>\n{"name": ' + json.dumps(failing) + ', "arguments": '
                grammar = self._grammar(schema)
            else:
                head, grammar = "<tool_call>\n", self._grammar(tools)
            call_tokens = self._llm.tokenize((prompt + head).encode("utf-8"), add_bos=False, special=True)
            body, _, _ = self._stream(call_tokens, max_tokens=max(max_tokens, 256), stop=stop, grammar=grammar,
                                      deadline=deadline)
            text = head + body + ("}" if schema is not None else "") + "\n</tool_call>"
            try:
                result.tool_calls = parse_tool_calls(text, known)
            except ToolCallParseError as exc2:
                result.parse_error = str(exc2)
        return "" if result.tool_calls or result.parse_error else text

    def _chat(self, messages, tools, tool_choice, on_token, max_tokens) -> ChatResult:
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        self.decode_stats = []
        prompt, stop, tokens, max_tokens, cached = self._prepare(messages, tools, max_tokens)
        want_tools = bool(tools) and tool_choice != "none"
        result = ChatResult(prompt_tokens=len(tokens), cached_tokens=cached)
        if want_tools and tool_choice != "auto":
            if tool_choice not in {t.name for t in tools}:
                raise LLMError(f"tool_choice names no offered tool: {tool_choice}")
            text, finish = self._decode_call(prompt, tools, stop, max_tokens, deadline, forced=tool_choice)
        else:
            text, finish, first, is_call = self._free_reply(tokens, stop, max_tokens, deadline, want_tools, on_token)
            result.ttft_ms = (first - t0) * 1000 if first else None
            if is_call:
                text, finish = self._decode_call(prompt, tools, stop, max_tokens, deadline)
        if want_tools:
            text = self._parse_calls(result, text, prompt, tools, stop, max_tokens, deadline)
        llm = self._llm
        result.text = text
        result.finish_reason = finish
        result.completion_tokens = llm.n_tokens - len(tokens) if llm.n_tokens > len(tokens) else 0
        result.total_ms = (time.perf_counter() - t0) * 1000
        if finish == "length" and not result.tool_calls:
            log.warning("answer cut at max_tokens=%d", max_tokens)
        drafted = sum(d.drafted for d in self.decode_stats)
        log.info("llm %s: %d prompt tokens (%d cached), %.0f ms, %s; %d tokens in %d steps (%d of %d drafted "
                 "accepted)", self.name, len(tokens), cached, result.total_ms,
                 "tool call" if result.tool_calls else "text", sum(d.tokens for d in self.decode_stats),
                 sum(d.steps for d in self.decode_stats), sum(d.accepted for d in self.decode_stats), drafted)
        return result

    def close(self) -> None:
        if self._llm is not None:
            with contextlib.suppress(Exception):  # best effort
                self._llm.close()
            self._llm = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
