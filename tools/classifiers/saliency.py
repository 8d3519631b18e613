"""Grad-CAM saliency (monai.visualize.GradCAM) mapped back onto the original image.

The map explains the bundle's positive label (e.g. "pneumonia", "malignant") at the layer named in
the bundle's metadata (``saliency.target_layer``); a multi-class model explains its top label. It is
computed on the model input (the centre square, or the whole image stretched to the model size),
resized back to the analysed region and placed in a zero map of the original size, so it aligns pixel
for pixel with ``ImageStudy.display``. Values are in [0, 1]; 0 outside the analysed region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools.classifiers.preprocess import CropBox
from tools.errors import BundleError, InputError


def grad_cam(network: nn.Module, model_input: np.ndarray, target_layer: str, class_index: int,
             device: str = "cpu") -> np.ndarray:
    """Grad-CAM of one normalised input (C, H, W) -> (H, W) map in [0, 1] at model resolution."""
    from monai.visualize import GradCAM

    if target_layer not in dict(network.named_modules()):
        raise BundleError(f"saliency target layer {target_layer!r} is not a layer of the network")
    # Keep the raw ReLU'd map and scale by its maximum: MONAI's default min-max rescale turns a nearly
    # flat map into a wash over the whole image; max-scaling keeps unimportant regions at zero.
    cam = GradCAM(nn_module=network, target_layers=target_layer, postprocessing=lambda m: m)
    x = torch.from_numpy(np.ascontiguousarray(model_input))[None].to(device)
    with torch.enable_grad():
        result = cam(x, class_idx=class_index)
    heat = result[0, 0].detach().float().cpu().numpy()
    heat = np.nan_to_num(heat, nan=0.0)
    heat = np.maximum(heat, 0.0)
    hi = float(heat.max())
    return (heat / hi).astype(np.float32) if hi > 0 else np.zeros_like(heat, np.float32)


def to_original(heat: np.ndarray, box: CropBox) -> np.ndarray:
    """Model-resolution map -> (height, width) map of the original image (0 outside the analysed region)."""
    rh, rw = box.region
    t = torch.from_numpy(np.ascontiguousarray(heat))[None, None]
    up = F.interpolate(t, size=(rh, rw), mode="bilinear", align_corners=False)[0, 0].numpy()
    full = np.zeros((box.height, box.width), dtype=np.float32)
    r0, c0 = max(0, -box.top), max(0, -box.left)      # first region pixel inside the image
    i0, j0 = max(0, box.top), max(0, box.left)        # where it lands in the image
    nh, nw = min(rh - r0, box.height - i0), min(rw - c0, box.width - j0)
    full[i0:i0 + nh, j0:j0 + nw] = np.clip(up[r0:r0 + nh, c0:c0 + nw], 0.0, 1.0)
    return full


def _jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map: [0, 1] -> RGB floats in [0, 1]."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.concatenate([r, g, b], axis=-1)


def overlay(display: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a saliency map over the display image; returns uint8 RGB (H, W, 3) at original size."""
    base = np.asarray(display, dtype=np.float32)
    if base.ndim == 3 and base.shape[0] == 1:
        base = base[0]
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    base = np.clip(base[..., :3], 0.0, 1.0)
    if base.shape[:2] != heat.shape:
        raise InputError(f"saliency map {heat.shape} does not match the image {base.shape[:2]}")
    weight = (alpha * heat ** 2)[..., None]  # only salient regions are tinted; weak ones stay clear
    out = (1 - weight) * base + weight * _jet(heat)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_overlay(path: Path, display: np.ndarray, heat: np.ndarray) -> Path:
    """Write the overlay as a PNG at the original image's resolution."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"saliency output must be a .png file, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(display, heat), mode="RGB").save(path)
    return path
