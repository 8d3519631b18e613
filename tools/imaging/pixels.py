"""Pixels: the modality LUT (physical units), VOI windowing to a [0, 1] display image, colour scaling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tools.errors import InvalidImageError
from tools.imaging.dicom import header_int, header_numbers, is_multi
from tools.imaging.study import Deferred

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset


SAMPLE = 1 << 16       # values used to estimate display percentiles when there is no window


def modality_rescale(datasets: list[Dataset], first: Dataset, n_frames: int) -> tuple[Any, Any]:
    """Modality LUT as slope/intercept: scalars, or per-slice vectors of shape (D, 1, 1)."""
    def pair(d: Any) -> tuple[float, float]:
        slope = header_numbers(d, "RescaleSlope")
        inter = header_numbers(d, "RescaleIntercept")
        return (slope[0] if slope and slope[0] else 1.0), (inter[0] if inter else 0.0)

    if len(datasets) > 1:
        pairs = [pair(d) for d in datasets]
    else:
        pairs = [pair(first)]
        per_frame = first.get("PerFrameFunctionalGroupsSequence")
        shared = first.get("SharedFunctionalGroupsSequence")
        if shared and shared[0].get("PixelValueTransformationSequence"):
            pairs = [pair(shared[0].PixelValueTransformationSequence[0])]
        if per_frame and n_frames and len(per_frame) == n_frames and all(
                it.get("PixelValueTransformationSequence") for it in per_frame):
            pairs = [pair(it.PixelValueTransformationSequence[0]) for it in per_frame]
    dose_scaling = header_numbers(first, "DoseGridScaling")  # RT Dose: stored value x scaling = dose (Gy)
    if dose_scaling and dose_scaling[0] > 0:
        pairs = [(p[0] * dose_scaling[0], p[1] * dose_scaling[0]) for p in pairs]
    slopes = np.array([p[0] for p in pairs], dtype=np.float64)
    inters = np.array([p[1] for p in pairs], dtype=np.float64)
    if not (np.isfinite(slopes).all() and np.isfinite(inters).all()):
        raise InvalidImageError("the Rescale Slope or Rescale Intercept (or Dose Grid Scaling) is not a finite "
                                "number: the physical pixel values cannot be computed")
    if np.all(slopes == slopes[0]) and np.all(inters == inters[0]):
        return float(slopes[0]), float(inters[0])
    return slopes[:, None, None], inters[:, None, None]


def voi_window(ds: Dataset) -> tuple[float, float, str] | None:
    """(center, width, function) of the first VOI window, from the top level or the functional groups."""
    src: Any = ds
    if "WindowCenter" not in ds:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared and shared[0].get("FrameVOILUTSequence"):
            src = shared[0].FrameVOILUTSequence[0]
        else:
            per = ds.get("PerFrameFunctionalGroupsSequence")
            if per and per[0].get("FrameVOILUTSequence"):
                src = per[0].FrameVOILUTSequence[0]
    c, w = src.get("WindowCenter"), src.get("WindowWidth")
    if c is None or w is None:
        return None
    try:
        c = float(c[0] if is_multi(c) else c)
        w = float(w[0] if is_multi(w) else w)
    except (TypeError, ValueError, IndexError):
        return None
    if not np.isfinite([c, w]).all() or w <= 0:
        return None
    fn = str(src.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return c, w, fn


def grey_arrays(raw: np.ndarray, ref: Dataset, slope: Any, intercept: Any, *, invert: bool,
                 name: str) -> tuple[Deferred, Deferred, str]:
    """Deferred physical-unit pixels and display image of a grey image or volume, and where the display
    window came from: "lut" (a modality or VOI LUT), "header" (the VOI window) or "estimated" (none in
    the header: the robust 0.5-99.5 percentile range of the pixels, clipped)."""
    modality_lut = "ModalityLUTSequence" in ref
    voi_lut = "VOILUTSequence" in ref

    def physical() -> np.ndarray:
        if modality_lut:
            from pydicom.pixels import apply_modality_lut

            return np.ascontiguousarray(apply_modality_lut(raw, ref), dtype=np.float32)
        out = raw.astype(np.float32)
        if not (np.isscalar(slope) and slope == 1.0):
            out *= np.asarray(slope, dtype=np.float32)
        if not (np.isscalar(intercept) and intercept == 0.0):
            out += np.asarray(intercept, dtype=np.float32)
        return out

    flat = raw.reshape(-1)
    step = max(1, flat.size // SAMPLE)
    if flat[::step].min() == flat[::step].max() and raw.min() == raw.max():
        raise InvalidImageError(f"{name} is blank: every pixel has the same value")
    window = None if (modality_lut or voi_lut) else voi_window(ref)
    source = "lut" if (modality_lut or voi_lut) else "header" if window is not None else "estimated"
    if window is None and not (modality_lut or voi_lut):
        # no window in the header: robust range of a strided sample, in physical units
        sample = flat[::step].astype(np.float64)
        s = np.asarray(slope, dtype=np.float64).reshape(-1)
        i = np.asarray(intercept, dtype=np.float64).reshape(-1)
        sample = sample * float(np.median(s)) + float(np.median(i))
        lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            values = physical()
            lo, hi = float(values.min()), float(values.max())
        window = ((lo + hi) / 2 + 0.5, hi - lo + 1, "LINEAR")

    def display() -> np.ndarray:
        if modality_lut or voi_lut:
            from pydicom.pixels import apply_voi_lut

            values = physical()
            out = apply_voi_lut(values, ref) if voi_lut else values
            out = np.asarray(out, dtype=np.float32)
            lo, hi = float(out.min()), float(out.max())
            out = (out - lo) / (hi - lo if hi > lo else 1.0)
        else:
            c, w, fn = window  # type: ignore[misc]
            if fn == "SIGMOID":
                values = physical()
                out = (1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))).astype(np.float32)
            else:
                if fn == "LINEAR_EXACT":
                    a, b = 1.0 / w, -c / w + 0.5
                else:  # LINEAR (PS3.3 C.11.2.1.2.1)
                    a, b = 1.0 / max(w - 1.0, 1e-6), -(c - 0.5) / max(w - 1.0, 1e-6) + 0.5
                # fold the modality LUT and MONOCHROME1 inversion in, one multiply-add over the pixels:
                # display = a * (slope * raw + intercept) + b, inverted = 1 - display
                ga = np.asarray(slope, dtype=np.float64) * a
                gb = np.asarray(intercept, dtype=np.float64) * a + b
                if invert:
                    ga, gb = -ga, 1.0 - gb
                return _affine_clip(raw, ga, gb)
        if invert:
            np.subtract(1.0, out, out=out)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    return Deferred(physical, raw.shape), Deferred(display, raw.shape), source


_CHUNK = 1 << 16  # values per block: the multiply, add and clip of one block stay in the CPU cache


def _affine_clip(raw: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``clip(a * raw + b, 0, 1)`` computed block by block (about twice as fast as whole-array
    passes on a 2k x 2k radiograph); ``a``/``b`` are scalars or per-slice vectors of shape (D, 1, 1)."""
    out = np.empty(raw.shape, dtype=np.float32)
    if np.ndim(a) == 0 or np.size(a) == 1:
        blocks = [(raw.reshape(-1), out.reshape(-1), np.float32(np.ravel(a)[0]), np.float32(np.ravel(b)[0]))]
    else:
        av, bv = np.ravel(a).astype(np.float32), np.ravel(b).astype(np.float32)
        blocks = [(raw[k].reshape(-1), out[k].reshape(-1), av[k], bv[k]) for k in range(raw.shape[0])]
    for src, dst, fa, fb in blocks:
        for i in range(0, src.size, _CHUNK):
            o = dst[i:i + _CHUNK]
            np.multiply(src[i:i + _CHUNK], fa, out=o, dtype=np.float32)
            o += fb
            np.clip(o, 0.0, 1.0, out=o)
    return out


def color_arrays(raw: np.ndarray, ds: Dataset, photometric: str) -> tuple[Deferred, Deferred]:
    if photometric == "PALETTE COLOR":
        top = 255.0 if raw.max() <= 255 else 65535.0
    else:
        bits = header_int(ds, "BitsStored", 8) or 8
        top = float(2 ** bits - 1)

    def pixels() -> np.ndarray:
        return raw.astype(np.float32)

    def display() -> np.ndarray:
        out = np.multiply(raw, np.float32(1.0 / top), dtype=np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    return Deferred(pixels, raw.shape), Deferred(display, raw.shape)
