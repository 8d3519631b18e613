"""Imaging input: DICOM / PNG / JPEG / NIfTI -> :class:`ImageStudy`, de-identified in the loader.

CONTRACT (other modules rely on these names; add fields, never rename):
``load(source, config) -> ImageStudy`` with an :class:`ImagingConfig` (limits and the de-identification
policy), built from the settings by ``agent.wiring.imaging_config``.

What :func:`load` reads:

* DICOM: a single file (any transfer syntax pydicom's installed decoders handle: uncompressed,
  big endian, deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K), a
  multi-frame object, a folder holding one series (sorted along the slice normal into a volume;
  the largest series wins and the others are named in a warning), or a DICOMDIR (its records are
  followed to the image files).
* PNG and JPEG, 8- and 16-bit, grey and RGB (Pillow).
* NIfTI-1/2 (.nii, .nii.gz; nibabel), 2-D or 3-D, reoriented to the closest RAS+ frame and laid
  out as (slices inferior->superior, rows anterior->posterior, columns patient right->left) with
  spacing from the voxel sizes.

The format is sniffed from the content (DICM preamble, PNG/JPEG magic, NIfTI header), never from
the extension: a PNG named ``.dcm`` loads as PNG with a warning saying so.

Identifiers never leave this module: the study carries only :class:`SafeMetadata`, the
HMAC-derived patient and study keys and remapped UIDs (see :mod:`tools.deid`).

Limits (``config.limits.max_file_bytes``, ``max_pixels``, ``max_frames``) are checked from file sizes
and headers before any pixel buffer is allocated.

``pixels`` and ``display`` are computed from the decoded stored values on first access (the
decode itself, the checks and the metadata happen in :func:`load`): a caller that needs only the
display image never pays for the float32 physical-unit copy, and the reverse.
"""

from __future__ import annotations

