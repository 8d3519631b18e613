"""Imaging input: DICOM / PNG / JPEG / NIfTI -> :class:`ImageStudy`, de-identified in the loader.

CONTRACT (other modules rely on these names; add fields, never rename):
``load(source, config) -> ImageStudy`` with an :class:`ImagingConfig` (limits and the de-identification
policy), built from the settings by ``agent.wiring.imaging_config``.

What :func:`load` reads:

* DICOM: a single file (any transfer syntax pydicom's installed decoders handle: uncompressed,
  big endian, deflated, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K), a
  multi-frame object, a folder holding one series (sorted along the slice normal into a volume;
  the largest series wins and the others are named in a warning), or a DICOMDIR (its records are
  followed to the image files).
* PNG and JPEG, 8- and 16-bit, grey and RGB (Pillow).
* NIfTI-1/2 (.nii, .nii.gz; nibabel), 2-D or 3-D, reoriented to the closest RAS+ frame and laid
  out as (slices inferior->superior, rows anterior->posterior, columns patient right->left) with
  spacing from the voxel sizes.

The format is sniffed from the content (DICM preamble, PNG/JPEG magic, NIfTI header), never from
the extension: a PNG named ``.dcm`` loads as PNG with a warning saying so.

Identifiers never leave this package: the study carries only :class:`SafeMetadata`, the
HMAC-derived patient and study keys and remapped UIDs (see :mod:`tools.deid`).

Limits (``config.limits``: ``max_file_bytes``, ``max_pixels``, ``max_frames``, and the peak-memory
budget ``max_decode_bytes``, which counts the stored pixels, the decoded array and the two float32
arrays a study materialises) are checked from file sizes and headers before any pixel buffer is
allocated; a deflated DICOM is inflated as a stream and checked before pydicom inflates it. Every
failure is a :class:`tools.errors.InputError`, also for malformed attributes that pydicom parses only
on first access (all of them are read inside :func:`tools.imaging.dicom.malformed_attributes`).

``pixels`` and ``display`` are computed from the decoded stored values on first access (the
decode itself, the checks and the metadata happen in :func:`load`): a caller that needs only the
display image never pays for the float32 physical-unit copy, and the reverse.

Layout, one module per stage: ``config`` (limits), ``study`` (the types), ``sniffing`` (format from
content), ``loader`` (the entry point), ``dicom`` (reading, header access, decoding), ``dicom_study``
(DICOM -> ImageStudy), ``geometry`` (spacing, slice order), ``pixels`` (modality LUT, windowing),
``series`` (folders, series, DICOMDIR), ``raster`` (PNG/JPEG), ``nifti``, ``archive`` (zipped series:
:func:`tools.imaging.archive.extract_zip`, then load the folder).
"""

from __future__ import annotations

from tools.imaging.config import MIN_SIDE, ImagingConfig, ImagingLimits, check_file_size
from tools.imaging.dicom import is_truncated
from tools.imaging.loader import load
from tools.imaging.sniffing import sniff
from tools.imaging.study import ImageStudy, SafeMetadata

__all__ = [
    "MIN_SIDE",
    "ImageStudy",
    "ImagingConfig",
    "ImagingLimits",
    "SafeMetadata",
    "check_file_size",
    "is_truncated",
    "load",
    "sniff",
]
