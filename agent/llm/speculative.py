"""Greedy decoding with drafted tokens for llama.cpp (speculative decoding without a draft model).

On a 2-core CPU, decoding one token of the 1.5b model costs about 33 ms and checking 8 tokens in one
batch about 117 ms, so every correctly guessed token is cheap. The guesses come from the structure of
what is being written, not from a second model:

- ``CallDrafter``: a tool call's JSON follows the tool's schema, so after a value and its comma the next
  key is known, and an unstated flag takes its default (``false``). Key names, punctuation and unstated
  flags are most of the tokens of a call.

Greedy acceptance keeps the output the model's own: a drafted token is kept only where it equals the
argmax at that position, and the first disagreement is replaced by the model's token. Batched and
single-token evaluation can differ in the last bits of a logit, so a near-tie could in principle break
the other way; the tests compare the two decoders on real prompts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.llm.llama_handle import LlamaHandle
from tools.errors import LLMError, LLMTimeoutError

MAX_DRAFT = 48  # a run of unstated flags is one batch; a 25-token batch costs about 8 single steps


@dataclass
class DecodeStats:
    steps: int = 0  # forward passes after the prompt
    drafted: int = 0  # tokens proposed
    accepted: int = 0  # proposed tokens the model agreed with
    tokens: int = 0  # tokens generated


@dataclass
class _Tool:
    keys: list[str]
    defaults: dict[str, str] = field(default_factory=dict)  # key -> JSON text of the guessed value
    openers: dict[str, str] = field(default_factory=dict)  # key -> how its value starts (' "' or ' ')
    enums: dict[str, list[str]] = field(default_factory=dict)


class CallDrafter:
    """Guesses the continuation of ``{"name": "<tool>", "arguments": {...}}`` from the tools' schemas.

    ``draft(text)`` takes the call decoded so far, starting right after ``{"name": "``, and returns the
    text it expects next ("" for no guess). Guesses stop where the model has to decide: a value the
    question may state, or a tool name that is still ambiguous.
    """

    def __init__(self, schemas: dict[str, dict[str, Any]]):
        self.tools: dict[str, _Tool] = {}
        for name, schema in schemas.items():
            props = schema.get("properties") or {}
            required = set(schema.get("required") or [])
            tool = _Tool(keys=list(props))
            for key, prop in props.items():
                # Guess only the value a model writes when the question is silent: false for an unstated
                # flag. A missing number or enum is as often stated as not, so the model picks it.
                if key not in required and prop.get("default") is False:
                    tool.defaults[key] = "false"
                # how a value starts is guessed for required keys only: an optional one is as often null
                if key in required and (prop.get("type") == "string" or "enum" in prop):
                    tool.openers[key] = ' "'
                elif key in required and prop.get("type") in ("number", "integer"):
                    tool.openers[key] = " "
                if "enum" in prop:
                    tool.enums[key] = [str(v) for v in prop["enum"]]
            self.tools[name] = tool

    def _rest_of_arguments(self, tool: _Tool, done: set[str], after: str | None) -> str:
        """Keys after ``after`` in schema order, with guessed defaults, until a value the model chooses."""
        start = tool.keys.index(after) + 1 if after in tool.keys else 0
        out = ""
        for key in tool.keys[start:]:
            if key in done:
                continue
            sep = ", " if out or after is not None else ""
            out += f'{sep}"{key}":'
            if key not in tool.defaults:
                return out + tool.openers.get(key, "")
            out += " " + tool.defaults[key]
        return out + "}}"

    def draft(self, text: str) -> str:
        if '"' not in text:  # still in the tool name
            names = [n for n in self.tools if n.startswith(text)]
            if len(names) != 1 or not text:
                return ""
            tool = self.tools[names[0]]
            return names[0][len(text):] + '", "arguments": {' + self._rest_of_arguments(tool, set(), None)
        tool = self.tools.get(text.split('"', 1)[0])
        if tool is not None and re.fullmatch(r'[^"]*", "arguments": ?', text):  # a forced call, before its "{"
            return "{" + self._rest_of_arguments(tool, set(), None)
        m = re.match(r'[^"]*", "arguments": ?\{', text)
        if tool is None or m is None:
            return ""
        args = text[m.end():]
        keys = re.findall(r'"(\w+)":', args)
        if not keys:  # the arguments just opened (a forced call starts here): the first key
            return self._rest_of_arguments(tool, set(), None) if not args.strip() else ""
        last = keys[-1]
        if args.count('"') % 2:  # inside a string value: finish an enum value once it is unambiguous
            partial = args[args.rindex('"') + 1:]
            values = [v for v in tool.enums.get(last, []) if v.startswith(partial)]
            if len(values) != 1 or not partial:
                return ""
            return values[0][len(partial):] + '"' + self._rest_of_arguments(tool, set(keys), last)
        if args.endswith(","):
            return self._rest_of_arguments(tool, set(keys), last)[1:]  # the comma is already written
        if re.search(r'(:\s*(null|true|false)|")$', args):  # a complete value
            return self._rest_of_arguments(tool, set(keys), last)
        return ""


def call_complete(body: str) -> bool:
    """Whether ``body`` (a call after ``{"name": "``) has closed its outer object: decoding can stop."""
    depth, in_str, esc = 1, True, False  # the name's opening quote is already written
    for ch in body:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return True
    return False


def greedy_decode(model: Any, prompt_tokens: list[int], *, max_tokens: int, stop: list[str], deadline: float,
                  timeout_s: float, on_text: Callable[[str], bool] | None = None,
                  drafter: Callable[[str], str] | None = None,
                  stats: DecodeStats | None = None,
                  progress: Callable[[], None] | None = None) -> tuple[str, str, float | None]:
    """Greedy decoding of ``prompt_tokens`` on a ``llama_cpp.Llama``, reusing its KV cache prefix.

    Returns (text, finish_reason, time of the first token). ``on_text(acc) -> bool`` sees the text so far
    after every accepted token and may end decoding by returning False (finish "interrupted").
    ``drafter(text) -> str`` proposes a continuation, checked in one batch. ``progress()`` is called after
    every forward pass (a supervising process reads it as a sign of life).
    """
    llm = LlamaHandle(model, progress)
    stats = stats if stats is not None else DecodeStats()
    n_ctx = model.n_ctx()
    keep = 0
    for a, b in zip(llm.cached(), prompt_tokens, strict=False):
        if a != b:
            break
        keep += 1
    keep = min(keep, len(prompt_tokens) - 1)  # re-evaluate at least one token: its logits start decoding
    try:
        llm.eval(prompt_tokens[max(keep, 0):], keep)  # drops the cache after the common prefix first
        nxt = llm.argmax(-1)
    except Exception as exc:
        raise LLMError(f"the language model failed while reading the prompt: {exc}") from None

    out: list[int] = []
    text, finish, first = "", "length", None

    def accept(tok: int) -> bool:
        """Add one generated token; False when decoding must end."""
        nonlocal text, finish, first
        if first is None:
            first = time.perf_counter()
        if llm.is_end(tok):
            finish = "stop"
            return False
        out.append(tok)
        stats.tokens += 1
        text = model.detokenize(out).decode("utf-8", errors="ignore")
        for s in stop:
            if s in text:
                text, finish = text[: text.index(s)], "stop"
                return False
        if on_text is not None and on_text(text) is False:
            finish = "interrupted"
            return False
        if len(out) >= max_tokens or llm.n_tokens + 1 >= n_ctx:
            finish = "length"
            return False
        if time.perf_counter() > deadline:
            raise LLMTimeoutError(f"the language model timed out after {timeout_s:.0f} s")
        return True

    while accept(nxt):
        draft: list[int] = []
        if drafter is not None and (guess := drafter(text)):
            draft = model.tokenize(guess.encode("utf-8"), add_bos=False, special=False)
        draft = draft[: min(MAX_DRAFT, max_tokens - len(out) - 1, n_ctx - llm.n_tokens - 2)]
        batch = [nxt, *draft]
        try:
            n_past = llm.decode(batch, logits_all=bool(draft))
        except Exception as exc:
            raise LLMError(f"the language model failed while generating: {exc}") from None
        stats.steps += 1
        stats.drafted += len(draft)
        k = 0
        nxt = llm.argmax(0) if draft else llm.argmax(-1)
        ended = False
        while k < len(draft) and nxt == draft[k]:
            k += 1
            stats.accepted += 1
            if not accept(draft[k - 1]):
                ended = True
                break
            nxt = llm.argmax(k)
        if ended:
            break
        if k < len(draft):  # drop the rejected guesses from the KV cache
            llm.truncate(n_past + 1 + k)
    return text, finish, first
