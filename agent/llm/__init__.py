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
    """The backend ``settings.llm`` names. Cheap: the model itself loads on the first call."""
    kind, target, model = parse_spec(settings.llm)
    if kind == "gguf":
        from agent.llm import packaged
        from agent.llm.gguf import GGUFBackend

        if target in packaged.PACKAGED:
            path = packaged.resolve(target, settings.cache_dir)
        else:
            path = Path(target).expanduser()
            if path.suffix != ".gguf" and not path.is_file():
                packaged.resolve(target, settings.cache_dir)  # raises UnknownNameError with near names
            if not path.is_file():
                raise ModelUnavailableError(f"GGUF model file not found: {path}")
        return GGUFBackend(path, n_ctx=settings.llm_ctx, n_threads=settings.llm_threads,
                           timeout_s=settings.llm_timeout_s, max_tokens=settings.llm_max_tokens,
                           name=f"gguf:{target if target in packaged.PACKAGED else path.name}",
                           state_dir=settings.cache_dir / "llm", repack=settings.llm_repack)
    if kind == "openai":
        from agent.llm.openai_compat import OpenAIBackend

        return OpenAIBackend(target, model or "default", timeout_s=settings.llm_timeout_s,
                             max_tokens=settings.llm_max_tokens)
    from agent.llm.hf import HFBackend

    return HFBackend(Path(target).expanduser(), timeout_s=settings.llm_timeout_s,
                     max_tokens=settings.llm_max_tokens, device=settings.device)
