"""One DICOM object or the slices of one series -> :class:`ImageStudy` (decode, keys, safe metadata)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tools.errors import CorruptFileError, InvalidImageError
from tools.imaging.config import ImagingConfig, check_limits
from tools.imaging.dicom import (
    check_decode_memory,
    check_header,
    decode,
    malformed_attributes,
    raw_text,
    transfer_syntax,
)
from tools.imaging.geometry import multiframe_spacing, pixel_spacing, positions_along_normal, sort_slices
from tools.imaging.pixels import color_arrays, grey_arrays, modality_rescale
from tools.imaging.study import ImageStudy, SafeMetadata

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset


def study_from_datasets(datasets: list[Dataset], config: ImagingConfig, warnings: list[str],
                        name: str = "the DICOM file") -> ImageStudy:
    """Build a study from one DICOM object (2-D or multi-frame) or from the slices of one series.

    Attributes are parsed on first access, all of them in here: a malformed one is a CorruptFileError."""
    with malformed_attributes(name):
        return _build_study(datasets, config, warnings, name)


def _build_study(datasets: list[Dataset], config: ImagingConfig, warnings: list[str], name: str) -> ImageStudy:
    first = datasets[0]
    if len(datasets) == 1:
        rows, cols, frames, samples = check_header(first, name, config)
    else:
        rows, cols, _, samples = check_header(first, name, config)
        frames = len(datasets)
        check_limits("the series", rows, cols, frames, samples, config)
    check_decode_memory(datasets, name, rows, cols, frames, samples, config)

    # --- geometry and order (before decoding) ----------------------------------------------------
    spacing_rc, spacing_note = pixel_spacing(first)
    if spacing_note:
        warnings.append(spacing_note)
    z_spacing: float | None = None
    if len(datasets) > 1:
        order, z_spacing = sort_slices(datasets, warnings)
        datasets = [datasets[i] for i in order]
    elif frames > 1:
        z_spacing = multiframe_spacing(first)

    # --- decode once ------------------------------------------------------------------------------
    photometric = str(first.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if len(datasets) == 1:
        raw = decode(first, name)
        if photometric == "PALETTE COLOR":
            raw = apply_palette(raw, first)
    else:
        raw = decode_series(datasets, rows, cols, samples, photometric)
    is_color = raw.ndim >= 3 and raw.shape[-1] == 3 and (samples == 3 or photometric == "PALETTE COLOR")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise InvalidImageError(f"{name} holds NaN or infinite pixel values")
    spatial_ndim = raw.ndim - int(is_color)

    # --- metadata, keys, warnings -----------------------------------------------------------------
    keys, days = _pseudonyms(first, datasets, config)
    meta = safe_metadata(first, frames=int(raw.shape[0]) if spatial_ndim == 3 else 1,
                         photometric=photometric, days=days)
    warnings.extend(_header_notes(first, meta))

    # --- deferred arrays --------------------------------------------------------------------------
    spacing: tuple[float | None, ...] = (spacing_rc[0], spacing_rc[1])
    if spatial_ndim == 3:
        spacing = (z_spacing, *spacing)
    window = ""
    if is_color:
        pixels, display = color_arrays(raw, first, photometric)
    else:
        slope, intercept = modality_rescale(datasets, first, raw.shape[0] if spatial_ndim == 3 else 0)
        pixels, display, window = grey_arrays(raw, datasets[len(datasets) // 2], slope, intercept,
                                              invert=photometric == "MONOCHROME1", name=name)
    sop_class = first.get("SOPClassUID")
    positions = positions_along_normal(datasets) if len(datasets) > 1 else ()
    return ImageStudy(pixels=pixels, display=display, spacing=spacing, source_format="dicom", metadata=meta,
                      sop_class_uid=str(sop_class) if sop_class else None, warnings=tuple(warnings),
                      slice_positions=positions if len(set(positions)) == len(positions) else (),
                      display_window=window, **keys)


def _pseudonyms(first: Dataset, datasets: list[Dataset], config: ImagingConfig) -> tuple[dict[str, Any], int]:
    """The study's keyed pseudonyms (patient and study keys, remapped UIDs) and the date shift in days."""
    from tools import deid

    policy = config.deid
    identity = deid.patient_identity(first)
    study_uid = str(first.get("StudyInstanceUID", "") or "").strip()
    series_uid = str(first.get("SeriesInstanceUID", "") or "").strip()
    keys = {
        "patient_key": deid.patient_key(identity, policy) if identity else None,
        "study_key": deid.study_key(study_uid, policy) if study_uid else None,
        "study_uid": deid.remap_uid(study_uid, policy) if study_uid else None,
        "series_uid": deid.remap_uid(series_uid, policy) if series_uid else None,
        "sop_instance_uids": tuple(deid.remap_uid(uid, policy)
                                   for uid in (raw_text(d, 0x00080018) for d in datasets) if uid),
    }
    days = deid.date_shift_days(identity or "", policy) if policy.shifts_dates else 0
    return keys, days


