"""Running a bundle: device choice, one cached network per (bundle, device), batched inference.

On CUDA the forward pass runs in batches under ``torch.autocast`` (float16); on CPU under
``torch.inference_mode`` in float32. Weights are loaded on first use and kept for the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools.classifiers.bundle import Bundle
from tools.classifiers.ood import capture_features, feature_module
from tools.errors import ModelUnavailableError

log = logging.getLogger(__name__)

CPU_BATCH = 64
CUDA_BATCH = 512


def resolve_device(setting: str = "auto", cuda_available: bool | None = None) -> str:
    """'auto' -> 'cuda' when a CUDA device is usable, else 'cpu'. 'cuda' without CUDA is an error."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if setting == "auto":
        return "cuda" if available else "cpu"
    if setting == "cuda" and not available:
        raise ModelUnavailableError("device is set to 'cuda' but no CUDA device is available; "
                                    "set RADCONSULT_DEVICE=auto or cpu")
    if setting not in ("cpu", "cuda"):
        raise ModelUnavailableError(f"unknown device {setting!r}; use auto, cpu or cuda")
    return setting


def autocast_for(device: str) -> torch.autocast | nullcontext:
    """Mixed precision on CUDA, nothing on CPU (float32 there keeps results reproducible)."""
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def batch_size_for(device: str) -> int:
    return CUDA_BATCH if device == "cuda" else CPU_BATCH


@dataclass(eq=False)
class LoadedModel:
    bundle: Bundle
    network: nn.Module
    device: str
    lock: threading.Lock

    def predict(self, inputs: np.ndarray, batch_size: int | None = None,
                with_features: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (N, C) with the bundle's test-time augmentation, and penultimate features (N, D).

        ``inputs`` are normalised model inputs (N, channels, H, W). Features come from the unaugmented
        pass only, as the OOD statistics were fitted that way.
        """
        return predict_logits(self.network, inputs, self.bundle.tta, self.device,
                              batch_size or batch_size_for(self.device), with_features=with_features,
                              lock=self.lock, feature_layer=self.bundle.feature_layer)


ASPECT_FACTORS = (0.9, 1.1)


def _across(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The content scaled by ``factor`` left-right in a frame of the same size (cropped, or edges repeated)."""
    w = x.shape[-1]
    nw = int(round(w * factor))
    z = F.interpolate(x, size=(x.shape[-2], nw), mode="bilinear", align_corners=False)
    if nw >= w:
        o = (nw - w) // 2
        return z[..., o:o + w].contiguous()
    p = w - nw
    return F.pad(z, (p // 2, p - p // 2, 0, 0), mode="replicate")


def tta_views(x: torch.Tensor, tta: list[str]) -> list[torch.Tensor]:
    """The input and its test-time views: "hflip" (mirrored left-right; never for chest films) and "aspect"
    (the content 10% narrower and 10% wider across: a film's aspect ratio then weighs less)."""
    views = [x]
    if "hflip" in tta:
        views.append(torch.flip(x, dims=[-1]))
    if "aspect" in tta:
        views += [_across(x, f) for f in ASPECT_FACTORS]
    return views


def predict_logits(network: nn.Module, inputs: np.ndarray, tta: list[str], device: str, batch_size: int,
                   with_features: bool = True, lock: threading.Lock | None = None,
                   feature_layer: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Batched forward pass; logits averaged over TTA views. Thread-safe when ``lock`` is given."""
    logits_out: list[np.ndarray] = []
    feats_out: list[np.ndarray] = []
    fmod = feature_module(network, feature_layer) if with_features else None
    with lock or nullcontext(), torch.inference_mode(), autocast_for(device):
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).to(device)
            views = tta_views(x, tta)
            if fmod is not None:
                with capture_features(fmod) as store:
                    first = network(views[0]).float()
                feats_out.append(store[0].numpy())
            else:
                first = network(views[0]).float()
            logits = first + sum((network(v).float() for v in views[1:]), torch.zeros_like(first))
            logits_out.append((logits / len(views)).cpu().numpy())
    logits = np.concatenate(logits_out) if logits_out else np.zeros((0, 0), np.float32)
    feats = np.concatenate(feats_out) if feats_out else None
    return logits, feats


_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(bundle: Bundle, device_setting: str = "auto") -> LoadedModel:
    """The network of ``bundle`` on the resolved device, loaded once per process."""
    device = resolve_device(device_setting)
    key = (str(Path(bundle.path).resolve()), device)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        log.info("loading classifier %s %s on %s", bundle.name, bundle.version, device)
        network = bundle.load_network().to(device)
        loaded = LoadedModel(bundle=bundle, network=network, device=device, lock=threading.Lock())
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Forget loaded networks (tests, or after replacing a bundle on disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Temporarily limit torch CPU threads (training on shared machines)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
