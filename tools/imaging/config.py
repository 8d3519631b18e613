"""Input limits and the loader config: checked from file sizes and headers before any pixel buffer exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.deid import DeidPolicy
from tools.errors import CorruptFileError, FileTooLargeError

MiB = 1 << 20


@dataclass(frozen=True)
class ImagingLimits:
    """Input limits, checked from file sizes and headers before any pixel buffer is allocated.

    ``max_file_bytes``: largest file (or series total), bytes. ``max_pixels``: most pixel values
    (rows x cols x frames x samples). ``max_frames``: most frames or slices.
    """

    max_file_bytes: int = 512 * MiB
    max_pixels: int = 512 * MiB
    max_frames: int = 2000


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
