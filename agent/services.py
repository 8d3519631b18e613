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
    from knowledge.retrieve import Citation
    from tools.classifiers.bundle import Bundle
    from tools.classifiers.config import ClassifierConfig
    from tools.classifiers.inference import Finding
    from tools.imaging import ImageStudy


class KnowledgeService:
    """The knowledge base of this process: the bundled corpus is built once, on first use (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = False
        self._lock = threading.Lock()

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                from knowledge.bootstrap import ensure_bundled

                ensure_bundled(self._settings)
                self._ready = True

    def search(self, query: str, kind: str, *, patient: str | None = None, k: int = 3) -> list[Citation]:
        from knowledge.retrieve import search

        return search(query, kind, patient=patient, k=k, settings=self._settings)


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
    from agent.wiring import classifier_config

    return ToolServices(knowledge=KnowledgeService(settings), classifiers=ClassifierService(classifier_config(settings)))
