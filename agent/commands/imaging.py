"""`radconsult inspect` and `radconsult deid`: look at a study, write de-identified DICOM copies.

``inspect PATH [--json]`` loads PATH the way the assistant does (de-identified in the loader) and
prints :meth:`tools.imaging.ImageStudy.summary`: never an identifier.

``deid IN OUT`` writes de-identified copies of the DICOM file or folder IN (PS3.15 Annex E Basic
Profile, see :mod:`tools.deid`). Files are written as ``OUT/<new SOP UID>.dcm`` (a folder's files
flat; one file into an existing folder too): input folder and file names often carry patient names
or IDs and are never reused; an explicit output file name OUT is used as given; non-DICOM files and DICOMDIR indexes are
skipped and counted; files that declare Burned In Annotation = YES are counted and warned about (the
pixels are not altered). IN is never modified, OUT may not be IN or lie inside it, an existing output
file is never overwritten, and nothing is written unless every file succeeds (the output is built in
a temporary sibling and renamed into place).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from agent.settings import Settings
from tools.errors import (
    CorruptFileError,
    FileMissingError,
    InputError,
    RadconsultError,
    UnsupportedFormatError,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="load an image (DICOM file/folder/DICOMDIR, PNG, JPEG, NIfTI) "
                                       "and print its de-identified metadata")
    p.add_argument("path", help="file or folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_inspect)

    d = sub.add_parser("deid", help="write de-identified copies of a DICOM file or folder "
                                    "(PS3.15 Annex E Basic Profile)")
    d.add_argument("input", metavar="IN", help="DICOM file or folder (never modified)")
    d.add_argument("output", metavar="OUT", help="output file, or a new (or empty) folder")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=run_deid)


# --- inspect ---------------------------------------------------------------------------------------
def run_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json
    from agent.wiring import imaging_config
    from tools.imaging import load

    study = load(args.path, imaging_config(settings))
    summary = study.summary()
    if args.json:
        print_json(summary)
        return 0
    meta: dict[str, Any] = summary["metadata"]  # type: ignore[assignment]
    spacing = ", ".join("?" if s is None else f"{s:.4g}" for s in study.spacing)
    print(f"format:             {study.source_format}")
    print(f"shape:              {' x '.join(map(str, study.shape))}")
    print(f"spacing mm:         {spacing}")
    print(f"patient key:        {study.patient_key or '-'}")
    print(f"study key:          {study.study_key or '-'}")
    for key, value in meta.items():
        if value not in (None, ""):
            print(f"{key + ':':20s}{value}")
    for warning in study.warnings:
        print(f"warning:            {warning}")
    return 0


# --- deid ------------------------------------------------------------------------------------------
def run_deid(args: argparse.Namespace, settings: Settings) -> int:
    from agent.cli import print_json

    result = deidentify_path(Path(args.input), Path(args.output), settings)
    if args.json:
        print_json(result)
    else:
        print(f"wrote {result['written']} de-identified file(s) to {args.output}")
        if result["skipped"]:
            print(f"skipped {result['skipped']} file(s) that are not DICOM images or are DICOMDIR indexes")
        if result["burned_in_annotation"]:
            print(f"warning: {result['burned_in_annotation']} file(s) declare Burned In Annotation = YES: "
                  "identifying text may remain in the pixels, which this command does not alter")
    return 0


def deidentify_path(src: Path, dst: Path, settings: Settings) -> dict[str, object]:
    """De-identify the DICOM file or folder ``src`` into ``dst``; all or nothing. Returns counts."""
    src = src.expanduser()
    dst = dst.expanduser()
    if not src.exists():
        raise FileMissingError(f"no such file or folder: {src}")
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r:
        raise InputError("OUT is the same as IN: de-identified copies never overwrite the input")
    if src.is_dir() and dst_r.is_relative_to(src_r):
        raise InputError("OUT lies inside IN: choose an output folder outside the input folder")

    if src.is_file():
        into_folder = dst.is_dir()
        if not into_folder:  # an explicit output file name, chosen by the user
            if dst.exists():
                raise InputError(f"{dst} exists: choose a new output name (nothing is overwritten)")
            if not dst.parent.is_dir():
                raise FileMissingError(f"the output folder {dst.parent} does not exist")
        ds = _deidentified(src, settings)
        # into a folder: named after the new SOP Instance UID, never after the input (file names often
        # carry a patient's name or record number)
        target = dst / _output_name(ds, 0) if into_folder else dst
        if target.exists():
            raise InputError(f"{target} exists: choose a new output name (nothing is overwritten)")
        _atomic_write(ds, target)
        return {"written": 1, "skipped": 0, "burned_in_annotation": int(_burned_in(ds)), "output": str(target)}

    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(f"{dst} exists and is not an empty folder: choose a new output folder")
    if not dst_r.parent.is_dir():
        raise FileMissingError(f"the output folder's parent {dst_r.parent} does not exist")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst_r.name}.", suffix=".tmp", dir=dst_r.parent))
    written = skipped = burned = 0
    try:
        for path in files:
            if not _is_dicom_image(path, settings):
                skipped += 1
                continue
            ds = _deidentified(path, settings, skip_dicomdir=True)
            if ds is None:
                skipped += 1
                continue
            target = tmp / _output_name(ds, written)
            if target.exists():
                raise InputError("two input files share one SOP Instance UID: the folder holds duplicates")
            _atomic_write(ds, target)
            written += 1
            burned += int(_burned_in(ds))
        if written == 0:
            raise UnsupportedFormatError(f"{src} holds no DICOM image files to de-identify")
        if dst.exists():
            dst.rmdir()  # empty, checked above
        os.replace(tmp, dst_r)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"written": written, "skipped": skipped, "burned_in_annotation": burned, "output": str(dst)}


def _output_name(ds: Any, index: int) -> str:
    """The de-identified file's name: its new (remapped) SOP Instance UID, else a counter."""
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    return f"{uid}.dcm" if uid else f"{index:06d}.dcm"


