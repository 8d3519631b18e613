"""NIfTI-1/2 (.nii, .nii.gz; nibabel), 2-D or 3-D, reoriented to the radiological layout."""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np

from tools.errors import CorruptFileError, InputError, InvalidImageError, UnsupportedFormatError
from tools.imaging.config import MIN_SIDE, ImagingConfig, check_limits, check_memory, decode_peak_bytes
from tools.imaging.pixels import SAMPLE
from tools.imaging.study import Deferred, ImageStudy, SafeMetadata

HEADER_BYTES = 540  # a NIfTI-2 header (NIfTI-1 needs 348)


def load_nifti_stream(fh: Any, name: str, config: ImagingConfig, warnings: list[str], size: int) -> ImageStudy:
    """A NIfTI file (plain or gzip) from the open binary stream ``fh`` of ``size`` bytes."""
    fh.seek(0)
    compressed = fh.read(2) == b"\x1f\x8b"
    fh.seek(0)
    stream: Any = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
    try:
        header_bytes, klass, header = _read_header(stream, name)
        shape, shape3 = _checked_shape(header, name, config)
        itemsize = _voxel_itemsize(header, name)
        values = int(np.prod(shape3))
        # the voxel bytes read (and joined to the header), nibabel's array and its reorientation, the
        # float32 data (scaled) and the contiguous volume, then the float32 pixels and display
        check_memory(name, decode_peak_bytes(values, itemsize, copies=4, extra=8 * values),
                     f"{'x'.join(map(str, shape3))} voxels of {8 * itemsize} bits", config.limits)
        expected = _voxel_offset(header) + values * itemsize
        if not compressed and expected > size:
            raise CorruptFileError(f"{name} is truncated: its header announces {expected} bytes, the file has {size}")
        data, zooms = _read_voxels(stream, header_bytes, klass, expected, len(shape), name)
    finally:
        if compressed:
            stream.close()
    return _study(data, shape3, zooms, name, warnings)


def _read_header(stream: Any, name: str) -> tuple[bytes, Any, Any]:
    import nibabel as nib

    try:
        header_bytes = stream.read(HEADER_BYTES)
        klass = nib.Nifti2Image if header_bytes[4:8] in (b"n+2\x00", b"ni2\x00") else nib.Nifti1Image
        header = klass.header_class.from_fileobj(io.BytesIO(header_bytes), check=False)
    except Exception as exc:
        raise CorruptFileError(f"{name} has a corrupt NIfTI header") from exc
    if header.get("magic", b"").tobytes().startswith(b"ni"):
        raise UnsupportedFormatError(f"{name} is the header of a NIfTI .hdr/.img pair; "
                                     "convert it to a single .nii file")
    return header_bytes, klass, header


def _checked_shape(header: Any, name: str, config: ImagingConfig) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """The declared shape and its (x, y, z) extent (1 where absent), with the size limits checked."""
    shape = tuple(int(s) for s in header.get_data_shape())
    if len(shape) > 3 and any(s > 1 for s in shape[3:]):
        raise InvalidImageError(f"{name} is a {len(shape)}-D NIfTI {shape}; a 2-D or 3-D volume is expected "
                                "(split the time series or channels into separate volumes)")
    shape3 = tuple(list(shape[:3]) + [1] * (3 - len(shape[:3])))
    nx, ny, nz = shape3
    if nx < MIN_SIDE or ny < MIN_SIDE or nz < 1 or any(s < 1 for s in shape[3:]):
        raise InvalidImageError(f"{name} is a {nx}x{ny}x{nz} volume: too small to be read")
    check_limits(name, ny, nx, nz, 1, config)
    return shape, (nx, ny, nz)


def _voxel_itemsize(header: Any, name: str) -> int:
    try:
        dtype = header.get_data_dtype()
    except (KeyError, ValueError, TypeError) as exc:  # nibabel knows no such datatype code
        code = int(np.asarray(header.get("datatype", -1)).reshape(-1)[0])
        raise UnsupportedFormatError(f"{name} declares NIfTI data type code {code}, which is not a known "
                                     "voxel type") from exc
    return max(1, dtype.itemsize)


def _voxel_offset(header: Any) -> int:
    try:
        return int(header.get("vox_offset", 352))
    except (TypeError, ValueError, OverflowError):
        return 352


def _read_voxels(stream: Any, header_bytes: bytes, klass: Any, expected: int, ndim: int,
                 name: str) -> tuple[np.ndarray, list[float]]:
    """The voxels (reoriented to the closest RAS+ frame when 3-D) and the voxel sizes in mm."""
    import nibabel as nib

    try:
        rest = stream.read(expected - len(header_bytes) + 1) if expected > len(header_bytes) else b""
        data_bytes = header_bytes + rest
        if len(data_bytes) < expected:
            raise CorruptFileError(f"{name} is truncated: the voxel data ends early")
        img = klass.from_bytes(data_bytes[:expected])
        img = nib.as_closest_canonical(img) if ndim >= 3 else img
        dataobj = img.dataobj  # a proxy (scaled on read) or, after a reorientation, an array
        scaled = getattr(dataobj, "slope", 1) != 1 or getattr(dataobj, "inter", 0) != 0
        data = np.asanyarray(dataobj, dtype=np.float32) if scaled else np.asanyarray(dataobj)
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
    except InputError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{name}: the NIfTI voxel data cannot be read ({type(exc).__name__})") from exc
    return data, zooms


def _study(data: np.ndarray, shape3: tuple[int, int, int], zooms: list[float], name: str,
           warnings: list[str]) -> ImageStudy:
    data = np.asarray(data).reshape(shape3)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidImageError(f"{name} holds NaN or infinite voxel values")
    if data.dtype.kind not in "fiub":
        raise UnsupportedFormatError(f"{name} holds {data.dtype} voxels (complex or RGB NIfTI is not supported)")
    # (x: left->Right, y: posterior->Anterior, z: inferior->Superior) -> (slices, rows, cols) in the
    # radiological layout: rows anterior->posterior, columns patient right->left.
    vol = np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])
    zooms = zooms + [0.0] * (3 - len(zooms))
    spacing: tuple[float | None, ...] = tuple(
        (float(z) if np.isfinite(z) and z > 0 else None) for z in (zooms[2], zooms[1], zooms[0]))
    if vol.shape[0] == 1:
        vol = vol[0]
        spacing = spacing[1:]
    if vol.min() == vol.max():
        raise InvalidImageError(f"{name} is blank: every voxel has the same value")
    flat = vol.reshape(-1)
    sample = flat[:: max(1, flat.size // SAMPLE)].astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(vol.min()), float(vol.max())

    def pixels() -> np.ndarray:
        return vol.astype(np.float32, copy=vol.dtype != np.float32)

    def display() -> np.ndarray:
        out = np.subtract(vol, np.float32(lo), dtype=np.float32)
        out *= np.float32(1.0 / (hi - lo))
        np.clip(out, 0.0, 1.0, out=out)
        return out

    meta = SafeMetadata(modality=None, photometric="MONOCHROME2",
                        frames=int(vol.shape[0]) if vol.ndim == 3 else 1)
    return ImageStudy(pixels=Deferred(pixels, vol.shape), display=Deferred(display, vol.shape),
                      spacing=spacing, source_format="nifti", metadata=meta, warnings=tuple(warnings),
                      display_window="estimated")
