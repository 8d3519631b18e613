"""A chat backend built on its first call, so that a turn the rules answer never builds one.

Building a gguf backend resolves the packaged model (on a fresh data directory that joins and hashes
about a gigabyte) and its first chat starts the worker that loads the weights; a question answered by
the rules and a calculator needs neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agent.llm.base import ChatBackend, ChatResult, TokenCallback, ToolSchema


class LazyBackend:
    """A :class:`ChatBackend` that calls ``build`` on its first :meth:`chat` and delegates to the result;
    ``name`` is what it will be called until then (the configured model)."""

    name: str

    def __init__(self, build: Callable[[], ChatBackend], name: str) -> None:
        self._build = build
        self._backend: ChatBackend | None = None
        self._lock = threading.Lock()
        self.name = name

    @property
    def built(self) -> bool:
        """Whether a chat has needed the model (the backend exists)."""
        return self._backend is not None

    def _get(self) -> ChatBackend:
        with self._lock:
            if self._backend is None:
                self._backend = self._build()
                self.name = self._backend.name
            return self._backend

    def chat(self, messages: list[dict[str, Any]], tools: list[ToolSchema] | None = None, *,
             tool_choice: str = "auto", on_token: TokenCallback | None = None,
             max_tokens: int | None = None) -> ChatResult:
        return self._get().chat(messages, tools, tool_choice=tool_choice, on_token=on_token, max_tokens=max_tokens)

    def close(self) -> None:
        """Nothing to do: the backend it built is closed by whoever owns it (the build may return a shared one)."""
        return None