def _burned_in(ds: Any) -> bool:
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


def _is_dicom_image(path: Path, settings: Settings) -> bool:
    from tools.imaging import sniff

    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with path.open("rb") as fh:
            return sniff(fh.read(1024)) == "dicom"
    except OSError:
        return False


def _deidentified(path: Path, settings: Settings, skip_dicomdir: bool = False) -> Any:
    import pydicom

    from agent.wiring import deid_policy, imaging_limits
    from tools.deid import deidentify_dataset
    from tools.imaging import check_file_size, is_truncated, sniff

    check_file_size(path, imaging_limits(settings))
    with path.open("rb") as fh:
        if sniff(fh.read(1024)) != "dicom":
            raise UnsupportedFormatError(f"{path.name} is not a DICOM file: `radconsult deid` writes DICOM only")
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh, force=True)
            if is_truncated(ds):
                raise EOFError("the file ends inside an attribute")
            ds.remove_private_tags()  # also forces every element to parse: truncation shows here
        except Exception as exc:
            raise CorruptFileError(f"{path.name} is a truncated or corrupt DICOM file ({type(exc).__name__})") \
                from exc
    if "DirectoryRecordSequence" in ds:
        if skip_dicomdir:
            return None
        raise UnsupportedFormatError(f"{path.name} is a DICOMDIR index: de-identify its folder instead")
    try:
        return deidentify_dataset(ds, deid_policy(settings))
    except RadconsultError:  # bad input, or the installation secret cannot be created: not the file's fault
        raise
    except Exception as exc:
        raise CorruptFileError(f"{path.name} cannot be de-identified: a malformed attribute "
                               f"({type(exc).__name__})") from exc


def _atomic_write(ds: Any, target: Path) -> None:
    """Write to a temporary file in the target's folder, then rename it into place (no partial files)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = meta if meta is not None else FileMetaDataset()
        if ds.is_little_endian is False:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
        ds.file_meta = meta
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            ds.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            raise InputError(f"{target} appeared while writing: nothing is overwritten")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
