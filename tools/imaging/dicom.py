"""DICOM reading: parse a file, check its header against the limits, decode its pixels once."""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.errors import (
    CorruptFileError,
    FileTooLargeError,
    InvalidImageError,
    NoPixelDataError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)
from tools.imaging.config import MIN_SIDE, ImagingConfig, check_limits, check_memory, decode_peak_bytes

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset


PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


TS_PACKAGES = {
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


@contextmanager
def malformed_attributes(name: str) -> Iterator[None]:
    """pydicom parses an attribute on first access: one with an unknown VR, a value length that is not a
    multiple of its value size, or bytes that do not parse becomes a :class:`CorruptFileError` naming the
    tag (never the value: it may identify someone)."""
    from pydicom.errors import BytesLengthException

    try:
        yield
    except (NotImplementedError, BytesLengthException, struct.error, OverflowError) as exc:
        match = re.search(r"\([0-9A-Fa-f]{4}, ?[0-9A-Fa-f]{4}\)", str(exc))
        where = f" {match.group(0).replace(' ', '').upper()}" if match else ""
        raise CorruptFileError(f"{name} has a malformed attribute{where}: "
                               f"{_MALFORMED.get(type(exc).__name__, 'its value cannot be parsed')}") from exc


_MALFORMED = {
    "NotImplementedError": "an unknown value representation (VR)",
    "BytesLengthException": "a value length that does not fit its value representation",
    "OverflowError": "a number too large for its value representation",
}


def read_dicom(fh: Any, name: str, config: ImagingConfig) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    check_deflated(fh, name, config)
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
        meta.TransferSyntaxUID = transfer_syntax(ds)  # no file meta: the encoding pydicom detected
    return ds


DEFLATED = b"1.2.840.10008.1.2.1.99"
_HEADER_PREFIX = 1 << 20  # inflated bytes kept to read the image header of a deflated dataset


def check_deflated(fh: Any, name: str, config: ImagingConfig) -> None:
    """A deflated dataset (Deflated Explicit VR Little Endian) is inflated whole in memory by pydicom,
    before any header can be checked: a 1 MB file may inflate to gigabytes. Here it is inflated as a
    stream first: the image its header declares (in the first MiB) and then the inflated size are
    checked against the memory budget before pydicom allocates anything. ``fh`` is left at its start."""
    start = fh.tell()
    try:
        if _transfer_syntax_in_meta(fh) != DEFLATED:
            return
        limit = config.limits.max_decode_bytes // 2  # pydicom holds the inflated data twice while reading
        total, prefix, header_checked = 0, bytearray(), False
        for out in _inflated_chunks(fh):
            total += len(out)
            if not header_checked:
                prefix += out[:_HEADER_PREFIX - len(prefix)]
                if len(prefix) >= _HEADER_PREFIX:
                    _check_deflated_header(bytes(prefix), name, config)
                    header_checked = True
            if total > limit:
                raise FileTooLargeError(
                    f"{name} is a deflated DICOM file that inflates to over {limit / 2**20:,.0f} MiB: reading "
                    f"it would take over {2 * limit / 2**20:,.0f} MiB of memory, over the budget per load "
                    "(RADCONSULT_MAX_DECODE_BYTES)")
        if not header_checked:
            _check_deflated_header(bytes(prefix), name, config)
    finally:
        fh.seek(start)


def _inflated_chunks(fh: Any) -> Iterator[bytes]:
    """The raw deflate stream from ``fh`` on, inflated a few MiB at a time; ends early on corrupt data
    (pydicom then reports it while reading)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while chunk := fh.read(1 << 20):
            while chunk:
                yield inflater.decompress(chunk, 1 << 22)
                chunk = inflater.unconsumed_tail
            if inflater.eof:
                return
    except zlib.error:
        return


def _check_deflated_header(prefix: bytes, name: str, config: ImagingConfig) -> None:
    header = _header_of_prefix(prefix)
    if header is None or not any(k in header for k in PIXEL_KEYWORDS):
        return  # no image header in the first MiB: the inflated size is still checked
    rows, cols = header_int(header, "Rows") or 0, header_int(header, "Columns") or 0
    frames = header_int(header, "NumberOfFrames", 1) or 1
    samples = header_int(header, "SamplesPerPixel", 1) or 1
    declared = rows * cols * frames * samples * stored_itemsize(header)
    _check_pixel_memory([header], name, rows, cols, frames, samples, config, held=2 * declared)


def _transfer_syntax_in_meta(fh: Any) -> bytes | None:
    """The Transfer Syntax UID of a file with a preamble and file meta (group 0002, always explicit VR
    little endian), read without pydicom; None when there is no such meta. ``fh`` is left after it."""
    head = fh.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    ts = None
    while True:
        tag = fh.read(8)
        if len(tag) < 8 or int.from_bytes(tag[:2], "little") != 0x0002:
            fh.seek(-len(tag), io.SEEK_CUR)
            return ts
        if tag[4:6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(fh.read(4), "little")  # after 2 reserved bytes
        else:
            length = int.from_bytes(tag[6:8], "little")
        value = fh.read(min(length, 1 << 16))
        if int.from_bytes(tag[2:4], "little") == 0x0010:
            ts = value.rstrip(b"\x00 ")
        if length > len(value):
            fh.seek(length - len(value), io.SEEK_CUR)


def _header_of_prefix(prefix: bytes) -> Dataset | None:
    """The image header in the first bytes of an inflated dataset (explicit VR little endian), or None."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # values over 1 KiB (the pixel data, cut by the prefix's end) are skipped, not read
            ds = pydicom.dcmread(io.BytesIO(prefix), force=True, defer_size=1024)
            _ = len(ds)
        return ds
    except Exception:  # a prefix cut inside the header: the caller falls back to the inflated size
        return None


def pixel_data_bytes(ds: Dataset) -> int:
    """Bytes of (encoded) pixel data the parsed dataset holds, from the raw element (nothing is converted)."""
    for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
        if tag in ds:
            value = ds.get_item(tag).value
            return len(value) if isinstance(value, bytes | bytearray) else 0
    return 0


def stored_itemsize(ds: Dataset) -> int:
    """Bytes per decoded stored value: from Bits Allocated (1-bit data is unpacked to a byte per pixel)."""
    if "FloatPixelData" in ds:
        return 4
    if "DoubleFloatPixelData" in ds:
        return 8
    bits = header_int(ds, "BitsAllocated", 16) or 16
    return {1: 1, 8: 1, 16: 2, 32: 4, 64: 8}.get(bits, 8)


def check_decode_memory(datasets: list[Dataset], name: str, rows: int, cols: int, frames: int, samples: int,
                        config: ImagingConfig) -> None:
    """The memory budget against what decoding these datasets (one object, or the slices of a series)
    would take: the pixel data they hold, the decoded array, the float arrays of the study."""
    held = sum(pixel_data_bytes(d) for d in datasets)
    _check_pixel_memory(datasets, name, rows, cols, frames, samples, config, held=held)


def _check_pixel_memory(datasets: list[Dataset], name: str, rows: int, cols: int, frames: int, samples: int,
                        config: ImagingConfig, held: int) -> None:
    first = datasets[0]
    values = rows * cols * frames * samples
    itemsize = stored_itemsize(first)
    photometric = str(first.get("PhotometricInterpretation", "") or "").strip().upper()
    extra, out_values = 0, values
    if photometric == "PALETTE COLOR":  # the lookup gives 3 samples of up to 16 bits per stored value
        extra, out_values = values * 3 * 2, values * 3
    elif samples == 3:  # colour-space conversion (YBR -> RGB) works on a float copy
        extra = values * 8
    copies = 2 if len(datasets) > 1 else 1  # a series: each decoded slice, then the stacked volume
    peak = decode_peak_bytes(values, itemsize, held=held, copies=copies, extra=extra, out_values=out_values)
    what = (f"{frames} frame(s) of {rows}x{cols} pixels" + (f" x {samples} samples" if samples > 1 else "")
            + f" of {itemsize * 8} bits")
    check_memory(name, peak, what, config.limits)


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


def read_dicom_path(path: Path, config: ImagingConfig) -> Dataset:
    with path.open("rb") as fh:
        return read_dicom(fh, path.name, config)


def transfer_syntax(ds: Dataset) -> Any:
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # No file meta: pydicom worked out the encoding while reading.
    if not ds.is_little_endian:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian


def check_decoder(ts: Any) -> None:
    """UnsupportedTransferSyntaxError naming the package to install when no decoder handles ``ts``."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"pixel data in '{ts.name}' ({ts}) is not supported by any DICOM decoder this program uses") from exc
    if not decoder.is_available:
        package = TS_PACKAGES.get(str(ts), "a pydicom pixel data plugin")
        raise UnsupportedTransferSyntaxError(
            f"cannot decode '{ts.name}' ({ts}) pixel data: no decoder is installed; "
            f"install one with: pip install {package}")


def header_int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    """An integer attribute, or ``default`` when absent or unusable (pydicom converts IS values on access:
    "inf" overflows, "abc" is not a number)."""
    try:
        value = ds.get(keyword, default)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError):
        return default


def check_header(ds: Dataset, name: str, config: ImagingConfig) -> tuple[int, int, int, int]:
    """(rows, cols, frames, samples) from the header, with every limit checked before decoding."""
    if not any(k in ds for k in PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        what = f" (a {sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise NoPixelDataError(f"{name} is a DICOM object without pixel data{what}: nothing to display")
    rows = header_int(ds, "Rows")
    cols = header_int(ds, "Columns")
    if not rows or not cols:
        raise CorruptFileError(f"{name} has pixel data but no valid Rows/Columns")
    frames = header_int(ds, "NumberOfFrames", 1) or 1
    samples = header_int(ds, "SamplesPerPixel", 1) or 1
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise InvalidImageError(f"{name} is a {rows}x{cols} image: too small to be read "
                                f"(at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    check_limits(name, rows, cols, frames, samples, config)
    return rows, cols, frames, samples


def decode(ds: Dataset, name: str, checked: set[str] | None = None) -> np.ndarray:
    """Stored values (after colour conversion to RGB where the data is YBR), decoded once.
    ``checked``: transfer syntaxes whose decoder is already known to be installed (series)."""
    ts = transfer_syntax(ds)
    if checked is None or ts not in checked:
        check_decoder(ts)
        if checked is not None:
            checked.add(ts)
    try:
        arr = ds.pixel_array
    except UnsupportedTransferSyntaxError:
        raise
    except (NotImplementedError, ImportError) as exc:
        package = TS_PACKAGES.get(str(ts), "a pydicom pixel data plugin")
        raise UnsupportedTransferSyntaxError(
            f"cannot decode '{ts.name}' ({ts}) pixel data: install one with: pip install {package}") from exc
    except Exception as exc:
        raise CorruptFileError(
            f"{name}: the '{ts.name}' pixel data is truncated or corrupt and cannot be decoded") from exc
    return arr


def header_numbers(ds: Any, keyword: str) -> list[float] | None:
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
        return [float(v) for v in (value if is_multi(value) else [value])]
    except (TypeError, ValueError):
        return None


def raw_text(ds: Any, tag: int) -> str:
    """A short text value (UI, CS, ...) without pydicom's element conversion; '' when absent."""
    if tag not in ds:
        return ""
    value = ds.get_item(tag).value
    if isinstance(value, bytes | bytearray):
        return value.decode("ascii", "replace").strip(" \x00")
    return str(value or "").strip(" \x00")


def is_multi(v: object) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(v, MultiValue | list | tuple)
