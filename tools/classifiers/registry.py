"""Registry of classifier bundles keyed by name: the bundled ones plus ``config.model_dirs``.

Each entry of ``model_dirs`` may be a bundle directory itself (it has configs/metadata.json) or a
directory whose sub-directories are bundles. A user bundle with the name of a bundled one replaces it
(so a site can ship a retrained model). Unknown names fail with the near names.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

from tools.classifiers.bundle import METADATA, Bundle
from tools.classifiers.config import ClassifierConfig
from tools.errors import BundleError, UnknownNameError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundles"


def _candidate_dirs(config: ClassifierConfig | None) -> list[Path]:
    roots = [BUNDLED_DIR, *(config.model_dirs if config is not None else ())]
    found: list[Path] = []
    for root in roots:
        if (root / METADATA).is_file():
            found.append(root)
        elif root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / METADATA).is_file())
        elif root != BUNDLED_DIR:
            log.warning("model directory %s does not exist; skipped", root)
    return found


def discover(config: ClassifierConfig | None = None) -> dict[str, Bundle]:
    """All readable bundles by name. A malformed user bundle is logged and skipped here; asking for it
    by name with :func:`get_bundle` raises its BundleError."""
    bundles: dict[str, Bundle] = {}
    for path in _candidate_dirs(config):
        try:
            bundle = Bundle.read(path)
        except BundleError as exc:
            log.warning("skipping classifier bundle at %s: %s", path.name, exc)
            continue
        bundles[bundle.name] = bundle
    return bundles


def list_models(config: ClassifierConfig | None = None) -> list[Bundle]:
    """Every readable bundle, sorted by name (``config=None``: the bundled ones only)."""
    return [b for _, b in sorted(discover(config).items())]


def get_bundle(name: str, config: ClassifierConfig | None = None) -> Bundle:
    """The bundle called ``name``; UnknownNameError naming the near ones when there is none."""
    bundles = discover(config)
    if name in bundles:
        return bundles[name]
    for path in _candidate_dirs(config):  # a broken bundle asked for by name: say why
        if path.name == name:
            return Bundle.read(path)
    near = difflib.get_close_matches(name, list(bundles), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    known = ", ".join(sorted(bundles)) or "none"
    raise UnknownNameError(f"no classifier named {name!r} (available: {known}){hint}")
