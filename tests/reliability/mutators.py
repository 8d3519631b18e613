"""Mutators for the loader fuzzer: generic byte mutations, and structure-aware ones per format that
keep a file parseable enough to reach the deep code (DICOM elements, PNG chunks with their CRCs fixed,
JPEG segments, NIfTI header fields, ZIP headers and members).

Every mutator is ``(data, rng, other) -> bytes``: ``other`` is another seed of the same kind, for
splicing. All randomness comes from ``rng``, so an input is reproduced from its seed and index.
"""

from __future__ import annotations

import gzip
import io
import math
import random
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Mutator = Callable[[bytes, random.Random, bytes], bytes]

INTERESTING_8 = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING_16 = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 255, 256, 4096, 20000, 0x7FFF, 0x8000, 0xFFFF]
INTERESTING_32 = [0, 1, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
INTERESTING_FLOATS = [0.0, -1.0, 1e-38, 1e38, -1e38, math.nan, math.inf, -math.inf, 0.5, 3e4]
INTERESTING_TEXT = ["0", "-1", "NaN", "inf", "-inf", "1e308", "1e-308", "abc", "", "1\\2\\3", "99999999999",
                    "2147483648", " ", "-0", "1.5", "\\\\", "0\\0", "1e400"]


# --- generic byte mutations ------------------------------------------------------------------------------
def flip_bits(data: bytes, rng: random.Random, other: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def interesting_ints(data: bytes, rng: random.Random, other: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        size = rng.choice((1, 2, 4))
        if len(out) <= size:
            break
        value = rng.choice({1: INTERESTING_8, 2: INTERESTING_16, 4: INTERESTING_32}[size])
        at = rng.randrange(len(out) - size)
        out[at:at + size] = value.to_bytes(size, rng.choice(("little", "big")))
    return bytes(out)


def insert_block(data: bytes, rng: random.Random, other: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    block = rng.choice([bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
                        b"\x00" * rng.randint(1, 4096), data[at:at + rng.randint(1, 512)]])
    return data[:at] + block + data[at:]


def delete_block(data: bytes, rng: random.Random, other: bytes) -> bytes:
    if len(data) < 2:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, min(4096, len(data) - at)):]


def truncate(data: bytes, rng: random.Random, other: bytes) -> bytes:
    return data[:rng.randrange(len(data))] if data else data


def splice(data: bytes, rng: random.Random, other: bytes) -> bytes:
    if not data or not other:
        return data
    return data[:rng.randrange(len(data))] + other[rng.randrange(len(other)):]


GENERIC: list[Mutator] = [flip_bits, interesting_ints, insert_block, delete_block, truncate, splice]


# --- DICOM -----------------------------------------------------------------------------------------------
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_KNOWN_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
              b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US",
              b"UT", b"PF", b"XX", b"\x00\x00", b"ob"]
_TEXT_TAGS = {0x00280008, 0x00281052, 0x00281053, 0x00281050, 0x00281051, 0x00280030, 0x00180050,
              0x00200032, 0x00200037, 0x00181164, 0x3004000C, 0x3004000E, 0x00101010, 0x00080060}
_US_TAGS = {0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280102, 0x00280002, 0x00280103, 0x00280006}
_PHOTOMETRIC = ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "YBR_ICT",
                "YBR_RCT", "HSV", "ARGB", "CMYK", ""]
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                     "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                     "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                     "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.5",
                     "1.2.840.10008.1.2.4.100", "1.2.3.4", ""]


@dataclass(frozen=True)
class Element:
    start: int          # offset of the tag
    tag: int
    vr: bytes | None    # None for implicit VR
    length_at: int      # offset of the length field
    length_size: int    # 2 or 4
    value_at: int
    length: int


