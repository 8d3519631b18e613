"""MONAI image classifiers: a registry of bundles, ``classify()``, calibration, abstention, OOD, saliency.

Public entry points (imported lazily so that importing the package stays cheap)::

    from tools.classifiers import classify, list_models, get_bundle
"""

from __future__ import annotations

from typing import Any

__all__ = ["Finding", "classify", "get_bundle", "list_models"]


def __getattr__(name: str) -> Any:
    if name in ("Finding", "classify"):
        from tools.classifiers import inference

        return getattr(inference, name)
    if name in ("get_bundle", "list_models"):
        from tools.classifiers import registry

        return getattr(registry, name)
    raise AttributeError(name)
