"""Geometry from DICOM headers: pixel spacing, slice normal and position, slice order and spacing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tools.imaging.dicom import header_numbers

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset


def pixel_spacing(ds: Dataset) -> tuple[tuple[float | None, float | None], str | None]:
    """(row spacing, column spacing) in mm and a warning when missing or only at the detector."""
    value = ds.get("PixelSpacing")
    if value is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            measures = shared[0].get("PixelMeasuresSequence")
            if measures:
                value = measures[0].get("PixelSpacing")
    note = None
    if value is None and ds.get("ImagerPixelSpacing") is not None:
        value = ds.get("ImagerPixelSpacing")
        note = "pixel spacing is the detector's (Imager Pixel Spacing), not corrected for magnification"
    if value is None and ds.get("SequenceOfUltrasoundRegions"):
        # ultrasound: the calibrated region's physical size per pixel (units 3 = cm)
        region = ds.SequenceOfUltrasoundRegions[0]
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        ux, uy = region.get("PhysicalUnitsXDirection"), region.get("PhysicalUnitsYDirection")
        if dx and dy and ux == 3 and uy == 3:
            value = [abs(float(dy)) * 10.0, abs(float(dx)) * 10.0]
            note = "pixel spacing from the first calibrated ultrasound region"
    try:
        r, c = float(value[0]), float(value[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return (None, None), "no pixel spacing in the header: sizes in mm are unknown"
    if r <= 0 or c <= 0 or not np.isfinite([r, c]).all():
        return (None, None), "the header's pixel spacing is zero or invalid: sizes in mm are unknown"
    return (r, c), note


def slice_normal(ds: Dataset) -> np.ndarray | None:
    iop = header_numbers(ds, "ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray(iop, dtype=np.float64)
    n = np.cross(v[:3], v[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else None


def slice_position(ds: Dataset) -> np.ndarray | None:
    ipp = header_numbers(ds, "ImagePositionPatient")
    return np.asarray(ipp, dtype=np.float64) if ipp is not None and len(ipp) == 3 else None


def positions_along_normal(datasets: list[Dataset]) -> tuple[float, ...]:
    """Each slice's position along the slice normal, mm (ImagePositionPatient . normal), in the given order;
    () when a slice lacks its position or orientation. Viewers link slices of two series by it."""
    normal = slice_normal(datasets[0]) if datasets else None
    if normal is None:
        return ()
    out = []
    for d in datasets:
        p = slice_position(d)
        if p is None:
            return ()
        out.append(round(float(np.dot(p, normal)), 3))
    return tuple(out)


def sort_slices(datasets: list[Dataset], warnings: list[str]) -> tuple[list[int], float | None]:
    """Order along the slice normal (ImagePositionPatient . normal), else by InstanceNumber; spacing in mm."""
    normal = slice_normal(datasets[0])
    positions = [slice_position(d) for d in datasets]
    if normal is not None and all(p is not None for p in positions):
        proj = np.array([float(np.dot(p, normal)) for p in positions])  # type: ignore[arg-type]
        order = [int(i) for i in np.argsort(proj, kind="stable")]
        gaps = np.diff(proj[order])
        if np.any(np.abs(gaps) < 1e-3):
            warnings.append("the series holds slices at the same position (duplicates or several "
                            "acquisitions): the volume may repeat slices")
        good = gaps[np.abs(gaps) >= 1e-3]
        if good.size == 0:
            return order, None
        spacing = float(np.median(good))
        if np.max(np.abs(good - spacing)) > 0.1 * spacing:
            warnings.append("slice spacing is not uniform (missing slices or a variable-thickness "
                            f"acquisition): the volume uses the median, {spacing:.3g} mm")
        return order, spacing
    numbers = [(header_numbers(d, "InstanceNumber") or [None])[0] for d in datasets]
    if all(n is not None for n in numbers):
        order = sorted(range(len(datasets)), key=lambda i: numbers[i])  # type: ignore[arg-type,return-value]
        warnings.append("slices ordered by Instance Number (no usable Image Position/Orientation)")
    else:
        order = list(range(len(datasets)))
        warnings.append("slices kept in file order: no position or instance number to sort them by")
    thickness = datasets[0].get("SpacingBetweenSlices") or datasets[0].get("SliceThickness")
    try:
        return order, float(thickness) if thickness else None
    except (TypeError, ValueError):
        return order, None


def multiframe_spacing(ds: Dataset) -> float | None:
    """Slice spacing of an enhanced multi-frame object from per-frame positions, of an RT Dose grid
    from its frame offsets, else the header."""
    offsets = header_numbers(ds, "GridFrameOffsetVector")
    if offsets and len(offsets) > 1:
        gaps = np.abs(np.diff(offsets))
        gaps = gaps[gaps > 1e-6]
        if gaps.size:
            return float(np.median(gaps))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    normal = None
    if shared and shared[0].get("PlaneOrientationSequence"):
        normal = slice_normal(shared[0].PlaneOrientationSequence[0])
    if per_frame and normal is not None:
        pos = []
        for item in per_frame:
            seq = item.get("PlanePositionSequence")
            p = slice_position(seq[0]) if seq else None
            if p is None:
                pos = []
                break
            pos.append(float(np.dot(p, normal)))
        if len(pos) > 1:
            gaps = np.abs(np.diff(pos))
            gaps = gaps[gaps > 1e-3]
            if gaps.size:
                return float(np.median(gaps))
    for src in ([shared[0].get("PixelMeasuresSequence", [None])[0]] if shared else []) + [ds]:
        if src is None:
            continue
        value = src.get("SpacingBetweenSlices") or src.get("SliceThickness")
        if value:
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    return None