def dicom_elements(data: bytes, limit: int = 4000) -> list[Element]:
    """The top-level elements (file meta and dataset) of a DICOM file, best effort: stops at an undefined
    length (sequences, encapsulated pixel data are walked as one element) or at anything unparseable."""
    pos = 132 if data[128:132] == b"DICM" else 0
    big = b"1.2.840.10008.1.2.2\x00" in data[:2048] or b"1.2.840.10008.1.2.2 " in data[:2048]
    found: list[Element] = []
    while pos + 8 <= len(data) and len(found) < limit:
        in_meta = data[pos:pos + 2] == b"\x02\x00"
        order = "<" if in_meta or not big else ">"
        group, elem = struct.unpack(order + "HH", data[pos:pos + 4])
        vr = data[pos + 4:pos + 6]
        if vr.isalpha() and vr.isupper():
            if vr in _LONG_VRS:
                length_at, size, value_at = pos + 8, 4, pos + 12
            else:
                length_at, size, value_at = pos + 6, 2, pos + 8
        else:
            vr, length_at, size, value_at = None, pos + 4, 4, pos + 8
        if value_at > len(data):
            break
        length = int.from_bytes(data[length_at:length_at + size], "little" if order == "<" else "big")
        found.append(Element(pos, (group << 16) | elem, vr, length_at, size, value_at, length))
        if length == 0xFFFFFFFF:
            break
        pos = value_at + length
    return found


def _set_length(data: bytes, e: Element, value: int) -> bytes:
    size = e.length_size
    value &= (1 << (8 * size)) - 1
    order = "big" if data[e.start:e.start + 2] != b"\x02\x00" and b"1.2.840.10008.1.2.2\x00" in data[:2048] else "little"
    return data[:e.length_at] + value.to_bytes(size, order) + data[e.length_at + size:]


def _replace_value(data: bytes, e: Element, value: bytes) -> bytes:
    if e.length == 0xFFFFFFFF:
        return data
    if e.length_size == 2 and len(value) > 0xFFFF:
        value = value[:0xFFFE]
    out = data[:e.value_at] + value + data[e.value_at + e.length:]
    return _set_length(out, e, len(value))


def dicom_length(data: bytes, rng: random.Random, other: bytes) -> bytes:
    elements = dicom_elements(data)
    if not elements:
        return flip_bits(data, rng, other)
    e = rng.choice(elements)
    value = rng.choice([0, 1, e.length + 1, max(0, e.length - 1), e.length * 2, 0xFFFF, 0xFFFFFFFF,
                        0x7FFFFFFF, len(data), 3])
    return _set_length(data, e, value)


def dicom_vr(data: bytes, rng: random.Random, other: bytes) -> bytes:
    elements = [e for e in dicom_elements(data) if e.vr is not None and e.length_size == 2]
    if not elements:
        return dicom_length(data, rng, other)
    e = rng.choice(elements)
    vr = rng.choice([v for v in _KNOWN_VRS if v not in _LONG_VRS])  # keeps the header layout
    return data[:e.start + 4] + vr + data[e.start + 6:]


