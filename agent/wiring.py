"""The one place that turns :class:`~agent.settings.Settings` into the lower layers' own configs.

``tools/`` and ``knowledge/`` never import ``agent``: each takes a small frozen config of its own
(imaging limits, the de-identification policy, the classifier config, the knowledge-base config).
Entry points read the settings once and pass these configs down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.settings import Settings
    from tools.classifiers.config import ClassifierConfig


def classifier_config(settings: Settings) -> ClassifierConfig:
    """The classifiers' config: device, extra bundle directories, and the decode cache for training data."""
    from tools.classifiers.config import ClassifierConfig

    return ClassifierConfig(device=settings.device, model_dirs=tuple(settings.model_dirs),
                            cache_dir=settings.cache_dir / "classifier-data")
