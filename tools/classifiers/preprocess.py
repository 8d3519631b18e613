"""Image -> model input, exactly as the bundled models were trained.

Every bundle declares its preprocessing in ``metadata["preprocessing"]`` and this module is the one
implementation, used by training (on the decoded training images) and by inference (on
``ImageStudy.display``), so the two cannot drift apart:

1. ``to_grey_2d``: validate; RGB -> luminance; one 2-D plane in [0, 1].
1b. border (optional, ``"crop-dark"``): the dark margins (background outside the body, collimation) are
   cut off: a row or column is margin when fewer than a fifth of its pixels are brighter than a tenth of
   the image's robust range, at most a fifth of each side. The framing of a film then carries no
   information (in the Kermany training films it told the classes apart: bench/kermany_shift.py).
2. geometry: ``"centre-square"`` (the MedMNIST bundles: the largest centred square, then resize),
   ``"stretch"`` (the whole image resized to the model size without keeping the aspect ratio, as the
   Kermany 224-px images were made) or ``"pad-square"`` (the image centred on a square canvas filled with
   its minimum, then resized: the whole field of view at its own aspect ratio; for the square MR slices
   of the brain data set it is the same as a plain resize). Resizing uses
   ``monai.transforms.Resize(mode="area")``.
3. intensity: ``"fixed"`` (display values as they are), ``"percentiles"`` (the ``[lower, upper]``
   percentiles of the resized image mapped to [0, 1] and clipped, with
   ``monai.transforms.ScaleIntensityRange``): a display window, a modality LUT or a JPEG's contrast
   stretch then all give the model the same input; or ``"equalise"`` (percentiles, then histogram
   equalisation: each pixel becomes the fraction of the image darker than it, ties counted half), which
   makes any monotone grey-level curve (exposure, a site's post-processing) give the same input.
4. ``(x - mean) / std`` with the training statistics.

Steps 1-3 give the "scaled" image (training caches it and augments it); step 4 happens per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.errors import BundleError, InvalidImageError

MIN_SIDE = 8  # pixels; anything smaller carries no usable structure
GEOMETRIES = ("centre-square", "stretch", "pad-square")
INTENSITIES = ("fixed", "percentiles", "equalise")
BORDERS = ("keep", "crop-dark")
DARK_LEVEL = 0.10      # of the robust (0.5-99.5 percentile) range: darker pixels are background
DARK_SHARE = 0.20      # a row or column with fewer brighter pixels than this share is margin
MAX_BORDER_CUT = 0.20  # of each side, at most


@dataclass(frozen=True)
class CropBox:
    """The region of the original image that the model saw, in original pixel coordinates (``top`` and
    ``left`` are negative when the image was padded onto a larger square canvas)."""

    top: int
    left: int
    side: int    # side of the analysed square; for a stretched region the larger of its two sides
    height: int  # original image height, pixels
    width: int   # original image width, pixels
    crop_height: int | None = None  # analysed region, pixels; None means side x side
    crop_width: int | None = None

    @property
    def region(self) -> tuple[int, int]:
        """(height, width) of the analysed region."""
        return (self.crop_height or self.side, self.crop_width or self.side)


@dataclass(frozen=True)
class Preprocessing:
    """A bundle's declared input pipeline (see the module docstring)."""

    size: tuple[int, int]
    mean: float = 0.0
    std: float = 1.0
    geometry: str = "centre-square"
    intensity: str = "fixed"
    percentiles: tuple[float, float] = (0.5, 99.5)
    border: str = "keep"

    def __post_init__(self) -> None:
        if self.border not in BORDERS:
            raise BundleError(f"unknown preprocessing border {self.border!r}; use {' or '.join(BORDERS)}")
        if self.geometry not in GEOMETRIES:
            raise BundleError(f"unknown preprocessing geometry {self.geometry!r}; use {' or '.join(GEOMETRIES)}")
        if self.intensity not in INTENSITIES:
            raise BundleError(f"unknown preprocessing intensity {self.intensity!r}; use "
                              f"{' or '.join(INTENSITIES)}")
        if self.std <= 0 or min(self.size) < 1:
            raise BundleError("preprocessing needs std > 0 and a positive size")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise BundleError(f"preprocessing percentiles must satisfy 0 <= lower < upper <= 100; got {lo}, {hi}")

    @classmethod
    def from_metadata(cls, pre: dict[str, Any], fallback_size: tuple[int, int]) -> Preprocessing:
        """From ``metadata["preprocessing"]``; older bundles without geometry/intensity keys get the
        MedMNIST pipeline (centre square, fixed intensity)."""
        size = pre.get("size") or fallback_size
        try:
            return cls(size=(int(size[0]), int(size[1])), mean=float(pre.get("mean", 0.0)),
                       std=float(pre.get("std", 1.0)), geometry=str(pre.get("geometry", "centre-square")),
                       intensity=str(pre.get("intensity", "fixed")),
                       percentiles=tuple(float(p) for p in pre.get("percentiles", (0.5, 99.5)))[:2],
                       border=str(pre.get("border", "keep")))
        except (TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"malformed preprocessing block: {exc}") from exc

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": list(self.size), "geometry": self.geometry, "resize": "area",
                               "intensity": self.intensity, "mean": round(self.mean, 6), "std": round(self.std, 6)}
        if self.intensity in ("percentiles", "equalise"):
            out["percentiles"] = list(self.percentiles)
        if self.border != "keep":
            out["border"] = self.border
        return out


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
            f"the classifiers take one 2-D image (a radiograph, an MR slice or an ultrasound frame); got "
            f"{what} with shape {tuple(image.shape)}: pick one frame first")
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


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if plane.shape == tuple(size):
        return np.ascontiguousarray(plane, dtype=np.float32)
    import torch  # torch and MONAI load on first use: reading a bundle's metadata must not pay for them
    from monai.transforms import Resize

    resized = Resize(spatial_size=size, mode="area")(torch.from_numpy(np.ascontiguousarray(plane))[None])
    return np.asarray(resized, dtype=np.float32)[0]


