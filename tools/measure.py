"""A length measured between two points on a shown slice, in mm, from the study's geometry.

The distance uses the in-plane pixel spacing of the slice (row spacing along y, column spacing along x).
Where DICOM gives only the detector spacing of a projection radiograph (or the image is a CR/DX/MG
projection), the length is measured but carries a warning: a projection magnifies, so it is not a true
size. Without any spacing there is no length in mm: :class:`MeasurementError`.

A measurement may name the lesion it belongs to (``lesion="RUL nodule 1"``): the same label on a prior and the
current study is how a comparison (:mod:`tools.comparison`) finds the same nodule on both. :func:`mark_absent`
records that a labelled lesion is not seen on a study (new since a prior, or resolved).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tools.errors import InputError

if TYPE_CHECKING:
    from tools.imaging import ImageStudy

PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "PX", "IO"})
NODULE_TYPES = ("solid", "part_solid", "ground_glass")
_LESION = re.compile(r"[A-Za-z0-9 ._()-]{1,40}")


class MeasurementError(InputError):
    """Two points that cannot give a length in mm (off the image, the same point, no pixel spacing)."""


@dataclass(frozen=True)
class Measurement:
    """One measured length. ``p1``/``p2`` are (x, y) pixel positions on slice ``slice_index`` of the study
    (0 for a 2-D image); ``label`` says what was measured ("long axis", "short axis", "solid component")."""

    length_mm: float
    slice_index: int
    p1: tuple[float, float]
    p2: tuple[float, float]
    spacing_mm: tuple[float, float]          # (row, column) spacing used, mm per pixel
    label: str = "long axis"
    nodule_type: str | None = None
    study_key: str | None = None             # pseudonymous study key of the measured study
    series_uid: str | None = None            # pseudonymised series UID
    warnings: tuple[str, ...] = ()
    lesion: str | None = None                # the lesion's label ("RUL nodule 1"), the same on every study
    study_date: str | None = None            # YYYYMMDD of the measured study, after the date policy
    study_uid: str | None = None             # pseudonymised Study Instance UID
    sop_instance_uid: str | None = None      # pseudonymised SOP Instance UID of the measured slice
    sop_class_uid: str | None = None
    present: bool = True                     # False: the lesion was marked as not seen on this study

    def describe(self) -> str:
        """One line for the evidence ledger and the viewer's list."""
        if not self.present:
            return f"{self.lesion} not seen on this study"
        kind = f", {self.nodule_type.replace('_', '-')}" if self.nodule_type else ""
        where = f"slice {self.slice_index}" if self.slice_index else "the image"
        text = (f"{self.lesion + ' ' if self.lesion else ''}{self.label} {self.length_mm:.1f} mm{kind} (on {where}, from ({self.p1[0]:.0f}, {self.p1[1]:.0f}) "
                f"to ({self.p2[0]:.0f}, {self.p2[1]:.0f}), pixel spacing {self.spacing_mm[0]:.3g} x "
                f"{self.spacing_mm[1]:.3g} mm)")
        return text + ("; " + "; ".join(self.warnings) if self.warnings else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lesion_label(text: str | None) -> str | None:
    """A lesion label as typed, tidied ("RUL nodule 1"); None when empty. :class:`MeasurementError` when it is
    longer than 40 characters or holds other than letters, digits, spaces and ._()-."""
    label = " ".join((text or "").split())
    if not label:
        return None
    if not _LESION.fullmatch(label):
        raise MeasurementError("a lesion label is up to 40 letters, digits, spaces or ._()- (e.g. RUL nodule 1)")
    return label


def lesion_key(label: str) -> str:
    """The label as compared across studies: case and punctuation ignored ("RUL-1" is "rul 1")."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", label.lower()).split())


def _provenance(study: ImageStudy, slice_index: int) -> dict[str, Any]:
    uids = study.sop_instance_uids
    sop = uids[slice_index] if len(uids) > slice_index else (uids[0] if len(uids) == 1 else None)
    return {"study_key": study.study_key, "series_uid": study.series_uid, "study_date": study.metadata.study_date,
            "study_uid": study.study_uid, "sop_instance_uid": sop, "sop_class_uid": study.sop_class_uid}


def mark_absent(study: ImageStudy, lesion: str) -> Measurement:
    """The labelled ``lesion`` is not seen on ``study`` (no length): new since this prior, or resolved now."""
    label = lesion_label(lesion)
    if label is None:
        raise MeasurementError("name the lesion that is not seen (its label, e.g. RUL nodule 1)")
    return Measurement(0.0, 0, (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), "not seen", None, lesion=label, present=False,
                       **{k: v for k, v in _provenance(study, 0).items() if k != "sop_instance_uid"})


def _in_plane_spacing(study: ImageStudy) -> tuple[float, float] | None:
    spacing = list(study.spacing)  # per spatial axis: (row, column), or (slice, row, column) for a volume
    plane = spacing[-2:] if len(spacing) >= 2 else []
    if len(plane) != 2 or any(s is None or not (s > 0) for s in plane):
        return None
    return float(plane[0]), float(plane[1])


def measure(study: ImageStudy, slice_index: int, p1: tuple[float, float], p2: tuple[float, float], *,
            label: str = "long axis", nodule_type: str | None = None, lesion: str | None = None) -> Measurement:
    """The length between ``p1`` and ``p2`` (x, y pixels) on ``slice_index`` of ``study``, in mm; ``lesion``
    names the lesion it belongs to (see :func:`lesion_label`)."""
    lesion = lesion_label(lesion)
    if nodule_type is not None and nodule_type not in NODULE_TYPES:
        raise MeasurementError(f"nodule type must be one of {', '.join(NODULE_TYPES)}, not {nodule_type!r}")
    height, width = study.shape[-3:-1] if study.is_rgb else study.shape[-2:]
    depth = study.shape[0] if study.is_volume else 1
    if not 0 <= slice_index < depth:
        raise MeasurementError(f"slice {slice_index} is outside the study (0-{depth - 1})")
    for x, y in (p1, p2):
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise MeasurementError(f"point ({x}, {y}) is outside the {width} x {height} image")
    if p1 == p2:
        raise MeasurementError("the two points are the same: mark both ends of the length")
    spacing = _in_plane_spacing(study)
    if spacing is None:
        raise MeasurementError("the study has no pixel spacing, so a length in mm cannot be measured")
    warnings = []
    modality = (study.metadata.modality or "").upper()
    if modality in PROJECTION_MODALITIES:
        warnings.append(f"{modality} is a projection image: the length is at the detector and magnified, "
                        "not a true size")
    length = math.hypot((p2[0] - p1[0]) * spacing[1], (p2[1] - p1[1]) * spacing[0])
    return Measurement(round(length, 2), slice_index, (float(p1[0]), float(p1[1])), (float(p2[0]), float(p2[1])),
                       spacing, label, nodule_type, warnings=tuple(warnings), lesion=lesion,
                       **_provenance(study, slice_index))
