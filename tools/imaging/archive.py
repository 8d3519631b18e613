"""Zipped series: the files of an uploaded ``.zip``, extracted safely into a folder the loader reads."""

from __future__ import annotations

import lzma
import re
import struct
import zipfile
import zlib
from pathlib import Path

from tools.errors import (
    CorruptFileError,
    FileTooLargeError,
    InputError,
    UnsupportedFormatError,
)

MAX_MEMBERS = 5000  # files in one archive: far more than a series needs
_COPY_CHUNK = 1 << 20


def extract_zip(zip_path: Path, dest: Path, max_bytes: int, max_members: int = MAX_MEMBERS) -> list[Path]:
    """Extract the files of the zip at ``zip_path`` flat into the existing folder ``dest``; their paths.

    Safe against hostile archives: only each member's base name is used (sanitised and numbered: no path
    traversal, no absolute paths, no links), at most ``max_members`` files and ``max_bytes`` bytes in
    all (declared sizes are checked first, written bytes while copying: a decompression bomb stops
    early). Hidden files and macOS resource forks are skipped. Every failure is an :class:`InputError`:
    FileTooLargeError, UnsupportedFormatError (encrypted members, compression methods Python lacks),
    CorruptFileError (anything malformed).
    """
    out: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            # not ZipInfo.is_dir(): it fails on an empty name (found by fuzzing); nameless members are skipped
            members = [m for m in archive.infolist() if m.filename and not m.filename.endswith("/")]
            if len(members) > max_members:
                raise InputError(f"zip holds {len(members)} files (limit {max_members})")
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise FileTooLargeError(f"zip expands to {total / 1e6:.0f} MB (limit {max_bytes / 1e6:.0f} MB)")
            written = 0
            for i, member in enumerate(members):
                name = Path(member.filename.replace("\\", "/")).name
                if not name or name.startswith(".") or "__MACOSX" in member.filename:
                    continue
                target = dest / f"{i:05d}_{re.sub(r'[^A-Za-z0-9._-]', '_', name)[-80:]}"
                written += _copy_member(archive, member, target, max_bytes - written)
                out.append(target)
    except InputError:
        raise
    except NotImplementedError as exc:  # a compression method this Python lacks
        raise UnsupportedFormatError(f"the zip file uses an unsupported compression method ({exc}); "
                                     "make it again with ordinary (deflate) compression") from exc
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required for extraction"
        raise UnsupportedFormatError("the zip file is encrypted: extract it first or zip it without a "
                                     "password") from exc
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError, struct.error,
            UnicodeDecodeError, OverflowError) as exc:
        raise CorruptFileError(f"the zip file is corrupt: {exc}") from exc
    if not out:
        raise InputError("the zip file holds no files")
    return out


def _copy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member to ``target``; its size in bytes. FileTooLargeError past ``budget`` bytes."""
    copied = 0
    try:
        src = archive.open(member)
    except OSError as exc:  # a header offset that points outside the file (a seek the OS refuses)
        raise CorruptFileError(f"the zip file is corrupt: {exc.strerror or exc}") from exc
    with src, target.open("wb") as dst:
        while chunk := _read(src):
            copied += len(chunk)
            if copied > budget:
                raise FileTooLargeError("zip expands to more than its declared size and the limit "
                                        f"({budget / 1e6:.0f} MB left)")
            dst.write(chunk)
    return copied


def _read(src: zipfile.ZipExtFile) -> bytes:
    try:
        return src.read(_COPY_CHUNK)
    except OSError as exc:  # reading the archive, not writing the copy: the archive is damaged
        raise CorruptFileError(f"the zip file is corrupt: {exc.strerror or exc}") from exc
