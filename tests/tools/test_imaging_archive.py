"""tools.imaging.archive.extract_zip: hostile and broken archives give typed errors and write nothing outside."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from tests.conftest import pydicom_file
from tools import errors
from tools.imaging import load
from tools.imaging.archive import extract_zip


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _patch_headers(data: bytes, local_offset: int, central_offset: int, value: bytes) -> bytes:
    """Overwrite a field in every local file header (PK\\3\\4) and central directory entry (PK\\1\\2)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = out.find(signature)
        while at >= 0:
            out[at + offset:at + offset + len(value)] = value
            at = out.find(signature, at + 4)
    return bytes(out)


def test_a_zipped_series_extracts_and_loads(imaging_config, tmp_path):
    folder = pydicom_file("DICOMDIR").parent / "77654033" / "CT2"
    members = {f"study/CT2/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    (tmp_path / "s.zip").write_bytes(_zip(members, zipfile.ZIP_DEFLATED))
    (tmp_path / "out").mkdir()
    files = extract_zip(tmp_path / "s.zip", tmp_path / "out", max_bytes=10 * 2**20)
    assert len(files) == len(members) and all(f.parent == tmp_path / "out" for f in files)
    study = load(tmp_path / "out", imaging_config)
    assert study.is_volume and study.shape[0] == len(members)


def test_names_cannot_leave_the_folder(tmp_path):
    (tmp_path / "a.zip").write_bytes(_zip({"../../evil.dcm": b"a", "/abs/evil2.dcm": b"b",
                                           "dir\\..\\win.dcm": b"c", "__MACOSX/._x": b"d", ".hidden": b"e"}))
    (tmp_path / "out").mkdir()
    files = extract_zip(tmp_path / "a.zip", tmp_path / "out", max_bytes=1000)
    assert [f.parent for f in files] == [tmp_path / "out"] * 3
    assert not (tmp_path / "evil.dcm").exists() and not list(tmp_path.glob("*evil*"))


def test_declared_bomb_and_too_many_members(tmp_path):
    (tmp_path / "bomb.zip").write_bytes(_zip({"a.dcm": bytes(200_000)}, zipfile.ZIP_DEFLATED))
    (tmp_path / "many.zip").write_bytes(_zip({f"{i}.dcm": b"x" for i in range(20)}))
    (tmp_path / "out").mkdir()
    with pytest.raises(errors.FileTooLargeError):
        extract_zip(tmp_path / "bomb.zip", tmp_path / "out", max_bytes=50_000)
    with pytest.raises(errors.InputError, match="20 files"):
        extract_zip(tmp_path / "many.zip", tmp_path / "out", max_bytes=50_000, max_members=10)
    assert list((tmp_path / "out").iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize(("case", "expected", "message"), [
    ("method99", errors.UnsupportedFormatError, "compression method"),
    ("encrypted", errors.UnsupportedFormatError, "encrypted"),
    ("bad_deflate", errors.CorruptFileError, "corrupt"),
    ("bad_crc", errors.CorruptFileError, "corrupt"),
    ("truncated", errors.CorruptFileError, "corrupt"),
    ("empty", errors.InputError, "no files"),
    # found by fuzzing: offsets before the file's start; stored data declared as LZMA or bzip2
    ("member_cut_out", errors.CorruptFileError, "corrupt"),
    ("lzma_method", errors.CorruptFileError, "corrupt"),
    ("bzip2_method", errors.CorruptFileError, "corrupt"),
    ("only_a_nameless_member", errors.InputError, "no files"),
])
def test_broken_archives_are_typed_errors(tmp_path, case, expected, message):
    stored = _zip({"IM1.dcm": pydicom_file("CT_small.dcm").read_bytes()})
    deflated = _zip({"IM1.dcm": pydicom_file("CT_small.dcm").read_bytes()}, zipfile.ZIP_DEFLATED)
    data = {
        "method99": _patch_headers(stored, 8, 10, struct.pack("<H", 99)),
        "encrypted": _patch_headers(stored, 6, 8, struct.pack("<H", 1)),
        "bad_deflate": deflated[:40] + b"\xff" * 64 + deflated[104:],
        "bad_crc": _patch_headers(stored, 14, 16, b"\x00\x00\x00\x00"),
        "truncated": stored[: len(stored) // 2],
        "empty": _zip({}),
        "lzma_method": _patch_headers(stored, 8, 10, struct.pack("<H", zipfile.ZIP_LZMA)),
        "bzip2_method": _patch_headers(stored, 8, 10, struct.pack("<H", zipfile.ZIP_BZIP2)),
        # the name's length moved to the extra field: a member whose name is empty
        "only_a_nameless_member": _patch_headers(_patch_headers(_zip({"a": b"x"}), 26, 28, b"\x00\x00"),
                                                 28, 30, b"\x01\x00"),
        "member_cut_out": (lambda z: z[:1000] + z[30000:])(_zip({"a.dcm": pydicom_file("CT_small.dcm").read_bytes(),
                                                               "b.dcm": pydicom_file("CT_small.dcm").read_bytes()})),
    }[case]
    (tmp_path / "z.zip").write_bytes(data)
    (tmp_path / "out").mkdir()
    with pytest.raises(expected, match=message):
        extract_zip(tmp_path / "z.zip", tmp_path / "out", max_bytes=10 * 2**20)
