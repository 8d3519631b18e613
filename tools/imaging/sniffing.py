"""The format of a file from its content (magic numbers, headers), never from its name."""

from __future__ import annotations

import gzip
import zlib
from typing import Any


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


EXTENSIONS = {
    "dicom": {".dcm", ".dicom", ".dic", ".ima", ""},
    "png": {".png"},
    "jpeg": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "nifti": {".nii", ".gz"},
}


def gzip_is_nifti(head: bytes, fh: Any) -> bool:
    """True when the gzip stream ``fh`` holds a NIfTI header; False for any other or a corrupt stream."""
    fh.seek(0)
    try:
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            inner = gz.read(548)
    except (OSError, EOFError, zlib.error):
        return False
    finally:
        fh.seek(0)
    return sniff(inner) == "nifti"
