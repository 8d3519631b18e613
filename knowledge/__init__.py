"""The knowledge base: Chroma store, ingestion, hybrid retrieval, bundled corpus."""

from __future__ import annotations

from typing import Any

__all__ = ["Citation", "KnowledgeBase", "KnowledgeConfig", "ensure_bundled"]

_EXPORTS = {"Citation": "knowledge.retrieve", "KnowledgeBase": "knowledge.base",
            "KnowledgeConfig": "knowledge.config", "ensure_bundled": "knowledge.bootstrap"}


def __getattr__(name: str) -> Any:
    """Lazy exports: importing ``knowledge`` stays cheap (no Chroma, no model) until one is used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'knowledge' has no attribute {name!r}")
