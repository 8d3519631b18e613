"""Input limits and the loader config: checked from file sizes and headers before any pixel buffer exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.deid import DeidPolicy
from tools.errors import CorruptFileError, FileTooLargeError

MiB = 1 << 20
DECODE_OVERHEAD = 16 * MiB  # per load, whatever the image size


@dataclass(frozen=True)
class ImagingLimits:
    """Input limits, checked from file sizes and headers before any pixel buffer is allocated.

    ``max_file_bytes``: largest file (or series total), bytes. ``max_pixels``: most pixel values
    (rows x cols x frames x samples). ``max_frames``: most frames or slices. ``max_decode_bytes``: the
    peak memory one load may take, bytes, estimated from the header (see :func:`check_memory`): a
    small compressed file can declare a huge image.
    """

    max_file_bytes: int = 512 * MiB
    max_pixels: int = 512 * MiB
    max_frames: int = 2000
    max_decode_bytes: int = 4096 * MiB


@dataclass(frozen=True)
class ImagingConfig:
    """Everything :func:`load` needs: the input limits and the de-identification policy."""

    deid: DeidPolicy
    limits: ImagingLimits = field(default_factory=ImagingLimits)


MIN_SIDE = 2            # images with fewer rows or columns than this are rejected


def check_file_size(path: Path, limits: ImagingLimits) -> int:
    """The file's size in bytes; a typed error when it is empty or over ``limits.max_file_bytes``."""
    size = path.stat().st_size
    if size == 0:
        raise CorruptFileError(f"{path.name} is empty (0 bytes)")
    if size > limits.max_file_bytes:
        raise FileTooLargeError(f"{path.name} is {size / 2**20:.1f} MiB, over the limit of "
                                f"{limits.max_file_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_FILE_BYTES)")
    return size


def check_limits(name: str, rows: int, cols: int, frames: int, samples: int, config: ImagingConfig) -> None:
    if frames > config.limits.max_frames:
        raise FileTooLargeError(f"{name} has {frames} frames/slices, over the limit of {config.limits.max_frames} "
                                "(RADCONSULT_MAX_FRAMES)")
    n = rows * cols * frames * samples
    if n > config.limits.max_pixels:
        raise FileTooLargeError(f"{name} holds {n} pixel values ({frames}x{rows}x{cols}x{samples}), over "
                                f"the limit of {config.limits.max_pixels} (RADCONSULT_MAX_PIXELS)")


def decode_peak_bytes(values: int, itemsize: int, *, held: int = 0, copies: int = 1, out_values: int | None = None,
                      extra: int = 0) -> int:
    """Estimated peak memory of loading an image, in bytes: ``held`` (what the parsed file keeps: the
    encoded pixel data, file bytes), ``copies`` arrays of ``values`` stored values of ``itemsize`` bytes
    (the decoded array and the loader's own copies of it), ``extra`` bytes of format-specific buffers,
    and the two float32 arrays every study materialises on first read (``pixels`` in physical units and
    ``display`` in [0, 1]: 8 bytes per output value; ``out_values`` defaults to ``values``), plus
    :data:`DECODE_OVERHEAD` for what does not grow with the image (decoder libraries loaded on first use,
    bookkeeping). Measured on real files, the proportional part matches the peak within 1 %."""
    n_out = values if out_values is None else out_values
    return held + copies * values * itemsize + extra + 8 * n_out + DECODE_OVERHEAD


def check_memory(name: str, peak: int, what: str, limits: ImagingLimits) -> None:
    """FileTooLargeError when the estimated ``peak`` memory of a load is over ``limits.max_decode_bytes``;
    ``what`` says what the header declares (e.g. "20000x20000 pixels of 16 bits")."""
    if peak > limits.max_decode_bytes:
        raise FileTooLargeError(f"{name} declares {what}: decoding it would take about {peak / MiB:,.0f} MiB of "
                                f"memory, over the budget of {limits.max_decode_bytes / MiB:,.0f} MiB per load "
                                "(RADCONSULT_MAX_DECODE_BYTES)")
