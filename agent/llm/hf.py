"""transformers in-process backend for GPU servers that hold a model's weights in a local directory.

``hf:LOCAL_DIR`` names a directory written by ``save_pretrained`` (``config.json``, the weights as
safetensors or ``pytorch_model.bin``, the tokenizer files). Nothing is ever fetched from a hub: every
load passes ``local_files_only=True`` and ``trust_remote_code=False``.

Loading is lazy (first :meth:`HFBackend.chat`). Device: ``cuda`` when asked for or when ``auto`` finds
one (bfloat16 where the card supports it, else float16), otherwise the CPU in float32.

Prompt: the tokenizer's chat template with the tool schemas (``tools=``). When the tokenizer has no
template, or its template ignores tools, or it rejects the conversation's roles, the prompt falls back
to a plainer rendering with the tools described in the system message (Hermes-style
``<tool_call>`` instructions), so tool calling works the same way as with the other backends.

Decoding is greedy, bounded by ``max_tokens``, the model's context and a wall-clock limit (a stopping
criterion checked after every token; running past it raises :class:`LLMError`). Tokens stream
through ``on_token`` as they are generated (in the calling thread) unless the reply opens like a tool
call. Tool calls are parsed with the shared :func:`agent.llm.toolcalls.parse_tool_calls`
(``<tool_call>`` tags, fenced JSON, bare JSON).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.llm.base import ChatResult, TokenCallback, ToolSchema
from agent.llm.toolcalls import (
    ToolCallParseError,
    args_object,
    call_text,
    parse_tool_calls,
    starts_call,
    tools_instructions,
)
from tools.errors import LLMContextError, LLMError, LLMTimeoutError, ModelUnavailableError

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# stop strings of the plain fallback prompt (a new turn beginning)
_PLAIN_STOPS = ("\nUser:", "\nSystem:", "\nTool result:")


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style messages in the shape HF chat templates expect (tool-call arguments as objects).

    The input is not modified.
    """
    out = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("content") is None:
            msg["content"] = ""
        if msg.get("tool_calls"):
            calls = []
            for c in msg["tool_calls"]:
                fn = dict(c.get("function", c))
                fn["arguments"] = args_object(fn.get("arguments", {}))
                calls.append({"id": c.get("id", ""), "type": "function", "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def simple_messages(messages: list[dict[str, Any]], tools: list[ToolSchema] | None) -> list[dict[str, Any]]:
    """Only user/assistant turns, strictly alternating: for templates that reject system or tool roles.

    The system message (with the tool block) opens the first user turn; tool results become user turns
    wrapped in ``<tool_response>``; tool calls become ``<tool_call>`` text in the assistant turn.
    """
    system = "\n\n".join(m.get("content") or "" for m in messages if m["role"] == "system")
    if tools:
        system = (system + "\n\n" if system else "") + tools_instructions(tools)
    turns: list[dict[str, Any]] = []
    for msg in messages:
        role, content = msg["role"], msg.get("content") or ""
        if role == "system":
            continue
        if role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        elif role == "assistant" and msg.get("tool_calls"):
            content = (content + "\n" if content else "") + call_text(msg)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if system:
        if turns and turns[0]["role"] == "user":
            turns[0]["content"] = system + "\n\n" + turns[0]["content"]
        else:
            turns.insert(0, {"role": "user", "content": system})
    return turns


def plain_prompt(messages: list[dict[str, Any]], tools: list[ToolSchema] | None) -> str:
    """A template-free prompt (``System:`` / ``User:`` / ``Assistant:`` lines) with the tools in the system part."""
    parts: list[str] = []
    system = "\n\n".join(m.get("content") or "" for m in messages if m["role"] == "system")
    if tools:
        system = (system + "\n\n" if system else "") + tools_instructions(tools)
    if system:
        parts.append(f"System: {system}")
    for msg in messages:
        role, content = msg["role"], msg.get("content") or ""
        if role == "system":
            continue
        if role == "tool":
            parts.append(f"Tool result: <tool_response>\n{content}\n</tool_response>")
        elif role == "assistant":
            if msg.get("tool_calls"):
                content = (content + "\n" if content else "") + call_text(msg)
            parts.append(f"Assistant: {content}")
        else:
            parts.append(f"User: {content}")
    parts.append("Assistant:")
    return "\n\n".join(parts)


def parse_reply(text: str, tools: list[ToolSchema] | None, tool_choice: str = "auto") -> ChatResult:
    """A :class:`ChatResult` (text, or tool calls, or a parse error) from a decoded reply.

    With ``tool_choice="none"`` or no tools the reply is text. Otherwise the shared parser looks for
    ``<tool_call>`` tags, fenced or bare JSON; a call that names an unknown tool or does not decode sets
    ``parse_error`` (and no text), so the agent loop can feed the error back for one retry.
    """
    result = ChatResult(text=text)
    if tools and tool_choice != "none":
        try:
            result.tool_calls = parse_tool_calls(text, {t.name for t in tools})
        except ToolCallParseError as exc:
            result.parse_error = str(exc)
        if result.tool_calls or result.parse_error:
            result.text = ""
    return result


def resolve_device(device: str) -> tuple[str, Any]:
    """``(device, dtype)`` for a ``Settings.device`` value: auto picks CUDA when present."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ModelUnavailableError(f"unknown device '{device}' (auto, cpu or cuda)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("RADCONSULT_DEVICE=cuda but no CUDA device is available to torch; "
                                    "use auto or cpu")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu", torch.float32
    return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _stopping_criteria_class() -> type:
    """A StoppingCriteria that ends decoding past a wall-clock deadline or at a stop string."""
    import torch
    from transformers import StoppingCriteria

    class _Stop(StoppingCriteria):
        def __init__(self, deadline: float, tokenizer: Any, prompt_len: int, stops: tuple[str, ...],
                     progress: Callable[[], None] | None = None) -> None:
            self.deadline = deadline
            self.progress = progress
            self.tokenizer = tokenizer
            self.prompt_len = prompt_len
            self.stops = stops
            self.timed_out = False

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.progress is not None:  # once per generated token: the worker's sign of life
                self.progress()
            done = False
            if time.perf_counter() > self.deadline:
                self.timed_out = done = True
            elif self.stops:
                tail = self.tokenizer.decode(input_ids[0, self.prompt_len:][-16:], skip_special_tokens=True)
                done = any(s in tail for s in self.stops)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return _Stop


class _Streamer:
    """Receives generated token ids from ``generate`` (in the calling thread); decodes and streams text.

    Holds the reply back while it might still be a tool call, and holds back a tail as long as the
    longest stop string so that a stop string is never streamed.
    """

    def __init__(self, tokenizer: Any, on_token: TokenCallback | None, want_tools: bool,
                 stops: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.on_token = on_token
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=0)
        self.ids: list[int] = []
        self.prompt_seen = False
        self.first: float | None = None
        self.decided = not want_tools
        self.is_call = False
        self.streamed = ""

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        if self.first is None:
            self.first = time.perf_counter()
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        if self.on_token is not None:
            self._emit()

    def end(self) -> None:
        return None

    def _emit(self) -> None:
        text = _cut(self.tokenizer.decode(self.ids, skip_special_tokens=True), self.stops)
        text = text.rstrip("\ufffd")  # an incomplete multi-byte character
        if self.hold:
            text = text[: max(0, len(text) - self.hold)]
        if not self.decided:
            head = text.lstrip()
            if not head:
                return
            kind = starts_call(head)
            if kind is None:
                return  # still ambiguous
            self.decided, self.is_call = True, kind
            if kind:
                return
        if self.is_call or self.on_token is None:
            return
        if len(text) > len(self.streamed) and text.startswith(self.streamed):
            self.on_token(text[len(self.streamed):])
            self.streamed = text

    def flush(self, answer: str) -> None:
        """Stream the rest of the final answer text (held-back tail, or a reply that only looked like a call)."""
        if self.on_token is not None and answer.startswith(self.streamed) and len(answer) > len(self.streamed):
            self.on_token(answer[len(self.streamed):])
            self.streamed = answer


def _cut(text: str, stops: tuple[str, ...]) -> str:
    idx = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(idx)] if idx else text


class HFBackend:
    """transformers in-process from ``model_dir``. Loading is lazy; calls are serialised by a lock."""

    name: str

    def __init__(self, model_dir: Path, *, timeout_s: float = 120.0, max_tokens: int = 512,
                 device: str = "auto", name: str | None = None,
                 progress: Callable[[], None] | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.progress = progress
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.device = device
        self.name = name or f"hf:{self.model_dir.name}"
        self._model: Any = None
        self._tokenizer: Any = None
        self._torch_device = "cpu"
        self._lock = threading.Lock()

    # --- loading --------------------------------------------------------------------------------
    def _check_dir(self) -> None:
        d = self.model_dir
        if d.is_file():
            hint = " (a .gguf file: use gguf:PATH)" if d.suffix == ".gguf" else ""
            raise ModelUnavailableError(f"hf: needs a model directory, not a file: {d}{hint}")
        if not d.is_dir():
            raise ModelUnavailableError(f"transformers model directory not found: {d}")
        if not (d / "config.json").is_file():
            raise ModelUnavailableError(f"{d} is not a transformers model directory (no config.json); "
                                        "save one with save_pretrained or copy the model's files there")
        if not any((d / f).is_file() for f in _WEIGHT_FILES):
            raise ModelUnavailableError(f"no model weights in {d} (expected one of {', '.join(_WEIGHT_FILES)})")
        if not any((d / f).is_file() for f in _TOKENIZER_FILES):
            raise ModelUnavailableError(f"no tokenizer files in {d} (expected tokenizer.json or "
                                        "tokenizer_config.json)")

    def load(self) -> dict[str, Any]:
        """Load the model now; where it runs."""
        t0 = time.perf_counter()
        self._load()
        return {"load_s": round(time.perf_counter() - t0, 2), "device": self._torch_device}

    def _load(self) -> tuple[Any, Any]:
        if self._model is not None:
            return self._model, self._tokenizer
        self._check_dir()
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ModelUnavailableError("the transformers backend needs torch and transformers: "
                                        "pip install torch transformers") from None
        device, dtype = resolve_device(self.device)
        t0 = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True,
                                                      trust_remote_code=False)
        except Exception as exc:
            raise ModelUnavailableError(f"could not load the tokenizer in {self.model_dir}: {exc}") from None
        try:
            model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), local_files_only=True,
                                                         trust_remote_code=False, dtype=dtype)
            model.to(device)
            model.eval()
        except Exception as exc:  # unknown architecture, corrupt weights, out of memory ...
            raise ModelUnavailableError(f"could not load the model in {self.model_dir}: {exc}") from None
        self._model, self._tokenizer, self._torch_device = model, tokenizer, device
        log.info("loaded %s on %s (%s) in %.1f s", self.model_dir.name, device, str(dtype).removeprefix("torch."),
                 time.perf_counter() - t0)
        return model, tokenizer

    def context_length(self) -> int | None:
        """The model's context window in tokens, when its config states one (loads the model)."""
        model, _ = self._load()
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(model.config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # --- prompt ---------------------------------------------------------------------------------
    def render(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None) -> tuple[str, tuple[str, ...]]:
        """The prompt text and stop strings for ``messages`` (loads the tokenizer for its template)."""
        _, tok = self._load()
        template = None
        if tok.chat_template:
            with contextlib.suppress(Exception):
                template = tok.get_chat_template(tools=[t.openai() for t in tools] if tools else None)
        if not template:
            return plain_prompt(messages, tools), _PLAIN_STOPS
        native_tools = bool(tools) and "tools" in template
        attempts: list[tuple[list[dict[str, Any]], Any]] = []
        if native_tools or not tools:
            attempts.append((template_messages(messages), [t.openai() for t in tools] if tools else None))
        if tools and not native_tools:
            # the template would silently drop the tools: describe them in the system message
            block = tools_instructions(tools)
            msgs = template_messages(messages)
            if msgs and msgs[0]["role"] == "system":
                msgs[0] = {**msgs[0], "content": (msgs[0]["content"] + "\n\n" + block).strip()}
            else:
                msgs.insert(0, {"role": "system", "content": block})
            attempts.append((msgs, None))
        attempts.append((simple_messages(messages, tools), None))  # templates without system/tool roles
        last: Exception | None = None
        for msgs, schema in attempts:
            try:
                prompt = tok.apply_chat_template(msgs, tools=schema, tokenize=False, add_generation_prompt=True)
                return str(prompt), ()
            except Exception as exc:  # jinja TemplateError ("system role not supported" ...)
                last = exc
        log.warning("the chat template rejected the conversation (%s); using a plain prompt", last)
        return plain_prompt(messages, tools), _PLAIN_STOPS

    # --- generation -----------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        with self._lock:
            return self._chat(messages, tools, tool_choice, on_token, max_tokens or self.max_tokens)

    def _chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None, tool_choice: str,
              on_token: TokenCallback | None, max_tokens: int) -> ChatResult:
        import torch

        model, tok = self._load()
        t0 = time.perf_counter()  # the limit covers the turn, not the one-time load
        deadline = t0 + self.timeout_s
        prompt, stops = self.render(messages, tools)
        # a chat template writes its own BOS; the plain fallback (stop strings set) needs the tokenizer's
        enc = tok(prompt, add_special_tokens=bool(stops), return_tensors="pt")
        input_ids = enc["input_ids"].to(self._torch_device)
        attention = enc.get("attention_mask")
        attention = attention.to(self._torch_device) if attention is not None else torch.ones_like(input_ids)
        n_prompt = int(input_ids.shape[1])
        ctx = self.context_length()
        if ctx is not None:
            if n_prompt + min(max_tokens, 64) > ctx:
                raise LLMContextError(f"the conversation is too long for the model's context ({n_prompt} tokens of "
                               f"{ctx}); start a new case")
            max_tokens = min(max_tokens, ctx - n_prompt)
        want_tools = bool(tools) and tool_choice != "none"
        streamer = _Streamer(tok, on_token, want_tools, stops)
        stop = _stopping_criteria_class()(deadline, tok, n_prompt, stops, self.progress)
        gen_cfg = self._generation_config(max_tokens)
        try:
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_cfg,
                                     stopping_criteria=[stop], streamer=streamer)
        except torch.cuda.OutOfMemoryError:
            raise LLMError("the language model ran out of GPU memory; shorten the conversation or use a "
                           "smaller model") from None
        except Exception as exc:
            raise LLMError(f"the language model failed while generating: {exc}") from None
        if stop.timed_out:
            raise LLMTimeoutError(f"the language model timed out after {self.timeout_s:g} s")
        new_ids = out[0, n_prompt:].tolist()
        text = _cut(tok.decode(new_ids, skip_special_tokens=True), stops)
        if want_tools and "<tool_call>" not in text:
            # some tokenizers mark <tool_call> as a special token, which the decode above drops
            raw = _cut(tok.decode(new_ids, skip_special_tokens=False), stops)
            if "<tool_call>" in raw:
                for special in tok.all_special_tokens:
                    if "tool_call" not in special:
                        raw = raw.replace(special, "")
                text = raw
        result = parse_reply(text, tools, tool_choice)
        if result.text:
            streamer.flush(result.text)
        ended = bool(new_ids) and new_ids[-1] in self._eos_ids()
        if len(new_ids) >= max_tokens and not ended and not any(s in tok.decode(new_ids) for s in stops):
            result.finish_reason = "length"
            if not result.tool_calls:
                log.warning("answer cut at max_tokens=%d", max_tokens)
        else:
            result.finish_reason = "stop"
        result.prompt_tokens = n_prompt
        result.completion_tokens = len(new_ids)
        result.ttft_ms = (streamer.first - t0) * 1000 if streamer.first else None
        result.total_ms = (time.perf_counter() - t0) * 1000
        log.info("llm %s: %d prompt tokens, %d generated, %.0f ms, %s", self.name, n_prompt, len(new_ids),
                 result.total_ms, "tool call" if result.tool_calls else "text")
        return result

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for value in (getattr(self._model.generation_config, "eos_token_id", None), self._tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(v for v in value if isinstance(v, int))
        return ids

    def _generation_config(self, max_tokens: int) -> Any:
        """Greedy decoding with the model's own end-of-turn tokens, and no sampling knobs left set."""
        import copy

        cfg = copy.deepcopy(self._model.generation_config)
        cfg.max_new_tokens = max_tokens
        cfg.do_sample = False
        cfg.num_beams = 1
        for knob in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            if hasattr(cfg, knob):
                setattr(cfg, knob, None)
        eos = sorted(self._eos_ids())
        cfg.eos_token_id = eos or None
        if cfg.pad_token_id is None:
            cfg.pad_token_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None \
                else (eos[0] if eos else None)
        return cfg

    def close(self) -> None:
        """Drop the model (and free GPU memory); the next call loads it again."""
        if self._model is None:
            return
        on_cuda = self._torch_device == "cuda"
        self._model = self._tokenizer = None
        if on_cuda:
            import torch

            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
