"""LLM backends behind one factory: ``make_backend(settings)`` reads ``settings.llm``.

``gguf:NAME_OR_PATH``  llama.cpp in-process (a packaged model name, or a .gguf path)
``openai:BASE_URL#MODEL``  any OpenAI-compatible server
``hf:LOCAL_DIR``  transformers in-process from a local directory
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.llm.base import ChatBackend, ChatResult, ToolCall, ToolSchema
from tools.errors import LLMError, ModelUnavailableError

if TYPE_CHECKING:
    from agent.llm.runner import RunnerSpec
    from agent.settings import Settings

__all__ = ["ChatBackend", "ChatResult", "ToolCall", "ToolSchema", "make_backend", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``(kind, target, model)`` from an ``RADCONSULT_LLM`` value; raises :class:`LLMError` when malformed."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest or kind not in ("gguf", "openai", "hf"):
        raise LLMError(f"RADCONSULT_LLM '{spec}' is not gguf:NAME_OR_PATH, openai:BASE_URL#MODEL or hf:LOCAL_DIR")
    if kind == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"openai backend needs an http(s) URL, got '{url}' (openai:http://host:port/v1#MODEL)")
        return kind, url, model or "default"
    return kind, rest, None


def make_backend(settings: Settings) -> ChatBackend:
    """The backend ``settings.llm`` names. Cheap: the model itself loads on the first call.

    gguf: and hf: models run in a supervised worker process (:mod:`agent.llm.worker`) unless
    ``settings.llm_isolation`` is "inprocess"; openai: talks to a server, already out of process.
    """
    kind, target, model = parse_spec(settings.llm)
    if kind == "openai":
        from agent.llm.openai_compat import OpenAIBackend

        return OpenAIBackend(target, model or "default", timeout_s=settings.llm_timeout_s,
                             max_tokens=settings.llm_max_tokens)
    spec, name = runner_spec(settings, kind, target)
    if settings.llm_isolation == "inprocess":
        from agent.llm.runner import build_backend

        return build_backend(spec)
    from agent.llm.worker import WorkerBackend

    return WorkerBackend(spec, name=name, stall_s=settings.llm_stall_s, timeout_s=settings.llm_timeout_s)


def runner_spec(settings: Settings, kind: str, target: str) -> tuple[RunnerSpec, str]:
    """What a runner loads for a gguf: or hf: model, and the backend's display name."""
    from agent.llm.runner import RunnerSpec

    if kind == "gguf":
        from agent.llm import packaged

        if target in packaged.PACKAGED:
            path = packaged.resolve(target, settings.cache_dir)
        else:
            path = Path(target).expanduser()
            if path.suffix != ".gguf" and not path.is_file():
                packaged.resolve(target, settings.cache_dir)  # raises UnknownNameError with near names
            if not path.is_file():
                raise ModelUnavailableError(f"GGUF model file not found: {path}")
        name = f"gguf:{target if target in packaged.PACKAGED else path.name}"
        return RunnerSpec("gguf", {"model_path": path, "n_ctx": settings.llm_ctx, "n_threads": settings.llm_threads,
                                   "timeout_s": settings.llm_timeout_s, "max_tokens": settings.llm_max_tokens,
                                   "name": name, "state_dir": settings.cache_dir / "llm",
                                   "repack": settings.llm_repack}), name
    path = Path(target).expanduser()
    return RunnerSpec("hf", {"model_dir": path, "timeout_s": settings.llm_timeout_s,
                             "max_tokens": settings.llm_max_tokens, "device": settings.device}), f"hf:{path.name}"
