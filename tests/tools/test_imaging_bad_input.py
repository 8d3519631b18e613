"""Bad input to tools.imaging.load: real files made bad; each gives a typed error with a clear message."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import pydicom_file, shared_file
from tools import errors
from tools.imaging import load


def _limited(config, **limits):
    """The loader config with some limits replaced."""
    return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))


def _no_files_written(settings) -> None:
    written = [p for p in Path(settings.data_dir).rglob("*") if p.is_file() and p.name != "secret.key"]
    assert written == []


def test_truncated_dicom_pixel_data(settings, imaging_config, tmp_path):
    data = pydicom_file("CT_small.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: len(data) * 2 // 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(errors.CorruptFileError, match="truncated or corrupt"):
            load(path, imaging_config)
    _no_files_written(settings)


def test_truncated_dicom_header(imaging_config, tmp_path):
    data = pydicom_file("RG1_UNCI.dcm").read_bytes()
    path = tmp_path / "header_cut.dcm"
    path.write_bytes(data[:700])  # cut inside the attributes, long before the pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((errors.CorruptFileError, errors.NoPixelDataError)):
            load(path, imaging_config)


def test_not_dicom(imaging_config):
    readme = pydicom_file("CT_small.dcm").parent / "README.txt"  # a real text file shipped with pydicom
    with pytest.raises(errors.UnsupportedFormatError, match="not a DICOM, PNG, JPEG or NIfTI"):
        load(readme, imaging_config)


def test_dicom_without_pixel_data(imaging_config):
    with pytest.raises(errors.NoPixelDataError, match="without pixel data"):
        load(pydicom_file("rtplan.dcm"), imaging_config)


def test_structured_report_has_no_pixels(imaging_config):
    with pytest.raises(errors.NoPixelDataError):
        load(pydicom_file("test-SR.dcm"), imaging_config)


def test_zero_byte_file(imaging_config, tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(errors.CorruptFileError, match="empty"):
        load(path, imaging_config)
    with pytest.raises(errors.CorruptFileError, match="empty"):
        load(b"", imaging_config)


def test_one_by_one_dicom(imaging_config, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 1
    ds.PixelData = ds.pixel_array[:1, :1].tobytes()
    path = tmp_path / "one.dcm"
    ds.save_as(path)
    with pytest.raises(errors.InvalidImageError, match="1x1"):
        load(path, imaging_config)


def test_one_by_one_png(imaging_config, tmp_path):
    from PIL import Image

    src = Image.open(shared_file("cxr/nih_00000001_000_cardiomegaly.png")).convert("L")
    src.crop((200, 200, 201, 201)).save(tmp_path / "one.png")
    with pytest.raises(errors.InvalidImageError, match="1x1"):
        load(tmp_path / "one.png", imaging_config)


def test_decoder_missing_names_syntax_and_package(imaging_config, monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000

    decoder = get_decoder(JPEG2000)
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(errors.UnsupportedTransferSyntaxError) as info:
        load(pydicom_file("RG1_J2KI.dcm"), imaging_config)
    message = str(info.value)
    assert "JPEG 2000" in message and "1.2.840.10008.1.2.4.91" in message
    assert "pylibjpeg-openjpeg" in message


def test_corrupt_jpeg2000_stream(imaging_config, tmp_path):
    data = bytearray(pydicom_file("JPEG2000.dcm").read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")  # SOC + SIZ marker of the codestream
    assert start > 0
    for k in range(8, 24):  # flip the image and tile sizes in SIZ
        data[start + k] ^= 0xFF
    path = tmp_path / "flipped.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptFileError, match="JPEG 2000"):
        load(path, imaging_config)


def test_corrupt_png(imaging_config, tmp_path):
    data = shared_file("cxr/nih_00027426_000_no_finding.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CorruptFileError):
        load(path, imaging_config)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nifti_with_nan_or_inf(imaging_config, tmp_path, bad):
    import nibabel as nib

    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    vol = np.repeat(ds.pixel_array.astype(np.float32)[:, :, None], 3, axis=2)
    vol[10, 10, 1] = bad
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "bad.nii.gz")
    with pytest.raises(errors.InvalidImageError, match="NaN or infinite"):
        load(tmp_path / "bad.nii.gz", imaging_config)


def test_nifti_4d(imaging_config, tmp_path):
    import nibabel as nib

    ds = pydicom.dcmread(pydicom_file("emri_small.dcm"))
    vol4 = np.stack([ds.pixel_array.transpose(2, 1, 0)] * 2, axis=-1).astype(np.int16)  # (x, y, z, t)
    nib.save(nib.Nifti1Image(vol4, np.eye(4)), tmp_path / "fmri.nii")
    with pytest.raises(errors.InvalidImageError, match="4-D NIfTI"):
        load(tmp_path / "fmri.nii", imaging_config)


def test_truncated_nifti(imaging_config, tmp_path):
    import nibabel as nib

    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    nib.save(nib.Nifti1Image(ds.pixel_array[:, :, None].astype(np.int16), np.eye(4)), tmp_path / "v.nii")
    data = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "v.nii").write_bytes(data[:-1000])
    with pytest.raises(errors.CorruptFileError, match="truncated"):
        load(tmp_path / "v.nii", imaging_config)


def test_file_over_size_limit(imaging_config, monkeypatch):
    small = _limited(imaging_config, max_file_bytes=10_000)
    with pytest.raises(errors.FileTooLargeError, match="RADCONSULT_MAX_FILE_BYTES"):
        load(pydicom_file("CT_small.dcm"), small)
    with pytest.raises(errors.FileTooLargeError):
        load(pydicom_file("CT_small.dcm").read_bytes(), small)


def test_pixel_and_frame_limits_checked_before_decoding(imaging_config, monkeypatch):
    from tools.imaging import dicom_study

    def boom(*args, **kwargs):
        raise AssertionError("pixels were decoded before the limits were checked")

    monkeypatch.setattr(dicom_study, "decode", boom)
    with pytest.raises(errors.FileTooLargeError, match="RADCONSULT_MAX_PIXELS"):
        load(pydicom_file("RG1_UNCI.dcm"), _limited(imaging_config, max_pixels=1_000_000))
    with pytest.raises(errors.FileTooLargeError, match="RADCONSULT_MAX_FRAMES"):
        load(pydicom_file("emri_small.dcm"), _limited(imaging_config, max_frames=5))


def test_nifti_limits_checked_from_header(imaging_config, tmp_path):
    import nibabel as nib

    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    vol = np.repeat(ds.pixel_array[:, :, None], 20, axis=2).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.raises(errors.FileTooLargeError, match="RADCONSULT_MAX_FRAMES"):
        load(tmp_path / "v.nii.gz", _limited(imaging_config, max_frames=10))


def test_wrong_extension_text_named_png(imaging_config, tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes((pydicom_file("CT_small.dcm").parent / "README.txt").read_bytes())
    with pytest.raises(errors.UnsupportedFormatError):
        load(path, imaging_config)


def test_wrong_extension_dicom_named_png_is_read_as_dicom(imaging_config, tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    study = load(path, imaging_config)
    assert study.source_format == "dicom"
    assert any("extension .png does not match" in w for w in study.warnings)


def test_nonexistent_path(imaging_config, tmp_path):
    with pytest.raises(errors.FileMissingError, match="no such file"):
        load(tmp_path / "missing.dcm", imaging_config)


def test_folder_without_images(imaging_config, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello")
    with pytest.raises(errors.NoPixelDataError):
        load(tmp_path / "docs", imaging_config)
    (tmp_path / "void").mkdir()
    with pytest.raises(errors.FileMissingError):
        load(tmp_path / "void", imaging_config)


def test_blank_image(imaging_config, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
    ds.save_as(tmp_path / "blank.dcm")
    with pytest.raises(errors.InvalidImageError, match="blank"):
        load(tmp_path / "blank.dcm", imaging_config)


def test_errors_are_input_errors():
    for cls in (errors.CorruptFileError, errors.UnsupportedFormatError, errors.NoPixelDataError,
                errors.InvalidImageError, errors.FileTooLargeError, errors.UnsupportedTransferSyntaxError,
                errors.FileMissingError):
        assert issubclass(cls, errors.InputError)


# --- the five crash classes the mutation fuzzer found (issue 13): each is a typed error now ---------------
def _ct_small_with_rows_bytes(replace) -> bytes:
    """CT_small.dcm (explicit VR little endian) with its Rows element (0028,0010) rewritten by ``replace``."""
    data = pydicom_file("CT_small.dcm").read_bytes()
    at = data.index(b"\x28\x00\x10\x00US\x02\x00")  # tag, VR, 2-byte length, then the 2-byte value
    return data[:at] + replace(data[at:at + 10]) + data[at + 10:]


def test_unknown_value_representation_is_a_corrupt_file(imaging_config, tmp_path):
    path = tmp_path / "vr.dcm"
    path.write_bytes(_ct_small_with_rows_bytes(lambda e: e[:4] + b"PF" + e[6:]))
    with pytest.raises(errors.CorruptFileError, match=r"malformed attribute \(0028,0010\)"):
        load(path, imaging_config)


def test_value_length_not_a_multiple_of_its_size_is_a_corrupt_file(imaging_config, tmp_path):
    path = tmp_path / "rows.dcm"
    path.write_bytes(_ct_small_with_rows_bytes(lambda e: e[:6] + b"\x03\x00" + e[8:] + b"\x00"))
    with pytest.raises(errors.CorruptFileError, match=r"malformed attribute \(0028,0010\)"):
        load(path, imaging_config)


def test_corrupt_gzip_stream_is_not_a_nifti(imaging_config, tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 600)  # invalid deflate blocks
    with pytest.raises(errors.UnsupportedFormatError):
        load(path, imaging_config)


def test_unknown_nifti_datatype_code(imaging_config, tmp_path):
    import struct

    import nibabel as nib

    data = bytearray(nib.Nifti1Image(np.arange(120, dtype=np.int16).reshape(4, 5, 6), np.eye(4)).to_bytes())
    struct.pack_into("<h", data, 70, 9999)  # the NIfTI-1 header's datatype field
    path = tmp_path / "dtype.nii"
    path.write_bytes(bytes(data))
    with pytest.raises(errors.UnsupportedFormatError, match="data type code 9999"):
        load(path, imaging_config)


@pytest.mark.parametrize("keyword", ["RescaleIntercept", "RescaleSlope"])
@pytest.mark.parametrize("value", ["NaN", "inf"])
def test_non_finite_rescale_is_rejected_at_load(imaging_config, tmp_path, keyword, value):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds[keyword].value = value
    path = tmp_path / "rescale.dcm"
    ds.save_as(path)
    with pytest.raises(errors.InvalidImageError, match="Rescale"):
        study = load(path, imaging_config)
        _ = study.pixels, study.display  # what the UI reads: never an untyped error here either



@pytest.mark.parametrize("value", [b"inf ", b"1e400 ", b"abc "])
def test_integer_string_that_is_not_an_integer(imaging_config, tmp_path, value):
    # found by the coverage-guided fuzzer: pydicom turns IS "inf" into an OverflowError on access
    data = pydicom_file("emri_small.dcm").read_bytes()  # explicit VR little endian
    at = data.index(b"\x28\x00\x08\x00IS\x02\x0010")  # Number of Frames = "10"
    path = tmp_path / "frames.dcm"
    path.write_bytes(data[:at + 6] + len(value).to_bytes(2, "little") + value + data[at + 10:])
    with pytest.raises(errors.RadconsultError):
        study = load(path, imaging_config)
        _ = study.pixels, study.display

# --- the memory budget (issue 13): checked from the header, before anything large is allocated ----------
def test_deflated_dicom_declaring_a_huge_image_is_refused_before_inflating(imaging_config, tmp_path):
    import tracemalloc

    from tests.tools.crafted import deflated_dicom

    path = tmp_path / "bomb.dcm"
    path.write_bytes(deflated_dicom(20000, 20000))  # about 780 KB, 800 MB inflated
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(errors.FileTooLargeError, match="20000x20000 pixels of 16 bits.*RADCONSULT_MAX_DECODE_BYTES"):
            load(path, imaging_config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def test_deflated_dicom_inflating_past_the_budget_is_refused_by_size(imaging_config, tmp_path):
    from tests.tools.crafted import deflated_dicom

    # 64 x 64 pixels, but 32 MiB of private data before them: the image header in the first MiB says
    # nothing about the pixels, so the inflated size is what is held against the budget
    path = tmp_path / "padded.dcm"
    path.write_bytes(deflated_dicom(64, 64, padding=32 * 2**20))
    with pytest.raises(errors.FileTooLargeError, match="inflates to over 8 MiB.*RADCONSULT_MAX_DECODE_BYTES"):
        load(path, _limited(imaging_config, max_decode_bytes=16 * 2**20))
    with pytest.raises(errors.InvalidImageError, match="blank"):  # within the default budget: read whole
        load(path, imaging_config)


def test_decode_budget_counts_dtype_frames_and_float_arrays(imaging_config, monkeypatch):
    from tools.imaging import dicom_study

    # RG1_UNCI: 1955 x 1841 x 16 bits = 6.9 MiB stored; with the pixel data held, the decoded array, the
    # two float32 arrays the study materialises and the fixed overhead, about 57 MiB: a 48 MiB budget
    # refuses it untouched, 64 MiB is enough.
    def boom(*args, **kwargs):
        raise AssertionError("pixels were decoded before the memory budget was checked")

    with monkeypatch.context() as patched:
        patched.setattr(dicom_study, "decode", boom)
        with pytest.raises(errors.FileTooLargeError, match="1955x1841 pixels of 16 bits.*RADCONSULT_MAX_DECODE_BYTES"):
            load(pydicom_file("RG1_UNCI.dcm"), _limited(imaging_config, max_decode_bytes=48 * 2**20))
        with pytest.raises(errors.FileTooLargeError, match="10 frame"):  # emri_small: 10 frames of 64x64
            load(pydicom_file("emri_small.dcm"), _limited(imaging_config, max_decode_bytes=200_000))
    study = load(pydicom_file("RG1_UNCI.dcm"), _limited(imaging_config, max_decode_bytes=64 * 2**20))
    assert study.pixels.dtype == np.float32 and study.display.shape == (1955, 1841)


def test_decode_budget_for_png_and_nifti(imaging_config, tmp_path):
    import nibabel as nib
    from PIL import Image

    Image.fromarray(np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)).save(tmp_path / "a.png")
    nib.save(nib.Nifti1Image(np.arange(64 ** 3, dtype=np.int16).reshape(64, 64, 64), np.eye(4)),
             tmp_path / "v.nii")
    for name in ("a.png", "v.nii"):
        with pytest.raises(errors.FileTooLargeError, match="RADCONSULT_MAX_DECODE_BYTES"):
            load(tmp_path / name, _limited(imaging_config, max_decode_bytes=1 * 2**20))
        assert load(tmp_path / name, imaging_config).pixels.size > 0
