"""What :mod:`tools.pacs` returns (studies, series, instances, plans, retrieved series, stores) and the checks
on what a clinician types into a search."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.errors import InputError
from tools.pacs_sop import instance_kind, is_image_kind

HEADER_BYTES = 4096        # allowance per instance for everything but the pixel data (estimates)
_IDENTIFIER_RE = re.compile(r"^[^*?\\\x00-\x1f]{1,64}$")
_DATE_RE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class StudySummary:
    """One study found by :meth:`PacsClient.find`. The patient fields are shown to the clinician to confirm
    the patient before opening; they never go to a log, a prompt or the case database."""

    study_uid: str
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    series_count: int | None = None
    instance_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study: what a clinician chooses from."""

    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    instance_count: int | None = None

    @property
    def likely_images(self) -> bool:
        """False for series whose modality says they hold no images (SR, PR, KO, documents)."""
        return self.modality.upper() not in {"SR", "PR", "KO", "DOC", "REG", "PLAN", "RTPLAN", "RTSTRUCT",
                                              "RTRECORD", "ECG", "AU", "HD", "FID"}

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "likely_images": self.likely_images}


@dataclass(frozen=True)
class InstanceSummary:
    """One instance from instance-level QIDO: enough to decide whether to fetch it and how big it is."""

    sop_instance_uid: str
    sop_class_uid: str = ""
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    samples_per_pixel: int | None = None
    frames: int | None = None

    @property
    def kind(self) -> str:
        """"image", or what the non-image object is ("structured report", "presentation state", ...)."""
        return instance_kind(self.sop_class_uid, has_rows=bool(self.rows and self.columns))

    @property
    def is_image(self) -> bool:
        return is_image_kind(self.kind)

    @property
    def estimated_bytes(self) -> int:
        """Uncompressed size of the pixel data plus a header allowance (what a decoded copy needs)."""
        if not (self.rows and self.columns):
            return HEADER_BYTES
        bits = self.bits_allocated or 16
        return (self.rows * self.columns * (self.samples_per_pixel or 1) * (self.frames or 1) * bits + 7) // 8 \
            + HEADER_BYTES


@dataclass(frozen=True)
class SeriesPlan:
    """A series checked against the limits before retrieval: ``expected`` instances (series-level QIDO) of
    about ``estimated_bytes`` (a sample instance's geometry, or every instance's when they were listed)."""

    study_uid: str
    series_uid: str
    expected: int | None                 # instances the PACS says the series holds (images and others)
    estimated_bytes: int = 0
    listed: tuple[InstanceSummary, ...] = ()   # every instance, when the sample was not an image

    @property
    def notes(self) -> tuple[str, ...]:
        return skipped_notes(Counter(i.kind for i in self.listed if not i.is_image))


def skipped_notes(kinds: Counter[str]) -> tuple[str, ...]:
    return tuple(f"skipped {n} {kind}{'s' if n > 1 else ''} (not an image)" for kind, n in sorted(kinds.items()))


@dataclass(frozen=True)
class RetrievedSeries:
    """A retrieved series on disk: ``path`` holds ``count`` DICOM files (de-identified unless asked not to).
    UIDs here are pseudonymised (one pass of the installation's remap)."""

    path: Path
    count: int
    bytes: int
    seconds: float
    deidentified: bool
    study_uid: str                 # pseudonymised
    series_uid: str                # pseudonymised
    notes: tuple[str, ...] = ()
    skipped: int = 0               # non-image instances dropped on arrival

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "notes": list(self.notes)}


@dataclass(frozen=True)
class StoreResult:
    """What the PACS stored (STOW-RS), confirmed by reading each instance back with QIDO."""

    stored: tuple[str, ...]        # SOP Instance UIDs
    seconds: float


def check_identifier(value: str, what: str) -> str:
    """An accession number or patient ID as typed: exact match only (no wildcards), at most 64 characters."""
    text = (value or "").strip()
    if not _IDENTIFIER_RE.match(text):
        raise InputError(f"{what} must be 1-64 characters without wildcards (* ?) or control characters")
    return text


def check_date(value: str) -> str:
    """A QIDO date or range: YYYYMMDD, YYYY-MM-DD, or a range FROM-TO of those (either end may be open)."""
    text = (value or "").strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text = text.replace("-", "")
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}", text):
        text = text.replace("-", "").replace("..", "-")
    m = _DATE_RE.match(text)
    if not text or not m or (m.group(2) is None and m.group(3) is not None) or text == "-":
        raise InputError("the date must be YYYYMMDD (or YYYY-MM-DD), or a range like 20240101-20240331")
    return text


def check_uid(value: str, what: str) -> str:
    text = (value or "").strip()
    if not (_UID_RE.match(text) and len(text) <= 64):
        raise InputError(f"{what} must be a DICOM UID (digits and dots, at most 64 characters)")
    return text
