"""The classifiers' own configuration: a small frozen value built by the agent layer from its Settings
(``agent.wiring.classifier_config``) and passed explicitly to ``classify()``, the registry and training.

``tools/`` never imports ``agent`` nor reads the environment; a caller without settings uses
``ClassifierConfig()`` (CPU or GPU chosen automatically, only the bundled models, no decode cache).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools.errors import SettingsError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ClassifierConfig:
    """Where classifiers run and where bundles and decoded training data are found.

    device: "auto" (CUDA when usable, else CPU), "cpu" or "cuda".
    model_dirs: extra bundle directories (a bundle itself, or a folder of bundles); a user bundle with
        the name of a bundled one replaces it.
    cache_dir: where decoded training archives are cached (None: decode every time).
    """

    device: str = "auto"
    model_dirs: tuple[Path, ...] = ()
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise SettingsError(f"unknown classifier device {self.device!r}; use one of {', '.join(DEVICES)}")
        object.__setattr__(self, "model_dirs", tuple(Path(p).expanduser() for p in self.model_dirs))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())

    @classmethod
    def with_dirs(cls, dirs: Iterable[str | Path], device: str = "auto") -> ClassifierConfig:
        """A config listing these bundle directories (tests, scripts)."""
        return cls(device=device, model_dirs=tuple(Path(p) for p in dirs))