def dicom_value(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """A new value for an attribute the loader reads: image geometry, pixel description, rescale, window,
    spacing, position, photometric interpretation, transfer syntax."""
    elements = dicom_elements(data)
    wanted = [e for e in elements if e.tag in _US_TAGS | _TEXT_TAGS | {0x00280004, 0x00020010, 0x00280009}]
    if not wanted:
        return dicom_length(data, rng, other) if elements else flip_bits(data, rng, other)
    e = rng.choice(wanted)
    big = e.tag >> 16 != 2 and b"1.2.840.10008.1.2.2\x00" in data[:2048]
    if e.tag in _US_TAGS:
        value = struct.pack(">H" if big else "<H", rng.choice(INTERESTING_16))
        if rng.random() < 0.2:
            value = value + value[:rng.choice((1, 2))]  # a length that is not a multiple of 2
    elif e.tag == 0x00280004:
        value = rng.choice(_PHOTOMETRIC).encode()
    elif e.tag == 0x00020010:
        value = rng.choice(TRANSFER_SYNTAXES).encode()
    else:
        value = rng.choice(INTERESTING_TEXT).encode()
    if len(value) % 2 and rng.random() < 0.8:
        value += b"\x00" if e.tag == 0x00020010 else b" "
    return _replace_value(data, e, value)


def dicom_shuffle(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Delete, duplicate or swap whole elements, or insert one with a strange tag and VR."""
    elements = [e for e in dicom_elements(data) if e.length != 0xFFFFFFFF]
    if len(elements) < 2:
        return truncate(data, rng, other)
    i = rng.randrange(len(elements) - 1)
    a, b = elements[i], elements[i + 1]
    a_end, b_end = a.value_at + a.length, b.value_at + b.length
    op = rng.randrange(4)
    if op == 0:
        return data[:a.start] + data[a_end:]
    if op == 1:
        return data[:a_end] + data[a.start:a_end] + data[a_end:]
    if op == 2:
        return data[:a.start] + data[b.start:b_end] + data[a.start:a_end] + data[b_end:]
    tag = struct.pack("<HH", rng.choice([0x0028, 0x7FE0, 0x0009, 0xFFFE, 0x0002]), rng.randrange(0x10000))
    junk = tag + rng.choice(_KNOWN_VRS) + struct.pack("<H", 4) + b"\x01\x00\x02\x00"
    return data[:a_end] + junk + data[a_end:]


def dicom_pixels(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Corrupt or cut the pixel data (or the compressed stream inside it)."""
    pixel = [e for e in dicom_elements(data) if e.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009)]
    if not pixel:
        return truncate(data, rng, other)
    start = pixel[0].value_at
    if start >= len(data):
        return data
    out = bytearray(data)
    if rng.random() < 0.3:
        return bytes(out[:rng.randrange(start, len(out))])
    for _ in range(rng.randint(1, 32)):
        out[rng.randrange(start, len(out))] = rng.randrange(256)
    return bytes(out)


def dicom_deflated(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """For a deflated file: inflate the dataset, mutate it as DICOM, deflate it again."""
    meta = [e for e in dicom_elements(data) if e.tag >> 16 == 2]
    if not meta or b"1.2.840.10008.1.2.1.99" not in data[:1024]:
        return dicom_value(data, rng, other)
    body_at = meta[-1].value_at + meta[-1].length
    try:
        body = zlib.decompress(data[body_at:], -zlib.MAX_WBITS)
    except zlib.error:
        return data
    inner = rng.choice([dicom_value, dicom_length, dicom_shuffle, dicom_vr, flip_bits])(body, rng, other)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return data[:body_at] + deflater.compress(inner) + deflater.flush()


DICOM: list[Mutator] = [dicom_length, dicom_vr, dicom_value, dicom_value, dicom_value, dicom_shuffle,
                        dicom_pixels, dicom_deflated]


# --- PNG ------------------------------------------------------------------------------------------------
def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, payload) of each chunk after the signature, best effort."""
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        chunks.append((pos, kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """New IHDR values (size, bit depth, colour type, interlace) with a correct CRC."""
    chunks = _png_chunks(data)
    if not chunks or chunks[0][1] != b"IHDR" or len(chunks[0][2]) != 13:
        return flip_bits(data, rng, other)
    w, h, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][2])
    field = rng.randrange(5)
    if field == 0:
        w = rng.choice(INTERESTING_32 + [100000, 2, 1])
    elif field == 1:
        h = rng.choice(INTERESTING_32 + [100000, 2, 1])
    elif field == 2:
        depth = rng.choice([0, 1, 2, 3, 4, 8, 16, 32, 255])
    elif field == 3:
        color = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 255])
    else:
        comp, filt, interlace = rng.choice([0, 1, 255]), rng.choice([0, 1]), rng.choice([0, 1, 2])
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, comp, filt, interlace))
    return data[:8] + ihdr + data[chunks[0][0] + 12 + len(chunks[0][2]):]


def png_chunks(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Corrupt IDAT (CRC fixed, so the zlib stream itself is bad), cut, drop or duplicate chunks, or
    add a large text chunk."""
    chunks = _png_chunks(data)
    if len(chunks) < 2:
        return truncate(data, rng, other)
    rebuilt = [_png_chunk(kind, payload) for _, kind, payload in chunks]
    op = rng.randrange(5)
    i = rng.randrange(1, len(chunks))
    if op == 0:
        payload = bytearray(chunks[i][2])
        for _ in range(rng.randint(1, 16)):
            if payload:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        rebuilt[i] = _png_chunk(chunks[i][1], bytes(payload))
    elif op == 1:
        del rebuilt[i]
    elif op == 2:
        rebuilt.insert(i, rebuilt[i])
    elif op == 3:
        rebuilt[i] = rebuilt[i][:rng.randrange(len(rebuilt[i]))]
    else:
        text = zlib.compress(b"x" * rng.choice([10, 1 << 20, 1 << 24]))
        rebuilt.insert(1, _png_chunk(rng.choice([b"zTXt", b"iCCP", b"tEXt"]), b"k\x00\x00" + text))
    return data[:8] + b"".join(rebuilt)


PNG: list[Mutator] = [png_header, png_header, png_chunks, png_chunks]


# --- JPEG -----------------------------------------------------------------------------------------------
def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, marker, length) of the marker segments up to the start of scan."""
    pos, found = 2, []
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        found.append((pos, marker, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return found


def jpeg_frame(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """New start-of-frame values: precision, height, width, number of components."""
    sof = [s for s in _jpeg_segments(data) if s[1] in (0xC0, 0xC1, 0xC2, 0xC3)]
    if not sof:
        return flip_bits(data, rng, other)
    at = sof[0][0] + 4
    out = bytearray(data)
    field = rng.randrange(4)
    if field == 0:
        out[at] = rng.choice([0, 1, 8, 12, 16, 255])
    elif field in (1, 2):
        out[at + 2 * field - 1:at + 2 * field + 1] = rng.choice(INTERESTING_16).to_bytes(2, "big")
    else:
        out[at + 5] = rng.choice([0, 1, 2, 3, 4, 255])
    return bytes(out)


def jpeg_segments(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Lie about a segment length, corrupt the entropy-coded data, or add an EXIF orientation."""
    segments = _jpeg_segments(data)
    if not segments:
        return truncate(data, rng, other)
    op = rng.randrange(3)
    out = bytearray(data)
    if op == 0:
        pos = rng.choice(segments)[0]
        out[pos + 2:pos + 4] = rng.choice(INTERESTING_16).to_bytes(2, "big")
        return bytes(out)
    if op == 1:
        scan = segments[-1][0] + 2 + segments[-1][2]
        for _ in range(rng.randint(1, 32)):
            if scan < len(out) - 2:
                out[rng.randrange(scan, len(out) - 2)] = rng.randrange(256)
        return bytes(out)
    orientation = rng.choice([0, 1, 2, 3, 5, 6, 7, 8, 9, 0xFFFF])
    tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01" + struct.pack(">HH", orientation, 0) \
        + b"\x00\x00\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff
    return bytes(out[:2]) + app1 + bytes(out[2:])


