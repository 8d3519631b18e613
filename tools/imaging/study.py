"""The loaded study: :class:`ImageStudy`, its allowlisted :class:`SafeMetadata`, and the lazily computed arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SafeMetadata:
    """The allowlist of attributes that may travel past the loader. Never identifiers."""

    modality: str | None = None          # DICOM Modality, e.g. "CR", "DX", "CT", "MR", "US"; "OT" for PNG/JPEG
    body_part: str | None = None         # BodyPartExamined, upper-case, e.g. "CHEST", "BREAST"
    view_position: str | None = None     # ViewPosition, e.g. "PA", "AP", "LL", "LAT"
    laterality: str | None = None        # ImageLaterality / Laterality: "L", "R", "B"
    patient_age_years: float | None = None  # from PatientAge ("005Y", "030M") or birth date vs study date
    patient_sex: str | None = None       # "M", "F", "O"
    study_description: str | None = None
    series_description: str | None = None
    manufacturer: str | None = None
    transfer_syntax: str | None = None   # UID name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    burned_in_annotation: bool | None = None
    study_date: str | None = None        # YYYYMMDD after the date policy (kept or shifted)
    photometric: str | None = None
    frames: int = 1

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


class Deferred:
    """A zero-argument computation of an array whose shape is known without running it."""

    __slots__ = ("fn", "shape")

    def __init__(self, fn: Callable[[], np.ndarray], shape: tuple[int, ...]) -> None:
        self.fn = fn
        self.shape = shape


class LazyArray:
    """Data descriptor for an array field that may be given as a :class:`Deferred`, run on first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> np.ndarray:
        if obj is None:
            raise AttributeError(self.name)  # no class-level default: the dataclass field stays required
        value = obj.__dict__[self.name]
        if isinstance(value, Deferred):
            value = value.fn()
            obj.__dict__[self.name] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


@dataclass(frozen=True, eq=False)
class ImageStudy:
    """One loaded image or volume.

    ``pixels`` is in physical units (HU for CT after the modality LUT), float32; shape (H, W) for a 2-D
    image, (D, H, W) for a volume or multi-frame object, with a trailing 3 for RGB.
    ``display`` has the same shape, float32 in [0, 1], after VOI LUT / windowing and MONOCHROME1 inversion.
    ``spacing`` is in mm per axis, in the same order as the spatial axes of ``pixels`` (None where unknown).
    Both arrays may be computed on first access (see the module docstring); reading them is always safe.
    """

    pixels: np.ndarray = LazyArray()  # type: ignore[assignment]
    display: np.ndarray = LazyArray()  # type: ignore[assignment]
    spacing: tuple[float | None, ...]
    source_format: str                   # "dicom" | "png" | "jpeg" | "nifti"
    metadata: SafeMetadata
    patient_key: str | None = None       # HMAC pseudonym; None when the source carries no patient identity
    study_key: str | None = None
    study_uid: str | None = None         # pseudonymised StudyInstanceUID (consistent remap)
    series_uid: str | None = None        # pseudonymised SeriesInstanceUID
    sop_instance_uids: tuple[str, ...] = ()  # pseudonymised, one per slice / file
    sop_class_uid: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    slice_positions: tuple[float, ...] = ()  # mm along the slice normal, one per slice; () when unknown
    # how ``display`` was windowed: "header" (the DICOM's VOI window), "lut" (a modality or VOI LUT),
    # "estimated" (no window in the file: the pixels' robust 0.5-99.5 percentile range, clipped) or ""
    # (PNG/JPEG and colour: the stored values scaled linearly)
    display_window: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        value = self.__dict__.get("pixels")
        if isinstance(value, Deferred):
            return tuple(value.shape)
        return tuple(self.pixels.shape)

    @property
    def is_rgb(self) -> bool:
        return len(self.shape) >= 3 and self.shape[-1] == 3

    @property
    def is_volume(self) -> bool:
        return len(self.shape) - (1 if self.is_rgb else 0) == 3

    def summary(self) -> dict[str, object]:
        """JSON-able description without pixels: what `radconsult inspect --json` prints."""
        return {
            "source_format": self.source_format,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing),
            "metadata": self.metadata.to_dict(),
            "patient_key": self.patient_key,
            "study_key": self.study_key,
            "warnings": list(self.warnings),
        }

    def __getstate__(self) -> dict[str, Any]:  # pickling / deepcopy (e.g. UI session state) materialise
        return {k: (v.fn() if isinstance(v, Deferred) else v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
