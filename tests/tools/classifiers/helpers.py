"""Helpers for the classifier tests: a small real MONAI bundle written by the test, MedMNIST studies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.conftest import shared_file
from tools.classifiers.bundle import instantiate_network, write_bundle
from tools.imaging import ImageStudy, SafeMetadata

TINY_NET: dict[str, Any] = {
    "_target_": "monai.networks.nets.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
    "block_inplanes": [4, 8, 8, 8], "spatial_dims": 2, "n_input_channels": 1, "num_classes": 2,
    "conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True,
}


def tiny_metadata(name: str, labels: list[str] | None = None, channels: int = 1) -> dict[str, Any]:
    labels = labels or ["normal", "abnormal"]
    return {
        "name": name, "version": "0.0.1", "labels": labels, "positive_label": labels[-1],
        "description": "test bundle", "intended_use": "tests only",
        "intended_use_rules": {"modalities": ["CR", "DX"], "body_parts": ["CHEST"],
                               "excluded_views": ["LL", "LAT"], "age_years": [0, 5]},
        "network_data_format": {
            "inputs": {"image": {"num_channels": channels, "spatial_shape": [28, 28]}},
            "outputs": {"pred": {"num_channels": len(labels)}}},
        "preprocessing": {"size": [28, 28], "mean": 0.5, "std": 0.25},
        "calibration": {"temperature": 1.5, "threshold": 0.5},
        "saliency": {"target_layer": "layer3"},
    }


def write_tiny_bundle(root: Path, name: str = "tiny-cxr", net: dict[str, Any] | None = None,
                      metadata: dict[str, Any] | None = None, weights: bool = True) -> Path:
    """A real (random-weight) MONAI ResNet bundle at root/name."""
    net = copy.deepcopy(net or TINY_NET)
    torch.manual_seed(0)
    state = instantiate_network(net).state_dict() if weights else None
    return write_bundle(root / name, metadata or tiny_metadata(name), net, state)


def medmnist(name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    path = shared_file(f"medmnist/{name}.npz")
    with np.load(path) as data:
        return data[f"{split}_images"], data[f"{split}_labels"][:, 0].astype(int)


def study_from(image: np.ndarray, **metadata: Any) -> ImageStudy:
    """An ImageStudy built from a real uint8 image (display = pixels / 255)."""
    display = image.astype(np.float32) / 255.0
    return ImageStudy(pixels=image.astype(np.float32), display=display, spacing=(None, None),
                      source_format="png", metadata=SafeMetadata(**metadata))


def cxr_meta(**extra: Any) -> dict[str, Any]:
    return {"modality": "CR", "body_part": "CHEST", "view_position": "PA", "patient_age_years": 3.0, **extra}