JPEG: list[Mutator] = [jpeg_frame, jpeg_frame, jpeg_segments, jpeg_segments]


# --- NIfTI ----------------------------------------------------------------------------------------------
# (offset, struct format) of the header fields worth changing, NIfTI-1 and NIfTI-2
_NIFTI1 = {"sizeof_hdr": (0, "<i"), "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"),
           "pixdim": (76, "<8f"), "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
           "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<6f"), "srow": (280, "<12f"),
           "magic": (344, "4s")}
_NIFTI2 = {"sizeof_hdr": (0, "<i"), "magic": (4, "8s"), "datatype": (12, "<h"), "bitpix": (14, "<h"),
           "dim": (16, "<8q"), "pixdim": (104, "<8d"), "vox_offset": (168, "<q"), "scl_slope": (176, "<d"),
           "scl_inter": (184, "<d"), "qform_code": (344, "<i"), "sform_code": (348, "<i")}
_DATATYPES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 9999, -1]
_DIMS = [0, -1, 1, 2, 3, 4, 5, 7, 8, 255, 32767, -32768]
_MAGICS = [b"n+1\x00", b"ni1\x00", b"n+2\x00", b"xxxx", b"\x00\x00\x00\x00"]


def _nifti_value(name: str, fmt: str, rng: random.Random) -> tuple:
    count = struct.calcsize(fmt) // struct.calcsize(fmt[-1]) if fmt[-1] != "s" else 1
    if name == "magic":
        return (rng.choice(_MAGICS).ljust(struct.calcsize(fmt), b"\x00"),)
    if name == "datatype":
        return (rng.choice(_DATATYPES),)
    if name == "dim":
        return tuple(rng.choice(_DIMS) if rng.random() < 0.4 else rng.randint(1, 8) for _ in range(count))
    if name in ("sizeof_hdr", "bitpix", "qform_code", "sform_code"):
        return (rng.choice([0, 1, 2, 3, 4, 8, 16, 348, 540, -1, 255]),)
    if fmt[-1] in "fd":
        return tuple(rng.choice(INTERESTING_FLOATS) for _ in range(count))
    return (rng.choice([0, 1, 351, 352, 540, 544, 10**9, -352]),)


def _nifti_mutate_plain(data: bytes, rng: random.Random) -> bytes:
    table = _NIFTI2 if data[4:8] in (b"n+2\x00", b"ni2\x00") else _NIFTI1
    name = rng.choice(list(table))
    at, fmt = table[name]
    if len(data) < at + struct.calcsize(fmt):
        return data
    try:
        packed = struct.pack(fmt, *_nifti_value(name, fmt, rng))
    except struct.error:
        return data
    return data[:at] + packed + data[at + len(packed):]