def _header_notes(first: Dataset, meta: SafeMetadata) -> list[str]:
    """Warnings the header calls for: burned-in annotation, lossy compression."""
    notes = []
    if meta.burned_in_annotation:
        notes.append("Burned In Annotation = YES: the pixels may show identifying text; "
                     "check the image before sharing it")
    if str(first.get("LossyImageCompression", "")).strip() == "01":
        ratio = first.get("LossyImageCompressionRatio")
        notes.append("lossy compressed image" + (f" (ratio {ratio})" if ratio else "")
                     + ": fine detail may be altered")
    return notes


def decode_series(datasets: list[Dataset], rows: int, cols: int, samples: int, photometric: str) -> np.ndarray:
    checked: set[str] = set()
    first = decode(datasets[0], "the first slice", checked)
    if photometric == "PALETTE COLOR":
        first = apply_palette(first, datasets[0])
    out = np.empty((len(datasets), *first.shape), dtype=first.dtype.newbyteorder("="))
    out[0] = first
    for i, ds in enumerate(datasets[1:], start=1):
        arr = decode(ds, f"slice {i + 1}", checked)
        if photometric == "PALETTE COLOR":
            arr = apply_palette(arr, ds)
        if arr.shape != first.shape:
            raise CorruptFileError(f"slice {i + 1} of the series has shape {arr.shape}, the others {first.shape}")
        out[i] = arr
    return out


def apply_palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    try:
        return apply_color_lut(arr, ds)
    except Exception as exc:
        raise CorruptFileError(f"the palette colour lookup table is unusable ({exc})") from exc


def _text(ds: Dataset, keyword: str) -> str | None:
    """A tag's value as text, with instruction-like content neutralised: tags are data that reach prompts."""
    from tools.text_safety import neutralise

    value = ds.get(keyword)
    if value is None:
        return None
    text = neutralise(str(value))[0].strip()
    return text or None


def safe_metadata(ds: Dataset, *, frames: int, photometric: str, days: int) -> SafeMetadata:
    from tools import deid

    age = deid.parse_age_string(ds.get("PatientAge")) if ds.get("PatientAge") else None
    if age is None:
        birth = ds.get("PatientBirthDate", "")
        for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            age = deid.age_years_from_dates(birth, ds.get(kw, ""))
            if age is not None:
                break
    sex = (_text(ds, "PatientSex") or "").upper()[:1] or None
    if sex not in ("M", "F", "O"):
        sex = None
    study_date = _text(ds, "StudyDate")
    if study_date and days:
        study_date = deid.shift_date(study_date, days) or None
    burned = _text(ds, "BurnedInAnnotation")
    identifying: set[str] | None = None

    def clean(keyword: str) -> str | None:
        nonlocal identifying
        text = _text(ds, keyword)
        if text is None:
            return None
        if identifying is None:
            identifying = deid.identifying_values(ds, recursive=False)
        return deid.scrub_text(text, identifying) or None

    body = _text(ds, "BodyPartExamined")
    ts = transfer_syntax(ds)
    return SafeMetadata(
        modality=_text(ds, "Modality"),
        body_part=body.upper() if body else None,
        view_position=_text(ds, "ViewPosition"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        patient_age_years=round(age, 2) if age is not None else None,
        patient_sex=sex,
        study_description=clean("StudyDescription"),
        series_description=clean("SeriesDescription"),
        manufacturer=_text(ds, "Manufacturer"),
        transfer_syntax=ts.name if ts else None,
        burned_in_annotation=None if burned is None else burned.upper() == "YES",
        study_date=study_date,
        photometric=photometric,
        frames=frames,
    )