import gc
import gzip
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.deid import DeidPolicy
from tools.errors import (
    CorruptFileError,
    FileMissingError,
    FileTooLargeError,
    InputError,
    InvalidImageError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

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
_SAMPLE = 1 << 16       # values used to estimate display percentiles when there is no window


@dataclass(frozen=True)
class SafeMetadata:
    """The allowlist of attributes that may travel past the loader. Never identifiers."""

    modality: str | None = None          # DICOM Modality, e.g. "CR", "DX", "CT", "MR", "US"; "OT" for PNG/JPEG
    body_part: str | None = None         # BodyPartExamined, upper-case, e.g. "CHEST", "BREAST"
    view_position: str | None = None     # ViewPosition, e.g. "PA", "AP", "LL", "LAT"
    laterality: str | None = None        # ImageLaterality / Laterality: "L", "R", "B"
    patient_age_years: float | None = None  # from PatientAge ("005Y", "030M") or birth date vs study date
    patient_sex: str | None = None       # "M", "F", "O"
    study_description: str | None = None
    series_description: str | None = None
    manufacturer: str | None = None
    transfer_syntax: str | None = None   # UID name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    burned_in_annotation: bool | None = None
    study_date: str | None = None        # YYYYMMDD after the date policy (kept or shifted)
    photometric: str | None = None
    frames: int = 1

    def as_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


class _Deferred:
    """A zero-argument computation of an array whose shape is known without running it."""

    __slots__ = ("fn", "shape")

    def __init__(self, fn: Callable[[], np.ndarray], shape: tuple[int, ...]) -> None:
        self.fn = fn
        self.shape = shape


class _LazyArray:
    """Data descriptor for an array field that may be given as a :class:`_Deferred`, run on first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> np.ndarray:
        if obj is None:
            raise AttributeError(self.name)  # no class-level default: the dataclass field stays required
        value = obj.__dict__[self.name]
        if isinstance(value, _Deferred):
            value = value.fn()
            obj.__dict__[self.name] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


@dataclass(frozen=True, eq=False)
class ImageStudy:
    """One loaded image or volume.

    ``pixels`` is in physical units (HU for CT after the modality LUT), float32; shape (H, W) for a 2-D
    image, (D, H, W) for a volume or multi-frame object, with a trailing 3 for RGB.
    ``display`` has the same shape, float32 in [0, 1], after VOI LUT / windowing and MONOCHROME1 inversion.
    ``spacing`` is in mm per axis, in the same order as the spatial axes of ``pixels`` (None where unknown).
    Both arrays may be computed on first access (see the module docstring); reading them is always safe.
    """

    pixels: np.ndarray = _LazyArray()  # type: ignore[assignment]
    display: np.ndarray = _LazyArray()  # type: ignore[assignment]
    spacing: tuple[float | None, ...]
    source_format: str                   # "dicom" | "png" | "jpeg" | "nifti"
    metadata: SafeMetadata
    patient_key: str | None = None       # HMAC pseudonym; None when the source carries no patient identity
    study_key: str | None = None
    study_uid: str | None = None         # pseudonymised StudyInstanceUID (consistent remap)
    series_uid: str | None = None        # pseudonymised SeriesInstanceUID
    sop_instance_uids: tuple[str, ...] = ()  # pseudonymised, one per slice / file
    sop_class_uid: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, ...]:
        value = self.__dict__.get("pixels")
        if isinstance(value, _Deferred):
            return tuple(value.shape)
        return tuple(self.pixels.shape)

    @property
    def is_rgb(self) -> bool:
        return len(self.shape) >= 3 and self.shape[-1] == 3

    @property
    def is_volume(self) -> bool:
        return len(self.shape) - (1 if self.is_rgb else 0) == 3

    def summary(self) -> dict[str, object]:
        """JSON-able description without pixels: what `radconsult inspect --json` prints."""
        return {
            "source_format": self.source_format,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing),
            "metadata": self.metadata.as_dict(),
            "patient_key": self.patient_key,
            "study_key": self.study_key,
            "warnings": list(self.warnings),
        }

    def __getstate__(self) -> dict[str, Any]:  # pickling / deepcopy (e.g. UI session state) materialise
        return {k: (v.fn() if isinstance(v, _Deferred) else v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# =====================================================================================================
# entry point
# =====================================================================================================
def load(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
         config: ImagingConfig) -> ImageStudy:
    """Load a DICOM file / series folder / DICOMDIR, a PNG or JPEG, or a NIfTI file (path or bytes).

    Raises a subclass of :class:`tools.errors.InputError` with a message a clinician can act on:
    FileMissingError, FileTooLargeError, UnsupportedFormatError, CorruptFileError, NoPixelDataError,
    UnsupportedTransferSyntaxError, InvalidImageError.
    """
    started = time.perf_counter()
    if isinstance(source, bytes | bytearray | memoryview):
        study = _load_bytes(bytes(source), config)
    else:
        path = Path(os.fspath(source)).expanduser()
        if not path.exists():
            raise FileMissingError(f"no such file or folder: {path.name or str(path)}")
        study = _load_folder(path, config) if path.is_dir() else _load_file(path, config)
    # no names, paths or identifiers in the log: format, geometry and timing only
    log.debug("loaded a %s %s study, shape %s, %d warning(s), in %.1f ms", study.source_format,
              study.metadata.modality or "", study.shape, len(study.warnings),
              (time.perf_counter() - started) * 1000.0)
    return study


def sniff(head: bytes) -> str | None:
    """Format of a file from its first bytes (at least 548 for NIfTI): "dicom", "png", "jpeg",
    "nifti", "gzip" (maybe a .nii.gz, decided by the caller), or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(head) >= 12 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "nifti"
    if len(head) >= 8:  # DICOM without preamble: a file meta (0002) or identifying (0008) group first
        group_le = int.from_bytes(head[:2], "little")
        group_be = int.from_bytes(head[:2], "big")
        if group_le in (0x0002, 0x0008) or group_be == 0x0008:
            return "dicom"
    return None


_EXTENSIONS = {
    "dicom": {".dcm", ".dicom", ".dic", ".ima", ""},
    "png": {".png"},
    "jpeg": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "nifti": {".nii", ".gz"},
}


def check_file_size(path: Path, limits: ImagingLimits) -> int:
    """The file's size in bytes; a typed error when it is empty or over ``limits.max_file_bytes``."""
    size = path.stat().st_size
    if size == 0:
        raise CorruptFileError(f"{path.name} is empty (0 bytes)")
    if size > limits.max_file_bytes:
        raise FileTooLargeError(f"{path.name} is {size / 2**20:.1f} MiB, over the limit of "
                                f"{limits.max_file_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_FILE_BYTES)")
    return size


def _load_file(path: Path, config: ImagingConfig) -> ImageStudy:
    size = check_file_size(path, config.limits)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open {path.name}: {exc.strerror}") from exc
    with fh:
        head = fh.read(1024)
        kind = sniff(head)
        if kind == "gzip":
            kind = "nifti" if _gzip_is_nifti(head, fh) else None
        fh.seek(0)
        if kind is None:
            raise UnsupportedFormatError(
                f"{path.name} is not a DICOM, PNG, JPEG or NIfTI file (its content matches none of them)")
        warnings: list[str] = []
        suffix = path.suffix.lower()
        if suffix and suffix not in _EXTENSIONS[kind] and not (kind == "dicom" and path.name == "DICOMDIR"):
            warnings.append(f"the file extension {suffix} does not match its content; read as {kind.upper()}")
        if kind == "dicom":
            ds = _read_dicom(fh, path.name, config)
            if "DirectoryRecordSequence" in ds:
                return _load_dicomdir(path, ds, config, warnings)
            return _study_from_datasets([ds], config, warnings, name=path.name)
        if kind in ("png", "jpeg"):
            return _load_raster(fh, path.name, config, warnings)
        return _load_nifti_stream(fh, path.name, config, warnings, size)


def _load_bytes(data: bytes, config: ImagingConfig) -> ImageStudy:
    if not data:
        raise CorruptFileError("the upload is empty (0 bytes)")
    if len(data) > config.limits.max_file_bytes:
        raise FileTooLargeError(f"the upload is {len(data) / 2**20:.1f} MiB, over the limit of "
                                f"{config.limits.max_file_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_FILE_BYTES)")
    kind = sniff(data[:1024])
    fh = io.BytesIO(data)
    if kind == "gzip":
        kind = "nifti" if _gzip_is_nifti(data[:1024], fh) else None
        fh.seek(0)
    if kind is None:
        raise UnsupportedFormatError("the upload is not a DICOM, PNG, JPEG or NIfTI file")
    if kind == "dicom":
        ds = _read_dicom(fh, "the upload", config)
        if "DirectoryRecordSequence" in ds:
            raise UnsupportedFormatError("a DICOMDIR needs its folder: load the folder or the DICOMDIR path")
        return _study_from_datasets([ds], config, [])
    if kind in ("png", "jpeg"):
        return _load_raster(fh, "the upload", config, [])
    return _load_nifti_stream(fh, "the upload", config, [], len(data))


def _gzip_is_nifti(head: bytes, fh: Any) -> bool:
    fh.seek(0)
    try:
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            inner = gz.read(548)
    except (OSError, EOFError):
        return False
    finally:
        fh.seek(0)
    return sniff(inner) == "nifti"


# =====================================================================================================
# DICOM
# =====================================================================================================
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_TS_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pyjpegls (or pylibjpeg pylibjpeg-libjpeg)",
    "1.2.840.10008.1.2.4.81": "pyjpegls (or pylibjpeg pylibjpeg-libjpeg)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (pydicom's own RLE decoder needs numpy)",
}


