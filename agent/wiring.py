"""The one place that turns :class:`~agent.settings.Settings` into the lower layers' own configs.

``tools/`` and ``knowledge/`` never import ``agent``: each takes a small frozen config of its own
(imaging limits, the de-identification policy, the classifier config, the knowledge-base config).
Entry points read the settings once and pass these configs down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.settings import Settings
    from knowledge.config import KnowledgeConfig


def knowledge_config(settings: Settings) -> KnowledgeConfig:
    """The knowledge base's config: store location, embedding model, limits, and the de-identification
    values that reports need (installation secret, date policy)."""
    from knowledge.config import KnowledgeConfig, ReportDeid

    return KnowledgeConfig(
        kb_dir=settings.kb_dir, cache_dir=settings.cache_dir, chroma_url=settings.chroma_url,
        embedding_model=settings.embedding_model, embedding_backend=settings.embedding_backend,
        max_ingest_bytes=settings.max_ingest_bytes, max_query_chars=settings.max_query_chars,
        batch_size=settings.kb_batch_size,
        deid=ReportDeid(secret_path=settings.secret_path, deid_dates=settings.deid_dates,
                        deid_max_shift_days=settings.deid_max_shift_days))
