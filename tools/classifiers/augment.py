"""Training-time augmentation of a batch of scaled images, with MONAI's batched affine resampler.

Per-image MONAI dictionary transforms cost 10-50 ms per 224-px image on a CPU, more than the network's
forward and backward pass; here one :class:`monai.networks.layers.AffineTransform` call resamples the
whole batch (rotation, isotropic scale, small anisotropic stretch, translation, optional horizontal
flip), then a per-image gamma, contrast/brightness jitter and Gaussian noise are applied as tensor
arithmetic. All random numbers come from one seeded numpy Generator, so a run is reproducible.
Inputs and outputs are scaled images in [0, 1], shape (B, 1, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the random augmentation (0 turns a component off)."""

    rotate_deg: float = 10.0      # uniform in [-rotate_deg, rotate_deg]
    scale: float = 0.1            # isotropic zoom factor uniform in [1 - scale, 1 + scale]
    stretch: float = 0.05         # extra anisotropic factor on one axis, uniform in [1 - s, 1 + s]
    translate: float = 0.06       # shift as a fraction of the image side, each axis
    hflip: bool = False           # mirror left-right with probability 0.5
    gamma: float = 0.3            # gamma = exp(uniform(-gamma, gamma))
    contrast: float = 0.15        # x -> 0.5 + (x - 0.5) * uniform(1 - c, 1 + c) + uniform(-c/2, c/2)
    noise: float = 0.02           # Gaussian noise sigma uniform in [0, noise]
    padding: str = "border"       # what fills the corners: "border" (radiographs) or "zeros" (MR)

    def describe(self) -> str:
        parts = [f"affine (rotation +-{self.rotate_deg:g} deg, zoom +-{self.scale:g}, stretch +-{self.stretch:g}, "
                 f"shift +-{self.translate:g} of the side, {self.padding} padding)"]
        if self.hflip:
            parts.append("horizontal flip p=0.5")
        parts.append(f"gamma exp(+-{self.gamma:g}), contrast/brightness +-{self.contrast:g}, "
                     f"Gaussian noise sigma <= {self.noise:g}")
        return "; ".join(parts) + " (monai.networks.layers.AffineTransform, batched)"


class BatchAugment:
    """Callable: (B, 1, H, W) float tensor in [0, 1] -> augmented tensor, same shape."""

    def __init__(self, spec: AugmentSpec, seed: int) -> None:
        from monai.networks.layers import AffineTransform

        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.resample = AffineTransform(normalized=True, reverse_indexing=False, align_corners=False,
                                        padding_mode=spec.padding, mode="bilinear")

    def thetas(self, n: int) -> torch.Tensor:
        """(n, 2, 3) affine matrices in normalised coordinates (output -> input sampling)."""
        s, r = self.spec, self.rng
        angle = np.radians(r.uniform(-s.rotate_deg, s.rotate_deg, n))
        zoom = r.uniform(1 - s.scale, 1 + s.scale, n)
        stretch = r.uniform(1 - s.stretch, 1 + s.stretch, n)
        on_x = r.random(n) < 0.5
        sx = zoom * np.where(on_x, stretch, 1.0)
        sy = zoom * np.where(on_x, 1.0, stretch)
        flip = np.where(r.random(n) < 0.5, -1.0, 1.0) if s.hflip else np.ones(n)
        tx, ty = (r.uniform(-2 * s.translate, 2 * s.translate, n) for _ in range(2))
        cos, sin = np.cos(angle), np.sin(angle)
        # sample grid = R(angle) @ diag(1/sx, 1/sy) @ flip; zoom > 1 enlarges the content
        theta = np.zeros((n, 2, 3))
        theta[:, 0, 0] = cos / sx * flip
        theta[:, 0, 1] = -sin / sy
        theta[:, 1, 0] = sin / sx * flip
        theta[:, 1, 1] = cos / sy
        theta[:, 0, 2], theta[:, 1, 2] = tx, ty
        return torch.as_tensor(theta, dtype=torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s, r = self.spec, self.rng
        n = x.shape[0]
        x = self.resample(x, self.thetas(n))
        x = x.clamp(0.0, 1.0)
        shape = (n, 1, 1, 1)
        if s.gamma:
            g = torch.as_tensor(np.exp(r.uniform(-s.gamma, s.gamma, n)), dtype=x.dtype).view(shape)
            x = x.clamp_min(1e-6) ** g
        if s.contrast:
            c = torch.as_tensor(r.uniform(1 - s.contrast, 1 + s.contrast, n), dtype=x.dtype).view(shape)
            b = torch.as_tensor(r.uniform(-s.contrast / 2, s.contrast / 2, n), dtype=x.dtype).view(shape)
            x = 0.5 + (x - 0.5) * c + b
        if s.noise:
            sigma = torch.as_tensor(r.uniform(0, s.noise, n), dtype=x.dtype).view(shape)
            noise = torch.as_tensor(r.standard_normal(x.shape), dtype=x.dtype)
            x = x + sigma * noise
        return x.clamp(0.0, 1.0)
