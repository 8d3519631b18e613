"""Image -> model input, exactly as the bundled models were trained.

MedMNIST images were made by a centre square crop of the original and a resize to 28x28; training
reads them as uint8 / 255. At inference we take ``ImageStudy.display`` (float in [0, 1]), convert RGB
to grey, crop the centre square, resize with area averaging (``monai.transforms.Resize(mode="area")``)
and normalise with the training mean and standard deviation stored in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Resize

from tools.errors import InvalidImageError

MIN_SIDE = 8  # pixels; anything smaller carries no usable structure


@dataclass(frozen=True)
class CropBox:
    """The centre square taken from the original image, in original pixel coordinates."""

    top: int
    left: int
    side: int
    height: int  # original image height, pixels
    width: int   # original image width, pixels


def to_grey_2d(image: np.ndarray) -> np.ndarray:
    """Validate and reduce an image to one 2-D float32 plane in [0, 1].

    Accepts (H, W), (H, W, 3|4) RGB(A) and (1, H, W) single-frame stacks. Raises InvalidImageError for
    empty, non-finite, constant, too small or volumetric input.
    """
    arr = np.asarray(image)
    if arr.size == 0:
        raise InvalidImageError("the image is empty (no pixels)")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidImageError(f"pixel type {arr.dtype} is not a real number type")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if arr.ndim != 2:
        what = f"a volume or multi-frame object of {arr.shape[0]} frames" if arr.ndim == 3 else f"{arr.ndim}-D data"
        raise InvalidImageError(
            f"the classifiers take one 2-D image (a radiograph or an ultrasound frame); got {what} with "
            f"shape {tuple(image.shape)}: pick one frame first")
    if min(arr.shape) < MIN_SIDE:
        raise InvalidImageError(f"image of {arr.shape[0]}x{arr.shape[1]} pixels is too small "
                                f"(at least {MIN_SIDE}x{MIN_SIDE} needed)")
    if not np.isfinite(arr).all():
        raise InvalidImageError("the image contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-6:
        raise InvalidImageError(f"the image is constant (every pixel is {lo:g}): nothing to classify")
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InvalidImageError(f"display values must lie in [0, 1]; got [{lo:g}, {hi:g}]")
    return np.clip(arr, 0.0, 1.0)


def centre_square(plane: np.ndarray) -> tuple[np.ndarray, CropBox]:
    """The largest centred square of a 2-D plane and where it came from."""
    h, w = plane.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return plane[top:top + side, left:left + side], CropBox(top, left, side, h, w)


def prepare(image: np.ndarray, size: tuple[int, int], mean: float, std: float) -> tuple[np.ndarray, CropBox]:
    """Display image in [0, 1] -> normalised (1, size[0], size[1]) float32 array and its crop box."""
    plane = to_grey_2d(image)
    square, box = centre_square(plane)
    resized = Resize(spatial_size=size, mode="area")(torch.from_numpy(np.ascontiguousarray(square))[None])
    out = (np.asarray(resized, dtype=np.float32) - mean) / std
    return out.astype(np.float32), box


def normalise_uint8(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """MedMNIST uint8 (N, H, W) -> normalised float32 (N, 1, H, W), the training-time path."""
    return ((images.astype(np.float32) / 255.0 - mean) / std)[:, None]
