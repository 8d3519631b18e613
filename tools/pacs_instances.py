"""Checking and writing the instances of a retrieved series (:meth:`tools.pacs.PacsClient.retrieve_series`):
every way an instance can arrive broken becomes a :class:`~tools.errors.PartialRetrieveError`, so the
retrieve keeps nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tools.errors import PacsError, PartialRetrieveError
from tools.pacs_models import HEADER_BYTES

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from tools.pacs_reid import Pseudonymiser

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@contextmanager
def parse_errors(expected: int | None) -> Iterator[None]:
    """A part of the multipart answer that pydicom cannot read: the retrieve is abandoned."""
    import requests

    try:
        yield
    except (requests.exceptions.RequestException, PacsError):
        raise
    except Exception as exc:  # pydicom InvalidDicomError, struct errors, truncated parts
        raise PartialRetrieveError(f"an instance of the series ({expected or 'unknown number of'} instances) arrived corrupt "
                                   f"({type(exc).__name__}): nothing was kept; try again or tell the PACS "
                                   "administrator") from None


def check_instance(ds: Dataset, n: int, total: int | None) -> None:
    """A truncated instance or pixel data shorter than its header says fails the whole retrieve (a loader over
    the folder would skip such a file silently). Malformed elements fail when the file is written."""
    from tools.imaging import is_truncated

    try:
        if is_truncated(ds):
            raise ValueError("the instance ends inside an attribute")
        ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
        if "PixelData" in ds and (ts is None or not ts.is_compressed):
            rows, cols = int(ds.Rows), int(ds.Columns)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            expected = (rows * cols * frames * samples * int(ds.BitsAllocated) + 7) // 8
            if len(ds.PixelData) < expected:
                raise ValueError(f"pixel data {len(ds.PixelData)} of {expected} bytes")
    except Exception as exc:  # noqa: BLE001 - every way a part can be broken ends the same way
        raise PartialRetrieveError(f"{_which(n, total)} arrived truncated or corrupt ({type(exc).__name__}): nothing "
                                   "was kept; try again or tell the PACS administrator") from None


def _which(n: int, total: int | None) -> str:
    return f"instance {n} of {total}" if total else f"instance {n}"


def deidentified(pseudonymiser: Pseudonymiser, ds: Dataset, n: int, total: int | None) -> Dataset:
    try:
        return pseudonymiser.dataset(ds)
    except PacsError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PartialRetrieveError(f"{_which(n, total)} cannot be de-identified ({type(exc).__name__}): nothing "
                                   "was kept") from None


def encoded_bytes(ds: Dataset) -> int:
    pixel = ds.get("PixelData")
    return (len(pixel) if pixel is not None else 0) + HEADER_BYTES


def write(ds: Dataset, target: Path, n: int, total: int | None) -> None:
    """Write one instance (mode 0600, never over an existing file); an element that cannot be encoded fails
    the retrieve like a corrupt one."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    try:
        meta = getattr(ds, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta:
            meta = meta if meta is not None else FileMetaDataset()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            ds.save_as(fh, enforce_file_format=True)
    except OSError as exc:
        raise PacsError(f"cannot write the retrieved series: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed element of the instance
        raise PartialRetrieveError(f"{_which(n, total)} arrived with a malformed element ({type(exc).__name__}): "
                                   "nothing was kept") from None
