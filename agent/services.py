"""The process-wide services the agent's tools use, built once from settings by the consultation.

:class:`KnowledgeService` opens the knowledge base once and builds the bundled corpus on first use;
:class:`ClassifierService` runs the classifier registry with this installation's device and model
directories. Both implement the Protocols in :mod:`agent.toolbox.context`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from agent.toolbox.context import ToolServices

if TYPE_CHECKING:
    from agent.settings import Settings
    from knowledge.base import KnowledgeBase
    from knowledge.config import KnowledgeConfig
    from knowledge.retrieve import Citation
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.config import ClassifierConfig
    from tools.classifiers.inference import Finding
    from tools.imaging import ImageStudy


class KnowledgeService:
    """The knowledge base of this process for one store: opened once, the bundled corpus built (or found
    up to date) on first use. While another process writes, searches see what is committed."""

    def __init__(self, config: KnowledgeConfig) -> None:
        self._config = config

    @property
    def base(self) -> KnowledgeBase:
        return shared_knowledge_base(self._config)

    def ensure_ready(self) -> None:
        self.base.ready()

    def search(self, query: str, kind: str, *, patient: str | None = None, k: int = 3) -> list[Citation]:
        return self.base.ready().search(query, kind, patient=patient, k=k)


_BASES: dict[str, KnowledgeBase] = {}
_BASES_LOCK = threading.Lock()


def shared_knowledge_base(config: KnowledgeConfig) -> KnowledgeBase:
    """One KnowledgeBase per store and process (a store has one writer lock and one snapshot)."""
    from knowledge.base import KnowledgeBase

    with _BASES_LOCK:
        kb = _BASES.get(config.location)
        if kb is None or kb.config != config:
            kb = _BASES[config.location] = KnowledgeBase(config)
        return kb


class ClassifierService:
    """The classifier registry with this installation's device and model directories."""

    def __init__(self, config: ClassifierConfig) -> None:
        self._config = config

    def models(self) -> list[Bundle]:
        from tools.classifiers.registry import list_models

        return list_models(self._config)

    def classify(self, study: ImageStudy, model: str | None, saliency: bool) -> Finding:
        from tools.classifiers.inference import classify

        return classify(study, model=model, config=self._config, saliency=saliency)


def build_services(settings: Settings) -> ToolServices:
    from agent.wiring import classifier_config, knowledge_config

    return ToolServices(knowledge=KnowledgeService(knowledge_config(settings)),
                        classifiers=ClassifierService(classifier_config(settings)))