def scale_percentiles(plane: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Map the [lower, upper] percentiles of ``plane`` to [0, 1], clipped. Falls back to the full range
    when the percentiles coincide (an image that is almost all one value)."""
    lo, hi = (float(v) for v in np.percentile(plane, [lower, upper]))
    if hi - lo < 1e-6:
        lo, hi = float(plane.min()), float(plane.max())
    if hi - lo < 1e-6:
        raise InvalidImageError("the image is constant after resizing: nothing to classify")
    from monai.transforms import ScaleIntensityRange

    out = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(plane)
    return np.asarray(out, dtype=np.float32)


def equalise(plane: np.ndarray) -> np.ndarray:
    """Histogram equalisation: each pixel -> the fraction of pixels below its value plus half of those equal
    to it, in (0, 1). Invariant to any increasing grey-level curve."""
    values, inverse, counts = np.unique(plane, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    cdf = (below + counts / 2.0) / plane.size
    return cdf[inverse].reshape(plane.shape).astype(np.float32)


def dark_border(plane: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows / columns of dark margin to cut (see the module docstring, step 1b)."""
    h, w = plane.shape
    step = max(1, int(np.sqrt(plane.size / 65536)))
    lo, hi = (float(v) for v in np.percentile(plane[::step, ::step], [0.5, 99.5]))
    if hi - lo < 1e-6:
        return 0, 0, 0, 0
    bright = plane > lo + DARK_LEVEL * (hi - lo)
    rows, cols = bright.mean(axis=1) >= DARK_SHARE, bright.mean(axis=0) >= DARK_SHARE

    def cut(keep: np.ndarray, n: int) -> tuple[int, int]:
        idx = np.flatnonzero(keep)
        limit = int(n * MAX_BORDER_CUT)
        if idx.size == 0:
            return 0, 0
        return min(int(idx[0]), limit), min(n - 1 - int(idx[-1]), limit)

    (top, bottom), (left, right) = cut(rows, h), cut(cols, w)
    return top, bottom, left, right


def scaled(image: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, CropBox]:
    """Steps 1-3: display image -> (H, W) float32 in [0, 1] at the model size, and the analysed region."""
    plane = to_grey_2d(image)
    full_h, full_w = plane.shape
    top = left = 0
    if spec.border == "crop-dark":
        top, bottom, left, right = dark_border(plane)
        plane = plane[top:full_h - bottom, left:full_w - right]
    out, box = _geometry(plane, spec)
    if spec.intensity in ("percentiles", "equalise"):
        out = scale_percentiles(out, *spec.percentiles)
    if spec.intensity == "equalise":
        out = equalise(out)
    if top or left or plane.shape != (full_h, full_w):  # the region in the coordinates of the whole image
        box = CropBox(box.top + top, box.left + left, box.side, full_h, full_w, box.crop_height, box.crop_width)
    return out, box


def _geometry(plane: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, CropBox]:
    """Step 2: the plane at the model size, and the analysed region in the plane's coordinates."""
    if spec.geometry == "centre-square":
        region, box = centre_square(plane)
    elif spec.geometry == "pad-square":
        h, w = plane.shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        region = np.full((side, side), plane.min(), dtype=np.float32)
        region[top:top + h, left:left + w] = plane
        box = CropBox(-top, -left, side, h, w)
    else:
        h, w = plane.shape
        region, box = plane, CropBox(0, 0, max(h, w), h, w, crop_height=h, crop_width=w)
    return _resize(region, spec.size), box


def normalise(scaled_images: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Step 4 on (H, W) or (N, H, W) scaled images -> (1, H, W) or (N, 1, H, W) float32 model input."""
    x = (np.asarray(scaled_images, dtype=np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
    return x[None] if x.ndim == 2 else x[:, None]


def prepare_spec(image: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, CropBox]:
    """Display image in [0, 1] -> normalised (1, H, W) float32 model input and its analysed region."""
    out, box = scaled(image, spec)
    return normalise(out, spec).astype(np.float32), box


def prepare(image: np.ndarray, size: tuple[int, int], mean: float, std: float) -> tuple[np.ndarray, CropBox]:
    """The MedMNIST pipeline (centre square, area resize, fixed intensity): (1, H, W) input and crop box."""
    return prepare_spec(image, Preprocessing(size=size, mean=mean, std=std))


def normalise_uint8(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """MedMNIST uint8 (N, H, W) -> normalised float32 (N, 1, H, W), the training-time path."""
    return ((images.astype(np.float32) / 255.0 - mean) / std)[:, None]
