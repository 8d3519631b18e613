"""PNG and JPEG (Pillow), 8- and 16-bit, grey and colour."""

from __future__ import annotations

from typing import Any

import numpy as np

from tools.errors import CorruptFileError, FileTooLargeError, InvalidImageError, UnsupportedFormatError
from tools.imaging.config import MIN_SIDE, ImagingConfig, check_limits, check_memory, decode_peak_bytes
from tools.imaging.study import Deferred, ImageStudy, SafeMetadata


def load_raster(fh: Any, name: str, config: ImagingConfig, warnings: list[str]) -> ImageStudy:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(fh)
    except Image.DecompressionBombError as exc:
        raise FileTooLargeError(f"{name} is larger than Pillow accepts (decompression-bomb guard): {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{name} is a corrupt PNG/JPEG file") from exc
    fmt = (im.format or "").lower()
    if fmt not in ("png", "jpeg", "mpo"):
        raise UnsupportedFormatError(f"{name} is a {im.format} image; PNG and JPEG are supported")
    cols, rows = im.size
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise InvalidImageError(f"{name} is a {rows}x{cols} image: too small to be read "
                                f"(at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    samples = 3 if im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV") else 1
    check_limits(name, rows, cols, 1, samples, config)
    # Pillow's image, the array copy and a mode conversion, then the float32 pixels and display
    itemsize = 4 if im.mode in ("I", "F") else 2 if im.mode.startswith("I;16") else 1
    check_memory(name, decode_peak_bytes(rows * cols * samples, itemsize, copies=3),
                 f"{rows}x{cols} pixels x {samples} sample(s) of {8 * itemsize} bits", config.limits)
    try:
        im.load()
        if fmt in ("jpeg", "mpo") and im.getexif().get(0x0112, 1) != 1:
            im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            warnings.append("the image's alpha channel (transparency) was dropped")
        if mode in ("P", "PA"):
            im = im.convert("RGB")
        elif mode == "LA":
            im = im.convert("L")
        elif mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode == "1":
            im = im.convert("L")
        arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptFileError(f"{name}: the {fmt.upper()} data is truncated or corrupt") from exc
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if (arr.ndim == 3 and mode in ("P", "PA") and np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 1], arr[..., 2])):
        arr = np.ascontiguousarray(arr[..., 0])  # a grey palette
    is_color = arr.ndim == 3
    if not is_color and arr.min() == arr.max():
        raise InvalidImageError(f"{name} is blank: every pixel has the same value")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidImageError(f"{name} holds NaN or infinite pixel values")

    if arr.dtype == np.uint8:
        lo, hi = 0.0, 255.0
    else:  # 16-bit / 32-bit grey: stretch the stored range (these files rarely use every bit)
        lo, hi = float(arr.min()), float(arr.max())
    scale = 1.0 / (hi - lo) if hi > lo else 1.0

    def pixels() -> np.ndarray:
        return arr.astype(np.float32)

    def display() -> np.ndarray:
        out = np.multiply(arr, np.float32(scale), dtype=np.float32)
        if lo:
            out -= np.float32(lo * scale)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    photometric = "RGB" if is_color else "MONOCHROME2"
    warnings.append("no pixel spacing in PNG/JPEG files: sizes in mm are unknown")
    meta = SafeMetadata(modality="OT", photometric=photometric, frames=1,
                        transfer_syntax=None, burned_in_annotation=None)
    return ImageStudy(pixels=Deferred(pixels, arr.shape), display=Deferred(display, arr.shape),
                      spacing=(None, None), source_format="png" if fmt == "png" else "jpeg",
                      metadata=meta, warnings=tuple(warnings))