def _read_dicom(fh: Any, name: str, config: ImagingConfig) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(fh, force=True)
        _ = len(ds)  # forces parsing of the top level
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(f"{name} is not a readable DICOM file") from exc
    except (EOFError, ValueError, KeyError, TypeError, OverflowError, OSError, NotImplementedError) as exc:
        raise CorruptFileError(f"{name} is a truncated or corrupt DICOM file ({type(exc).__name__})") from exc
    except Exception as exc:  # struct.error and friends from malformed headers
        raise CorruptFileError(f"{name} is a truncated or corrupt DICOM file ({type(exc).__name__})") from exc
    if len(ds) == 0 and "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        raise CorruptFileError(f"{name} holds no DICOM elements: truncated or not DICOM")
    if is_truncated(ds):
        raise CorruptFileError(f"{name} is a truncated or corrupt DICOM file (it ends inside an attribute)")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" not in meta and ds.is_little_endian is not None:
        meta.TransferSyntaxUID = _transfer_syntax(ds)  # no file meta: the encoding pydicom detected
    return ds


def is_truncated(ds: Dataset) -> bool:
    """True when the file ended inside its last attribute (pydicom keeps the short value silently)."""
    from pydicom.dataelem import RawDataElement

    elements = ds._dict  # pydicom keeps read order; the raw element still knows its declared length
    if not elements:
        return False
    last = elements[next(reversed(elements))]
    if not isinstance(last, RawDataElement) or last.value is None:
        return False
    return last.length != 0xFFFFFFFF and len(last.value) < last.length


def _read_dicom_path(path: Path, config: ImagingConfig) -> Dataset:
    with path.open("rb") as fh:
        return _read_dicom(fh, path.name, config)


def _transfer_syntax(ds: Dataset) -> Any:
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # No file meta: pydicom worked out the encoding while reading.
    if not ds.is_little_endian:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian


def _check_decoder(ts: Any) -> None:
    """UnsupportedTransferSyntaxError naming the package to install when no decoder handles ``ts``."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"pixel data in '{ts.name}' ({ts}) is not supported by any DICOM decoder this program uses") from exc
    if not decoder.is_available:
        package = _TS_PACKAGES.get(str(ts), "a pydicom pixel data plugin")
        raise UnsupportedTransferSyntaxError(
            f"cannot decode '{ts.name}' ({ts}) pixel data: no decoder is installed; "
            f"install one with: pip install {package}")


def _header_int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _check_header(ds: Dataset, name: str, config: ImagingConfig) -> tuple[int, int, int, int]:
    """(rows, cols, frames, samples) from the header, with every limit checked before decoding."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        what = f" (a {sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise NoPixelDataError(f"{name} is a DICOM object without pixel data{what}: nothing to display")
    rows = _header_int(ds, "Rows")
    cols = _header_int(ds, "Columns")
    if not rows or not cols:
        raise CorruptFileError(f"{name} has pixel data but no valid Rows/Columns")
    frames = _header_int(ds, "NumberOfFrames", 1) or 1
    samples = _header_int(ds, "SamplesPerPixel", 1) or 1
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise InvalidImageError(f"{name} is a {rows}x{cols} image: too small to be read "
                                f"(at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    _check_limits(name, rows, cols, frames, samples, config)
    return rows, cols, frames, samples


def _check_limits(name: str, rows: int, cols: int, frames: int, samples: int, config: ImagingConfig) -> None:
    if frames > config.limits.max_frames:
        raise FileTooLargeError(f"{name} has {frames} frames/slices, over the limit of {config.limits.max_frames} "
                                "(RADCONSULT_MAX_FRAMES)")
    n = rows * cols * frames * samples
    if n > config.limits.max_pixels:
        raise FileTooLargeError(f"{name} holds {n} pixel values ({frames}x{rows}x{cols}x{samples}), over "
                                f"the limit of {config.limits.max_pixels} (RADCONSULT_MAX_PIXELS)")


def _decode(ds: Dataset, name: str, checked: set[str] | None = None) -> np.ndarray:
    """Stored values (after colour conversion to RGB where the data is YBR), decoded once.
    ``checked``: transfer syntaxes whose decoder is already known to be installed (series)."""
    ts = _transfer_syntax(ds)
    if checked is None or ts not in checked:
        _check_decoder(ts)
        if checked is not None:
            checked.add(ts)
    try:
        arr = ds.pixel_array
    except UnsupportedTransferSyntaxError:
        raise
    except (NotImplementedError, ImportError) as exc:
        package = _TS_PACKAGES.get(str(ts), "a pydicom pixel data plugin")
        raise UnsupportedTransferSyntaxError(
            f"cannot decode '{ts.name}' ({ts}) pixel data: install one with: pip install {package}") from exc
    except Exception as exc:
        raise CorruptFileError(
            f"{name}: the '{ts.name}' pixel data is truncated or corrupt and cannot be decoded") from exc
    return arr


def _study_from_datasets(datasets: list[Dataset], config: ImagingConfig, warnings: list[str],
                         name: str = "the DICOM file") -> ImageStudy:
    """Build a study from one DICOM object (2-D or multi-frame) or from the slices of one series."""
    from tools import deid

    first = datasets[0]
    if len(datasets) == 1:
        rows, cols, frames, samples = _check_header(first, name, config)
    else:
        rows, cols, _, samples = _check_header(first, name, config)
        frames = len(datasets)
        _check_limits("the series", rows, cols, frames, samples, config)

    # --- geometry and order (before decoding) ----------------------------------------------------
    spacing_rc, spacing_note = _pixel_spacing(first)
    if spacing_note:
        warnings.append(spacing_note)
    z_spacing: float | None = None
    order = list(range(len(datasets)))
    if len(datasets) > 1:
        order, z_spacing = _sort_slices(datasets, warnings)
        datasets = [datasets[i] for i in order]
    elif frames > 1:
        z_spacing = _multiframe_spacing(first)

    # --- decode once ------------------------------------------------------------------------------
    photometric = str(first.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if len(datasets) == 1:
        raw = _decode(first, name)
        if photometric == "PALETTE COLOR":
            raw = _apply_palette(raw, first)
    else:
        raw = _decode_series(datasets, rows, cols, samples, photometric)
    is_color = raw.ndim >= 3 and raw.shape[-1] == 3 and (samples == 3 or photometric == "PALETTE COLOR")

    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise InvalidImageError(f"{name} holds NaN or infinite pixel values")

    # --- metadata, keys, warnings -----------------------------------------------------------------
    identity = deid.patient_identity(first)
    pkey = deid.patient_key(identity, config.deid) if identity else None
    study_uid = str(first.get("StudyInstanceUID", "") or "").strip()
    skey = deid.study_key(study_uid, config.deid) if study_uid else None
    days = deid.date_shift_days(identity or "", config.deid) if config.deid.shifts_dates else 0
    meta = _safe_metadata(first, frames=int(raw.shape[0]) if raw.ndim - int(is_color) == 3 else 1,
                          photometric=photometric, days=days)
    if meta.burned_in_annotation:
        warnings.append("Burned In Annotation = YES: the pixels may show identifying text; "
                        "check the image before sharing it")
    if str(first.get("LossyImageCompression", "")).strip() == "01":
        ratio = first.get("LossyImageCompressionRatio")
        warnings.append("lossy compressed image" + (f" (ratio {ratio})" if ratio else "")
                        + ": fine detail may be altered")
    sops = tuple(deid.remap_uid(uid, config.deid) for uid in (_raw_text(d, 0x00080018) for d in datasets) if uid)
    series_uid = str(first.get("SeriesInstanceUID", "") or "").strip()
    sop_class = first.get("SOPClassUID")

    # --- deferred arrays --------------------------------------------------------------------------
    spatial_ndim = raw.ndim - int(is_color)
    spacing: tuple[float | None, ...] = (spacing_rc[0], spacing_rc[1])
    if spatial_ndim == 3:
        spacing = (z_spacing, *spacing)
    if is_color:
        pixels, display = _color_arrays(raw, first, photometric)
    else:
        slope, intercept = _rescale(datasets, first, raw.shape[0] if spatial_ndim == 3 else 0)
        pixels, display = _grey_arrays(raw, datasets[len(datasets) // 2], slope, intercept,
                                       invert=photometric == "MONOCHROME1", name=name)
    return ImageStudy(
        pixels=pixels, display=display, spacing=spacing, source_format="dicom", metadata=meta,
        patient_key=pkey, study_key=skey,
        study_uid=deid.remap_uid(study_uid, config.deid) if study_uid else None,
        series_uid=deid.remap_uid(series_uid, config.deid) if series_uid else None,
        sop_instance_uids=sops, sop_class_uid=str(sop_class) if sop_class else None,
        warnings=tuple(warnings),
    )


def _decode_series(datasets: list[Dataset], rows: int, cols: int, samples: int, photometric: str) -> np.ndarray:
    checked: set[str] = set()
    first = _decode(datasets[0], "the first slice", checked)
    if photometric == "PALETTE COLOR":
        first = _apply_palette(first, datasets[0])
    out = np.empty((len(datasets), *first.shape), dtype=first.dtype.newbyteorder("="))
    out[0] = first
    for i, ds in enumerate(datasets[1:], start=1):
        arr = _decode(ds, f"slice {i + 1}", checked)
        if photometric == "PALETTE COLOR":
            arr = _apply_palette(arr, ds)
        if arr.shape != first.shape:
            raise CorruptFileError(f"slice {i + 1} of the series has shape {arr.shape}, the others {first.shape}")
        out[i] = arr
    return out


def _apply_palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    try:
        return apply_color_lut(arr, ds)
    except Exception as exc:
        raise CorruptFileError(f"the palette colour lookup table is unusable ({exc})") from exc


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float | None, float | None], str | None]:
    """(row spacing, column spacing) in mm and a warning when missing or only at the detector."""
    value = ds.get("PixelSpacing")
    if value is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            measures = shared[0].get("PixelMeasuresSequence")
            if measures:
                value = measures[0].get("PixelSpacing")
    note = None
    if value is None and ds.get("ImagerPixelSpacing") is not None:
        value = ds.get("ImagerPixelSpacing")
        note = "pixel spacing is the detector's (Imager Pixel Spacing), not corrected for magnification"
    if value is None and ds.get("SequenceOfUltrasoundRegions"):
        # ultrasound: the calibrated region's physical size per pixel (units 3 = cm)
        region = ds.SequenceOfUltrasoundRegions[0]
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        ux, uy = region.get("PhysicalUnitsXDirection"), region.get("PhysicalUnitsYDirection")
        if dx and dy and ux == 3 and uy == 3:
            value = [abs(float(dy)) * 10.0, abs(float(dx)) * 10.0]
            note = "pixel spacing from the first calibrated ultrasound region"
    try:
        r, c = float(value[0]), float(value[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return (None, None), "no pixel spacing in the header: sizes in mm are unknown"
    if r <= 0 or c <= 0 or not np.isfinite([r, c]).all():
        return (None, None), "the header's pixel spacing is zero or invalid: sizes in mm are unknown"
    return (r, c), note


def _numbers(ds: Any, keyword: str) -> list[float] | None:
    """Numeric values (DS/IS/FD/...) of ``keyword``, parsed from the raw bytes when still unread (pydicom's
    own DS conversion costs more than the rest of a slice's header work), else from the value."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return None
    value = ds.get_item(tag).value
    try:
        if isinstance(value, bytes | bytearray):
            text = value.decode("ascii", "replace").strip(" \x00")
            return [float(p) for p in text.split("\\")] if text else None
        if value is None or value == "":
            return None
        return [float(v) for v in (value if _is_multi(value) else [value])]
    except (TypeError, ValueError):
        return None


def _raw_text(ds: Any, tag: int) -> str:
    """A short text value (UI, CS, ...) without pydicom's element conversion; '' when absent."""
    if tag not in ds:
        return ""
    value = ds.get_item(tag).value
    if isinstance(value, bytes | bytearray):
        return value.decode("ascii", "replace").strip(" \x00")
    return str(value or "").strip(" \x00")


def _normal(ds: Dataset) -> np.ndarray | None:
    iop = _numbers(ds, "ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray(iop, dtype=np.float64)
    n = np.cross(v[:3], v[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else None


def _position(ds: Dataset) -> np.ndarray | None:
    ipp = _numbers(ds, "ImagePositionPatient")
    return np.asarray(ipp, dtype=np.float64) if ipp is not None and len(ipp) == 3 else None


def _sort_slices(datasets: list[Dataset], warnings: list[str]) -> tuple[list[int], float | None]:
    """Order along the slice normal (ImagePositionPatient . normal), else by InstanceNumber; spacing in mm."""
    normal = _normal(datasets[0])
    positions = [_position(d) for d in datasets]
    if normal is not None and all(p is not None for p in positions):
        proj = np.array([float(np.dot(p, normal)) for p in positions])  # type: ignore[arg-type]
        order = [int(i) for i in np.argsort(proj, kind="stable")]
        gaps = np.diff(proj[order])
        if np.any(np.abs(gaps) < 1e-3):
            warnings.append("the series holds slices at the same position (duplicates or several "
                            "acquisitions): the volume may repeat slices")
        good = gaps[np.abs(gaps) >= 1e-3]
        if good.size == 0:
            return order, None
        spacing = float(np.median(good))
        if np.max(np.abs(good - spacing)) > 0.1 * spacing:
            warnings.append("slice spacing is not uniform (missing slices or a variable-thickness "
                            f"acquisition): the volume uses the median, {spacing:.3g} mm")
        return order, spacing
    numbers = [(_numbers(d, "InstanceNumber") or [None])[0] for d in datasets]
    if all(n is not None for n in numbers):
        order = sorted(range(len(datasets)), key=lambda i: numbers[i])  # type: ignore[arg-type,return-value]
        warnings.append("slices ordered by Instance Number (no usable Image Position/Orientation)")
    else:
        order = list(range(len(datasets)))
        warnings.append("slices kept in file order: no position or instance number to sort them by")
    thickness = datasets[0].get("SpacingBetweenSlices") or datasets[0].get("SliceThickness")
    try:
        return order, float(thickness) if thickness else None
    except (TypeError, ValueError):
        return order, None


def _multiframe_spacing(ds: Dataset) -> float | None:
    """Slice spacing of an enhanced multi-frame object from per-frame positions, of an RT Dose grid
    from its frame offsets, else the header."""
    offsets = _numbers(ds, "GridFrameOffsetVector")
    if offsets and len(offsets) > 1:
        gaps = np.abs(np.diff(offsets))
        gaps = gaps[gaps > 1e-6]
        if gaps.size:
            return float(np.median(gaps))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    normal = None
    if shared and shared[0].get("PlaneOrientationSequence"):
        normal = _normal(shared[0].PlaneOrientationSequence[0])
    if per_frame and normal is not None:
        pos = []
        for item in per_frame:
            seq = item.get("PlanePositionSequence")
            p = _position(seq[0]) if seq else None
            if p is None:
                pos = []
                break
            pos.append(float(np.dot(p, normal)))
        if len(pos) > 1:
            gaps = np.abs(np.diff(pos))
            gaps = gaps[gaps > 1e-3]
            if gaps.size:
                return float(np.median(gaps))
    for src in ([shared[0].get("PixelMeasuresSequence", [None])[0]] if shared else []) + [ds]:
        if src is None:
            continue
        value = src.get("SpacingBetweenSlices") or src.get("SliceThickness")
        if value:
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    return None


def _rescale(datasets: list[Dataset], first: Dataset, n_frames: int) -> tuple[Any, Any]:
    """Modality LUT as slope/intercept: scalars, or per-slice vectors of shape (D, 1, 1)."""
    def pair(d: Any) -> tuple[float, float]:
        slope = _numbers(d, "RescaleSlope")
        inter = _numbers(d, "RescaleIntercept")
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
    dose_scaling = _numbers(first, "DoseGridScaling")  # RT Dose: stored value x scaling = dose (Gy)
    if dose_scaling and dose_scaling[0] > 0:
        pairs = [(p[0] * dose_scaling[0], p[1] * dose_scaling[0]) for p in pairs]
    slopes = np.array([p[0] for p in pairs], dtype=np.float64)
    inters = np.array([p[1] for p in pairs], dtype=np.float64)
    if np.all(slopes == slopes[0]) and np.all(inters == inters[0]):
        return float(slopes[0]), float(inters[0])
    return slopes[:, None, None], inters[:, None, None]


def _window(ds: Dataset) -> tuple[float, float, str] | None:
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
        c = float(c[0] if _is_multi(c) else c)
        w = float(w[0] if _is_multi(w) else w)
    except (TypeError, ValueError, IndexError):
        return None
    if not np.isfinite([c, w]).all() or w <= 0:
        return None
    fn = str(src.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return c, w, fn


def _is_multi(v: object) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(v, MultiValue | list | tuple)


def _grey_arrays(raw: np.ndarray, ref: Dataset, slope: Any, intercept: Any, *, invert: bool,
                 name: str) -> tuple[_Deferred, _Deferred]:
    """Deferred physical-unit pixels and display image of a grey image or volume."""
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
    step = max(1, flat.size // _SAMPLE)
    if flat[::step].min() == flat[::step].max() and raw.min() == raw.max():
        raise InvalidImageError(f"{name} is blank: every pixel has the same value")
    window = None if (modality_lut or voi_lut) else _window(ref)
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

    return _Deferred(physical, raw.shape), _Deferred(display, raw.shape)


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


def _color_arrays(raw: np.ndarray, ds: Dataset, photometric: str) -> tuple[_Deferred, _Deferred]:
    if photometric == "PALETTE COLOR":
        top = 255.0 if raw.max() <= 255 else 65535.0
    else:
        bits = _header_int(ds, "BitsStored", 8) or 8
        top = float(2 ** bits - 1)

    def pixels() -> np.ndarray:
        return raw.astype(np.float32)

    def display() -> np.ndarray:
        out = np.multiply(raw, np.float32(1.0 / top), dtype=np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    return _Deferred(pixels, raw.shape), _Deferred(display, raw.shape)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _safe_metadata(ds: Dataset, *, frames: int, photometric: str, days: int) -> SafeMetadata:
    from tools import deid

    age = deid.parse_age_string(ds.get("PatientAge")) if ds.get("PatientAge") else None
    if age is None:
        birth = ds.get("PatientBirthDate", "")
        for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            age = deid.age_years_from_dates(birth, ds.get(kw, ""))
            if age is not None:
                break
    sex = (_text(ds, "PatientSex") or "").upper()[:1] or None
    if sex not in ("M", "F", "O"):
        sex = None
    study_date = _text(ds, "StudyDate")
    if study_date and days:
        study_date = deid.shift_date(study_date, days) or None
    burned = _text(ds, "BurnedInAnnotation")
    identifying: set[str] | None = None

    def clean(keyword: str) -> str | None:
        nonlocal identifying
        text = _text(ds, keyword)
        if text is None:
            return None
        if identifying is None:
            identifying = deid.identifying_values(ds, recursive=False)
        return deid.scrub_text(text, identifying) or None

    body = _text(ds, "BodyPartExamined")
    ts = _transfer_syntax(ds)
    return SafeMetadata(
        modality=_text(ds, "Modality"),
        body_part=body.upper() if body else None,
        view_position=_text(ds, "ViewPosition"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        patient_age_years=round(age, 2) if age is not None else None,
        patient_sex=sex,
        study_description=clean("StudyDescription"),
        series_description=clean("SeriesDescription"),
        manufacturer=_text(ds, "Manufacturer"),
        transfer_syntax=ts.name if ts else None,
        burned_in_annotation=None if burned is None else burned.upper() == "YES",
        study_date=study_date,
        photometric=photometric,
        frames=frames,
    )


# --- folders, series and DICOMDIR --------------------------------------------------------------------
def _load_folder(folder: Path, config: ImagingConfig) -> ImageStudy:
    dicomdir = folder / "DICOMDIR"
    if dicomdir.is_file():
        ds = _read_dicom_path(dicomdir, config)
        if "DirectoryRecordSequence" in ds:
            return _load_dicomdir(dicomdir, ds, config, [])
    entries = _list_files(folder, config)
    if not entries:
        raise FileMissingError(f"the folder {folder.name} holds no files")
    files = [p for p, _ in entries]
    sizes = [n for _, n in entries]
    return _load_series_files(files, config, [], where=f"the folder {folder.name}", sizes=sizes)


MAX_FOLDER_DEPTH = 4  # a study folder with series subfolders (and a level or two of media layout)


def _list_files(folder: Path, config: ImagingConfig) -> list[tuple[Path, int]]:
    """(path, size) of the visible files under ``folder``, ``MAX_FOLDER_DEPTH`` levels deep, sorted.
    One scandir per folder, so the sizes come without a second stat per file."""
    found: list[tuple[Path, int]] = []
    limit = config.limits.max_frames * 4 + 16
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_file():
                        found.append((Path(entry.path), entry.stat().st_size))
                        if len(found) > limit:
                            raise FileTooLargeError(
                                f"the folder {folder.name} holds more than {limit} files, far over the limit "
                                f"of {config.limits.max_frames} slices (RADCONSULT_MAX_FRAMES)")
                    elif entry.is_dir() and depth < MAX_FOLDER_DEPTH:
                        stack.append((Path(entry.path), depth + 1))
        except PermissionError as exc:
            raise InputError(f"cannot read the folder {Path(current).name}: permission denied") from exc
    found.sort()
    return found


def _load_series_files(files: list[Path], config: ImagingConfig, warnings: list[str], where: str,
                       sizes: list[int] | None = None) -> ImageStudy:
    """Read DICOM files, keep the largest series (warn about the others), stack it into a volume."""
    if len(files) > config.limits.max_frames * 4 + 16:
        raise FileTooLargeError(f"{where} holds {len(files)} files, far over the limit of "
                                f"{config.limits.max_frames} slices (RADCONSULT_MAX_FRAMES)")
    if sizes is None:
        sizes = [f.stat().st_size for f in files]
    total = sum(sizes)
    if total > config.limits.max_file_bytes:
        raise FileTooLargeError(f"{where} holds {total / 2**20:.1f} MiB, over the limit of "
                                f"{config.limits.max_file_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_FILE_BYTES)")
    # Every dataset stays alive until the volume is built, and each read and decode allocates many
    # small objects: the cyclic GC would rescan all the live datasets again and again (measured: +35%
    # on a 64-slice CT). Nothing here creates reference cycles that need it, so pause it meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        datasets: list[Dataset] = []
        _read_series(files, sizes, config, datasets)
        skipped = len(files) - len(datasets)
        if not datasets:
            raise NoPixelDataError(f"{where} holds no DICOM image")
        if skipped:
            warnings.append(f"{skipped} file(s) that are not DICOM images were skipped")
        return _series_to_study(datasets, config, warnings)
    finally:
        if gc_was_enabled:
            gc.enable()


def _read_series(files: list[Path], sizes: list[int], config: ImagingConfig, datasets: list[Dataset]) -> None:
    for f, size in zip(files, sizes, strict=True):
        if size == 0:
            continue
        with f.open("rb") as fh:
            if sniff(fh.read(1024)) != "dicom":
                continue
            fh.seek(0)
            try:
                ds = _read_dicom(fh, f.name, config)
            except InputError:
                continue
        if "DirectoryRecordSequence" in ds or not any(k in ds for k in _PIXEL_KEYWORDS):
            continue
        datasets.append(ds)


def _series_to_study(datasets: list[Dataset], config: ImagingConfig, warnings: list[str]) -> ImageStudy:
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(_raw_text(ds, 0x0020000E), []).append(ds)
    chosen = max(groups.values(), key=len)
    if len(groups) > 1:
        others = sorted((len(g) for g in groups.values() if g is not chosen), reverse=True)
        warnings.append(f"{len(groups)} series found; loaded the largest ({len(chosen)} image(s)); "
                        f"not loaded: {len(others)} other series with {', '.join(map(str, others))} image(s)")
    multi = [d for d in chosen if (_header_int(d, "NumberOfFrames", 1) or 1) > 1]
    if multi and len(chosen) > 1:
        best = max(multi, key=lambda d: _header_int(d, "NumberOfFrames", 1) or 1)
        warnings.append(f"the series holds {len(chosen)} objects, some multi-frame; loaded the one "
                        "with the most frames")
        chosen = [best]
    if len(chosen) > 1:
        shapes: dict[tuple, list[Dataset]] = {}
        for d in chosen:
            key = (_header_int(d, "Rows"), _header_int(d, "Columns"), _header_int(d, "SamplesPerPixel", 1),
                   tuple(round(x, 3) for x in (_numbers(d, "ImageOrientationPatient") or [])))
            shapes.setdefault(key, []).append(d)
        if len(shapes) > 1:
            keep = max(shapes.values(), key=len)
            warnings.append(f"{len(chosen) - len(keep)} image(s) with another size or orientation "
                            "(e.g. localizers) were left out of the volume")
            chosen = keep
    return _study_from_datasets(chosen, config, warnings,
                                name="the series" if len(chosen) > 1 else "the DICOM file")


def _load_dicomdir(path: Path, ds: Dataset, config: ImagingConfig, warnings: list[str]) -> ImageStudy:
    """Follow a DICOMDIR's PATIENT/STUDY/SERIES/IMAGE records to the files of its largest series."""
    from pydicom.fileset import FileSet

    try:
        ds.filename = str(path)
        fileset = FileSet(ds)
        groups: dict[int, list[Path]] = {}
        for instance in fileset:
            groups.setdefault(id(instance.node.parent), []).append(Path(instance.path))
    except Exception as exc:
        raise CorruptFileError(f"the DICOMDIR's directory records are unreadable ({type(exc).__name__})") from exc
    series = list(groups.values())
    series = [s for s in series if s]
    if not series:
        raise NoPixelDataError("the DICOMDIR references no image files")
    chosen = max(series, key=len)
    if len(series) > 1:
        others = sorted((len(s) for s in series if s is not chosen), reverse=True)
        warnings.append(f"the DICOMDIR lists {len(series)} series; loaded the largest ({len(chosen)} image(s)); "
                        f"not loaded: {len(others)} other series with {', '.join(map(str, others))} image(s)")
    missing = [p for p in chosen if not p.is_file()]
    if missing:
        raise FileMissingError(f"{len(missing)} file(s) named in the DICOMDIR are missing from its folder")
    return _load_series_files(chosen, config, warnings, where="the DICOMDIR series")


# =====================================================================================================
# PNG / JPEG
# =====================================================================================================
def _load_raster(fh: Any, name: str, config: ImagingConfig, warnings: list[str]) -> ImageStudy:
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
    _check_limits(name, rows, cols, 1, samples, config)
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
    return ImageStudy(pixels=_Deferred(pixels, arr.shape), display=_Deferred(display, arr.shape),
                      spacing=(None, None), source_format="png" if fmt == "png" else "jpeg",
                      metadata=meta, warnings=tuple(warnings))


# =====================================================================================================
# NIfTI
# =====================================================================================================
def _load_nifti_stream(fh: Any, name: str, config: ImagingConfig, warnings: list[str], size: int) -> ImageStudy:
    import nibabel as nib

    fh.seek(0)
    head = fh.read(4)
    fh.seek(0)
    compressed = head[:2] == b"\x1f\x8b"
    stream: Any = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
    try:
        header_bytes = stream.read(540)
        klass = nib.Nifti2Image if header_bytes[4:8] in (b"n+2\x00", b"ni2\x00") else nib.Nifti1Image
        header = klass.header_class.from_fileobj(io.BytesIO(header_bytes), check=False)
    except Exception as exc:
        raise CorruptFileError(f"{name} has a corrupt NIfTI header") from exc
    if header.get("magic", b"").tobytes().startswith(b"ni"):
        raise UnsupportedFormatError(f"{name} is the header of a NIfTI .hdr/.img pair; "
                                     "convert it to a single .nii file")
    shape = tuple(int(s) for s in header.get_data_shape())
    if len(shape) > 3 and any(s > 1 for s in shape[3:]):
        raise InvalidImageError(f"{name} is a {len(shape)}-D NIfTI {shape}; a 2-D or 3-D volume is expected "
                                "(split the time series or channels into separate volumes)")
    shape3 = tuple(list(shape[:3]) + [1] * (3 - len(shape[:3])))
    nx, ny, nz = shape3
    if nx < MIN_SIDE or ny < MIN_SIDE:
        raise InvalidImageError(f"{name} is a {nx}x{ny}x{nz} volume: too small to be read")
    _check_limits(name, ny, nx, nz, 1, config)
    try:
        vox_offset = int(header.get("vox_offset", 352))
    except (TypeError, ValueError):
        vox_offset = 352
    itemsize = max(1, header.get_data_dtype().itemsize)
    expected = vox_offset + nx * ny * nz * itemsize
    if not compressed and expected > size:
        raise CorruptFileError(f"{name} is truncated: its header announces {expected} bytes, the file has {size}")
    try:
        rest = stream.read(expected - len(header_bytes) + 1) if expected > len(header_bytes) else b""
        data_bytes = header_bytes + rest
        if len(data_bytes) < expected:
            raise CorruptFileError(f"{name} is truncated: the voxel data ends early")
        img = klass.from_bytes(data_bytes[:expected])
        img = nib.as_closest_canonical(img) if len(shape) >= 3 else img
        dataobj = img.dataobj  # a proxy (scaled on read) or, after a reorientation, an array
        scaled = getattr(dataobj, "slope", 1) != 1 or getattr(dataobj, "inter", 0) != 0
        data = np.asanyarray(dataobj, dtype=np.float32) if scaled else np.asanyarray(dataobj)
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
    except InputError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{name}: the NIfTI voxel data cannot be read ({type(exc).__name__})") from exc
    finally:
        if compressed:
            stream.close()
    data = np.asarray(data).reshape(shape3)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidImageError(f"{name} holds NaN or infinite voxel values")
    if data.dtype.kind not in "fiub":
        raise UnsupportedFormatError(f"{name} holds {data.dtype} voxels (complex or RGB NIfTI is not supported)")
    # (x: left->Right, y: posterior->Anterior, z: inferior->Superior) -> (slices, rows, cols) in the
    # radiological layout: rows anterior->posterior, columns patient right->left.
    vol = np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])
    zooms += [None] * (3 - len(zooms))  # type: ignore[list-item]
    spacing: tuple[float | None, ...] = tuple(
        (float(z) if z and z > 0 else None) for z in (zooms[2], zooms[1], zooms[0]))
    if vol.shape[0] == 1:
        vol = vol[0]
        spacing = spacing[1:]
    if vol.min() == vol.max():
        raise InvalidImageError(f"{name} is blank: every voxel has the same value")
    flat = vol.reshape(-1)
    sample = flat[:: max(1, flat.size // _SAMPLE)].astype(np.float64)
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
    return ImageStudy(pixels=_Deferred(pixels, vol.shape), display=_Deferred(display, vol.shape),
                      spacing=spacing, source_format="nifti", metadata=meta, warnings=tuple(warnings))