def nifti_header(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """New header field values (dims, datatype, voxel sizes, offset, scaling, magic); a .nii.gz is
    inflated, changed and compressed again."""
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return data
        return gzip.compress(_nifti_mutate_plain(inner, rng), mtime=0)
    return _nifti_mutate_plain(data, rng)


def nifti_voxels(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Cut or corrupt the voxel data (inside the gzip stream for .nii.gz) or the gzip container itself."""
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.5:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return data
        return gzip.compress(rng.choice([truncate, flip_bits, interesting_ints])(inner, rng, other), mtime=0)
    return rng.choice([truncate, flip_bits, delete_block])(data, rng, other)


NIFTI: list[Mutator] = [nifti_header, nifti_header, nifti_header, nifti_voxels]


# --- ZIP ------------------------------------------------------------------------------------------------
def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [(info.filename, archive.read(info)) for info in archive.infolist()]
    except Exception:
        return []


def _rezip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for name, payload in members:
            archive.writestr(name, payload)
    return buf.getvalue()


def _patch_all(data: bytes, local: int, central: int, value: bytes) -> bytes:
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.find(signature)
        while at >= 0:
            if at + offset + len(value) <= len(out):
                out[at + offset:at + offset + len(value)] = value
            at = out.find(signature, at + 4)
    return bytes(out)


def zip_headers(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Compression method, flags (encrypted, UTF-8, data descriptor), sizes and CRC in the headers."""
    field = rng.randrange(4)
    if field == 0:
        return _patch_all(data, 8, 10, struct.pack("<H", rng.choice([0, 1, 8, 9, 12, 14, 93, 98, 99])))
    if field == 1:
        return _patch_all(data, 6, 8, struct.pack("<H", rng.choice([1, 8, 0x800, 0x809, 0xFFFF])))
    if field == 2:
        size = struct.pack("<I", rng.choice(INTERESTING_32))
        return _patch_all(data, rng.choice([18, 22]), rng.choice([20, 24]), size)
    return _patch_all(data, 14, 16, struct.pack("<I", rng.getrandbits(32)))


def zip_structure(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """Rebuild the archive: hostile names, a mutated member (as DICOM), duplicates, many small members,
    a nested zip, stored instead of deflated, or a damaged central directory."""
    members = zip_members(data)
    if not members:
        return truncate(data, rng, other)
    op = rng.randrange(7)
    if op == 0:
        i = rng.randrange(len(members))
        name = rng.choice(["../../evil.dcm", "/abs/path.dcm", "a/../../b.dcm", "\u00e9\u00e8/\u4e2d.dcm", "x" * 300, "dir/", ".hidden", "__MACOSX/._a", "a\\..\\..\\c.dcm"])
        members[i] = (name, members[i][1])
    elif op == 1:
        i = rng.randrange(len(members))
        members[i] = (members[i][0], rng.choice(DICOM + GENERIC)(members[i][1], rng, other))
    elif op == 2:
        members.append(rng.choice(members))
    elif op == 3:
        members += [(f"tiny/{k:05d}", b"\x00" * rng.randint(0, 8)) for k in range(rng.choice([10, 300]))]
    elif op == 4:
        members.append(("inner.zip", _rezip(members)))
    elif op == 5:
        return _rezip(members, zipfile.ZIP_STORED)
    else:
        at = data.rfind(b"PK\x01\x02")
        if at > 0:
            return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[at + 30:]
    return _rezip(members)


ZIP: list[Mutator] = [zip_headers, zip_structure, zip_structure]

STRUCTURED: dict[str, list[Mutator]] = {"dicom": DICOM, "png": PNG, "jpeg": JPEG, "nifti": NIFTI, "zip": ZIP}


def mutate(kind: str, data: bytes, rng: random.Random, other: bytes) -> tuple[bytes, str]:
    """One to three mutations (mostly structure-aware) of a seed; the names of the mutators applied."""
    names = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        pool = STRUCTURED[kind] if rng.random() < 0.7 else GENERIC
        mutator = rng.choice(pool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate names it is asked for
            try:
                data = mutator(data, rng, other)
            except Exception as exc:  # a mutator that cannot apply to this input: flip bits instead
                data = flip_bits(data, rng, other)
                names.append(f"{mutator.__name__}!{type(exc).__name__}")
                continue
        names.append(mutator.__name__)
    return data, "+".join(names)
