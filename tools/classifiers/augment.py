"""Training-time augmentation of a batch of scaled images, with MONAI's batched affine resampler.

Per-image MONAI dictionary transforms cost 10-50 ms per 224-px image on a CPU, more than the network's
forward and backward pass; here one :class:`monai.networks.layers.AffineTransform` call resamples the
whole batch (rotation, isotropic scale, an anisotropic stretch, translation, optional horizontal flip),
then per-image blur (a separate strength across and down), a smooth multiplicative intensity field (MR
coil shading), gamma, contrast/brightness and Gaussian noise are applied as tensor arithmetic. All
random numbers come from one seeded numpy Generator, so a run is reproducible. Inputs and outputs are
scaled images in [0, 1], shape (B, 1, H, W).

What a recipe turns on is matched to its modality (see recipes.py): no left-right flip of a chest film
(it moves the heart to the right: dextrocardia, not a normal variant), a wide stretch range where the
training films' own aspect ratio told the classes apart (bench/kermany_shift.py), blur where their
sharpness did, and the intensity field for MR only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the random augmentation (0 turns a component off)."""

    rotate_deg: float = 10.0      # uniform in [-rotate_deg, rotate_deg]
    scale: float = 0.1            # isotropic zoom factor uniform in [1 - scale, 1 + scale]
    stretch: float = 0.05         # one axis (random) scaled by a factor log-uniform in [1/(1+s), 1+s]
    translate: float = 0.06       # shift as a fraction of the image side, each axis
    hflip: bool = False           # mirror left-right with probability 0.5
    gamma: float = 0.3            # gamma = exp(uniform(-gamma, gamma))
    contrast: float = 0.15        # x -> 0.5 + (x - 0.5) * uniform(1 - c, 1 + c) + uniform(-c/2, c/2)
    noise: float = 0.02           # Gaussian noise sigma uniform in [0, noise]
    padding: str = "border"       # what fills the corners: "border" (radiographs) or "zeros" (MR)
    blur: float = 0.0             # with p=0.5, Gaussian blur with sigma uniform in [0, blur] px, per axis
    bias_field: float = 0.0       # multiplicative field exp(sum c_k * poly_k(x, y)), c_k uniform +-bias_field

    def describe(self) -> str:
        parts = [f"affine (rotation +-{self.rotate_deg:g} deg, zoom +-{self.scale:g}, stretch of one axis up to "
                 f"x{1 + self.stretch:g} either way, shift +-{self.translate:g} of the side, {self.padding} padding)"]
        parts.append("horizontal flip p=0.5" if self.hflip else "no flips")
        if self.blur:
            parts.append(f"blur p=0.5, sigma <= {self.blur:g} px per axis")
        if self.bias_field:
            parts.append(f"smooth intensity field +-{self.bias_field:g} (second-order polynomial, log scale)")
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
        span = np.log1p(max(s.stretch, 0.0))
        stretch = np.exp(r.uniform(-span, span, n))
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

    def blurred(self, x: torch.Tensor) -> torch.Tensor:
        """Half the images blurred, each with its own sigma across and down (grouped separable convolution)."""
        n = x.shape[0]
        on = np.flatnonzero(self.rng.random(n) < 0.5)
        sig = self.rng.uniform(0.0, self.spec.blur, (n, 2))[on]
        if on.size == 0:
            return x
        radius = max(1, int(np.ceil(3 * self.spec.blur)))
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        m = on.size
        out = x[torch.as_tensor(on)].reshape(1, m, *x.shape[-2:])
        for axis in (0, 1):  # 0: across (width), 1: down (height)
            k = np.exp(-0.5 * (offsets[None] / np.maximum(sig[:, axis:axis + 1], 1e-3)) ** 2)
            k = torch.as_tensor(k / k.sum(1, keepdims=True), dtype=x.dtype)
            if axis == 0:
                out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), k.view(m, 1, 1, -1), groups=m)
            else:
                out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), k.view(m, 1, -1, 1), groups=m)
        x = x.clone()
        x[torch.as_tensor(on)] = out.reshape(m, *x.shape[1:])
        return x

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """A smooth multiplicative intensity field per image (second-order polynomial in log space)."""
        n, _, h, w = x.shape
        c = torch.as_tensor(self.rng.uniform(-self.spec.bias_field, self.spec.bias_field, (n, 5)), dtype=x.dtype)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype),
                                indexing="ij")
        basis = torch.stack([xx, yy, xx * yy, xx * xx - 1 / 3, yy * yy - 1 / 3])  # (5, H, W)
        return x * torch.exp(torch.einsum("nk,khw->nhw", c, basis))[:, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s, r = self.spec, self.rng
        n = x.shape[0]
        x = self.resample(x, self.thetas(n))
        x = x.clamp(0.0, 1.0)
        if s.blur:
            x = self.blurred(x)
        if s.bias_field:
            x = self.field(x).clamp(0.0, 1.0)
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
            gen = torch.Generator().manual_seed(int(r.integers(2**62)))
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
            x = x + sigma * noise
        return x.clamp(0.0, 1.0)
