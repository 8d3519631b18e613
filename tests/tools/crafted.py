"""Crafted hostile inputs built from real sample files, shared by the loader tests and the fuzz suite."""

from __future__ import annotations

import struct
import warnings
import zlib

from tests.conftest import pydicom_file


def deflated_dicom(rows: int, cols: int, bits: int = 16, padding: int = 0) -> bytes:
    """CT_small.dcm's header declaring ``rows`` x ``cols`` pixels of ``bits`` bits, written as Deflated
    Explicit VR Little Endian with zero pixel data: 20000 x 20000 x 16 bits is about 780 KB on disk and
    800 MB inflated. ``padding`` zero bytes in a private OB element come before the pixel data. Built
    without ever holding the inflated data: deflate blocks of one zero chunk, each ending in a full
    flush, are repeated."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = rows, cols, bits, bits, bits - 1
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    size = rows * cols * bits // 8
    stream = [_flushed(body.getvalue())]
    if padding:
        stream += [_flushed(struct.pack("<HH2sHI", 0x7FDF, 0x0010, b"OB", 0, padding)), *_zeros(padding)]
    stream += [_flushed(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size)), *_zeros(size)]
    stream.append(zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush())  # the final (empty) block
    return b"\x00" * 128 + b"DICM" + meta.getvalue() + b"".join(stream)


def _flushed(data: bytes) -> bytes:
    """``data`` as raw deflate blocks that end on a byte boundary with no reference to what follows."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush(zlib.Z_FULL_FLUSH)


def _zeros(size: int, chunk: int = 1 << 20) -> list[bytes]:
    block = _flushed(bytes(chunk))
    return [block] * (size // chunk) + ([_flushed(bytes(size % chunk))] if size % chunk else [])
