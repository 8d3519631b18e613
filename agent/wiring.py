"""The one place that turns :class:`~agent.settings.Settings` into the lower layers' own configs.

``tools/`` and ``knowledge/`` never import ``agent``: each takes a small frozen config of its own
(imaging limits, the de-identification policy, the classifier config, the knowledge-base config).
Entry points read the settings once and pass these configs down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agent.settings import Settings
    from knowledge.config import KnowledgeConfig
    from tools.classifiers.config import ClassifierConfig
    from tools.deid import DeidPolicy
    from tools.imaging import ImagingConfig, ImagingLimits


# --- imaging and de-identification ----------------------------------------------------------------
def deid_policy(settings: Settings) -> DeidPolicy:
    """The de-identification policy: the installation secret and the date rule (keep or shift)."""
    from tools.deid import DeidPolicy

    return DeidPolicy(secret_path=settings.secret_path, dates=settings.deid_dates,
                      max_shift_days=settings.deid_max_shift_days)


def imaging_limits(settings: Settings) -> ImagingLimits:
    """The image loader's input limits (file size, pixel values, frames, peak decode memory)."""
    from tools.imaging import ImagingLimits

    return ImagingLimits(max_file_bytes=settings.max_file_bytes, max_pixels=settings.max_pixels,
                         max_frames=settings.max_frames, max_decode_bytes=settings.max_decode_bytes)


def imaging_config(settings: Settings) -> ImagingConfig:
    """What ``tools.imaging.load`` needs: its limits and the de-identification policy."""
    from tools.imaging import ImagingConfig

    return ImagingConfig(deid=deid_policy(settings), limits=imaging_limits(settings))


# --- classifiers -------------------------------------------------------------------------------------
def classifier_config(settings: Settings) -> ClassifierConfig:
    """The classifiers' config: device, extra bundle directories, and the decode cache for training data."""
    from tools.classifiers.config import ClassifierConfig

    return ClassifierConfig(device=settings.device, model_dirs=tuple(settings.model_dirs),
                            cache_dir=settings.cache_dir / "classifier-data")


# --- knowledge base ----------------------------------------------------------------------------------
def knowledge_config(settings: Settings) -> KnowledgeConfig:
    """The knowledge base's config: store location, embedding model, limits, and the de-identification
    policy that reports need (installation secret, date rule)."""
    from knowledge.config import KnowledgeConfig

    return KnowledgeConfig(
        kb_dir=settings.kb_dir, cache_dir=settings.cache_dir, chroma_url=settings.chroma_url,
        embedding_model=settings.embedding_model, embedding_backend=settings.embedding_backend,
        max_ingest_bytes=settings.max_ingest_bytes, max_query_chars=settings.max_query_chars,
        batch_size=settings.kb_batch_size, deid=deid_policy(settings))
