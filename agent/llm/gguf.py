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
import ctypes
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from agent.llm.base import ChatResult, TokenCallback, ToolSchema
from agent.llm.speculative import CallDrafter, DecodeStats, call_complete, greedy_decode
from agent.llm.toolcalls import ToolCallParseError, calls_as_text, parse_tool_calls
from tools.errors import LLMError, ModelUnavailableError

log = logging.getLogger(__name__)

_CALL_OPENERS = ("<tool_call>", "{", "```", "[")
_MID_CALL = re.compile(r"<tool_call>|```(?:json|tool_call|JSON)?\s*[{\[]")  # a call starting after prose
_CALL_HEAD = '<tool_call>\n{"name": "'


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
            content += ("\n\n# Tools\n\nYou may call one or more functions. Function signatures are within "
                        "<tools></tools>:\n<tools>\n" + "\n".join(json.dumps(t.openai()["function"]) for t in tools)
                        + "\n</tools>\n\nFor each function call, return a JSON object within <tool_call></tool_call>"
                        " tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")
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


def busy_cores(interval_s: float = 0.25) -> float | None:
    """Cores in use by other work right now, from two samples of /proc/stat; None where unavailable.

    The load average is the wrong signal: it lags by a minute and counts tasks waiting on I/O, and some
    virtual machines sit at a load of 1 while idle (measured here: load 1.0 on an idle 2-core VM picked
    one thread, and the 1.5B guideline turn took 13.7 s instead of 8.7 s).
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def auto_threads() -> int:
    """All cores when the machine is idle, fewer when other work is using them.

    llama.cpp's worker threads spin while they wait for each other; on an oversubscribed CPU a thread
    count equal to the core count can be ten times slower than one thread (measured: 0.5B model,
    2 cores, 9 busy processes: 1 thread 2.3 s, 2 threads 19 s for the same 40 tokens).
    """
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if busy is None:  # no /proc (not Linux): fall back to the load average
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover - not on every platform
            return cores
    return max(1, min(cores, round(cores - busy)))


class GGUFBackend:
    """llama.cpp in-process. Loading is lazy (first :meth:`chat`); calls are serialised by a lock."""

    def __init__(self, model_path: Path, *, n_ctx: int = 8192, n_threads: int = 0, timeout_s: float = 120.0,
                 max_tokens: int = 512, name: str | None = None, seed: int = 0,
                 state_dir: Path | None = None) -> None:
        self.model_path = Path(model_path)
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
    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp
        except ImportError:
            raise ModelUnavailableError("the embedded LLM runtime is not installed: pip install 'radconsult[llm]' "
                                        "(llama-cpp-python)") from None
        if not self.model_path.is_file():
            raise ModelUnavailableError(f"GGUF model file not found: {self.model_path.name}")
        t0 = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                        n_threads_batch=self.n_threads, n_batch=512, seed=self.seed, verbose=False)
        except Exception as exc:  # llama.cpp raises ValueError / RuntimeError on a bad file
            raise ModelUnavailableError(f"could not load GGUF model {self.model_path.name}: {exc}") from None
        template = self._llm.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "ignore")
            bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "ignore") \
                if self._llm.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        log.info("loaded %s in %.1f s (ctx %d, threads %d)", self.model_path.name, time.perf_counter() - t0,
                 self.n_ctx, self.n_threads)
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
        import llama_cpp

        llm = self._llm
        if _common_prefix(list(llm._input_ids[: llm.n_tokens]), prefix) == len(prefix):
            return  # already in the KV cache
        path = self._state_path(prefix)
        if path is None or str(path) in self._prefix_done:
            return  # too short to matter, or saving failed before: let llama.cpp evaluate it
        ctx = llm._ctx.ctx
        if path.is_file():
            try:
                data = path.read_bytes()
                buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
                if llama_cpp.llama_state_set_data(ctx, buf, len(data)) != len(data):
                    raise RuntimeError("size mismatch")
                llm.input_ids[: len(prefix)] = prefix
                llm.n_tokens = len(prefix)
                log.info("restored the prompt prefix (%d tokens) from %s", len(prefix), path.name)
                return
            except Exception as exc:  # a stale or corrupt state file: recompute it
                log.warning("ignoring prefix state %s: %s", path.name, exc)
                llm.reset()
                path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        llm.reset()
        llm.eval(prefix)
        try:
            size = llama_cpp.llama_state_get_size(ctx)
            buf = (ctypes.c_uint8 * size)()
            n = llama_cpp.llama_state_get_data(ctx, buf, size)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.partial")
            tmp.write_bytes(bytes(buf)[:n])
            os.replace(tmp, path)
            stale = sorted(path.parent.glob(f"{self.model_path.stem}.prefix-*.kv"), key=lambda p: p.stat().st_mtime)
            for old in stale[:-3]:  # prompts or tools changed: keep the three newest states per model
                old.unlink(missing_ok=True)
        except Exception:
            self._prefix_done.add(str(path))  # do not retry a failing save in this process
            raise
        log.info("computed the prompt prefix (%d tokens) in %.1f s and saved it (%d MB)", len(prefix),
                 time.perf_counter() - t0, n // 2**20)

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
                                timeout_s=self.timeout_s, on_text=on_text, drafter=drafter, stats=stats)
            self.decode_stats.append(stats)
            return out
        text, finish, first = "", "", None
        try:
            stream = llm.create_completion(prompt_tokens, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                           stop=stop, stream=True, grammar=grammar, seed=self.seed)
            for chunk in stream:
                if first is None:
                    first = time.perf_counter()
                choice = chunk["choices"][0]
                text += choice.get("text") or ""
                finish = choice.get("finish_reason") or finish
                if time.perf_counter() > deadline:
                    raise LLMError(f"the language model timed out after {self.timeout_s:.0f} s")
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
        with self._lock:
            return self._chat(messages, tools, tool_choice, on_token, max_tokens or self.max_tokens)

    def _chat(self, messages, tools, tool_choice, on_token, max_tokens) -> ChatResult:
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        self.decode_stats = []
        llm = self._load()
        prompt, stop = self.render(messages, tools)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + min(max_tokens, 64) > self.n_ctx:
            raise LLMError(f"the conversation is too long for the model's context ({len(tokens)} tokens of "
                           f"{self.n_ctx}); start a new case or raise RADCONSULT_LLM_CTX")
        max_tokens = min(max_tokens, self.n_ctx - len(tokens))
        try:
            self._restore_or_save_prefix(self._prefix_tokens(messages, tools, tokens))
        except Exception as exc:  # the cache is an optimisation: never fail a turn for it
            log.warning("prompt prefix cache unavailable: %s", exc)
        cached = _common_prefix(list(llm._input_ids[: llm.n_tokens]), tokens)
        want_tools = bool(tools) and tool_choice != "none"
        state = {"streamed": 0, "decided": not want_tools, "call": False}

        def on_text(acc: str) -> bool:
            if not state["decided"]:
                head = acc.lstrip()
                if not head:
                    return True
                if any(head.startswith(o) for o in _CALL_OPENERS):
                    state["decided"], state["call"] = True, True
                    return False  # a tool call: stop here and decode it in the canonical form below
                if any(o.startswith(head) for o in _CALL_OPENERS):
                    return True  # still ambiguous: a prefix of an opener
                state["decided"] = True
            if want_tools and _MID_CALL.search(acc):
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
        ttft = (first - t0) * 1000 if first else None
        result = ChatResult(prompt_tokens=len(tokens), cached_tokens=cached, ttft_ms=ttft)
        if not state["decided"] and on_token is not None and text:
            on_token(text)
        if state["call"]:
            # Decode the call after the opening of Qwen's native form. Small models otherwise write
            # pretty-printed fenced JSON after a prose preamble: twice the tokens, and sometimes only the
            # arguments. Compact JSON in the trained format is faster and parses first time.
            call_tokens = llm.tokenize((prompt + _CALL_HEAD).encode("utf-8"), add_bos=False, special=True)
            body, finish, _ = self._stream(call_tokens, max_tokens=max_tokens, stop=stop, deadline=deadline,
                                           drafter=self._call_drafter(tools).draft,
                                           on_text=lambda acc: not call_complete(acc))
            if finish == "interrupted":  # the call object closed: the closing tag adds nothing
                body, finish = body + "\n</tool_call>", "stop"
            text = _CALL_HEAD + body
        if want_tools:
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
                # the free-form call is unusable: decode it again under the tool-call grammar
                log.info("tool call unusable (%s); re-decoding under the JSON-schema grammar", problem)
                schema = next((t.parameters for t in tools if t.name == failing), None)
                if schema is not None:
                    # the model chose a real tool: keep its choice, constrain only the arguments object
                    head = '<tool_call>\n{"name": ' + json.dumps(failing) + ', "arguments": '
                    grammar = self._grammar(schema)
                else:
                    head, grammar = "<tool_call>\n", self._grammar(tools)
                call_tokens = llm.tokenize((prompt + head).encode("utf-8"), add_bos=False, special=True)
                body, finish, _ = self._stream(call_tokens, max_tokens=max(max_tokens, 256), stop=stop,
                                               grammar=grammar, deadline=deadline)
                text = head + body + ("}" if schema is not None else "") + "\n</tool_call>"
                try:
                    result.tool_calls = parse_tool_calls(text, known)
                except ToolCallParseError as exc2:
                    result.parse_error = str(exc2)
            if result.tool_calls or result.parse_error:
                text = ""
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
