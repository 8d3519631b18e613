"""The entry point: a path (file or folder) or bytes -> the format-specific loader."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

from tools.errors import (
    CorruptFileError,
    FileMissingError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)
from tools.imaging.config import ImagingConfig, check_file_size
from tools.imaging.dicom import read_dicom
from tools.imaging.dicom_study import study_from_datasets
from tools.imaging.nifti import load_nifti_stream
from tools.imaging.raster import load_raster
from tools.imaging.series import load_dicomdir, load_folder
from tools.imaging.sniffing import EXTENSIONS, gzip_is_nifti, sniff
from tools.imaging.study import ImageStudy

log = logging.getLogger("tools.imaging")


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
        study = load_folder(path, config) if path.is_dir() else _load_file(path, config)
    # no names, paths or identifiers in the log: format, geometry and timing only
    log.debug("loaded a %s %s study, shape %s, %d warning(s), in %.1f ms", study.source_format,
              study.metadata.modality or "", study.shape, len(study.warnings),
              (time.perf_counter() - started) * 1000.0)
    return study


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
            kind = "nifti" if gzip_is_nifti(head, fh) else None
        fh.seek(0)
        if kind is None:
            raise UnsupportedFormatError(
                f"{path.name} is not a DICOM, PNG, JPEG or NIfTI file (its content matches none of them)")
        warnings: list[str] = []
        suffix = path.suffix.lower()
        if suffix and suffix not in EXTENSIONS[kind] and not (kind == "dicom" and path.name == "DICOMDIR"):
            warnings.append(f"the file extension {suffix} does not match its content; read as {kind.upper()}")
        if kind == "dicom":
            ds = read_dicom(fh, path.name, config)
            if "DirectoryRecordSequence" in ds:
                return load_dicomdir(path, ds, config, warnings)
            return study_from_datasets([ds], config, warnings, name=path.name)
        if kind in ("png", "jpeg"):
            return load_raster(fh, path.name, config, warnings)
        return load_nifti_stream(fh, path.name, config, warnings, size)


def _load_bytes(data: bytes, config: ImagingConfig) -> ImageStudy:
    if not data:
        raise CorruptFileError("the upload is empty (0 bytes)")
    if len(data) > config.limits.max_file_bytes:
        raise FileTooLargeError(f"the upload is {len(data) / 2**20:.1f} MiB, over the limit of "
                                f"{config.limits.max_file_bytes / 2**20:.1f} MiB (RADCONSULT_MAX_FILE_BYTES)")
    kind = sniff(data[:1024])
    fh = io.BytesIO(data)
    if kind == "gzip":
        kind = "nifti" if gzip_is_nifti(data[:1024], fh) else None
        fh.seek(0)
    if kind is None:
        raise UnsupportedFormatError("the upload is not a DICOM, PNG, JPEG or NIfTI file")
    if kind == "dicom":
        ds = read_dicom(fh, "the upload", config)
        if "DirectoryRecordSequence" in ds:
            raise UnsupportedFormatError("a DICOMDIR needs its folder: load the folder or the DICOMDIR path")
        return study_from_datasets([ds], config, [])
    if kind in ("png", "jpeg"):
        return load_raster(fh, "the upload", config, [])
    return load_nifti_stream(fh, "the upload", config, [], len(data))
