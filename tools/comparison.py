"""The same lesion on a prior and the current study: interval, change in size, volume and doubling time.

Pure: values in (study dates, measured diameters), a frozen :class:`LesionChange` out. No I/O, no LLM.

The rules, in our own words, from the two nodule guidelines the calculators apply:

* **Size** is the mean diameter: the average of the long axis and the perpendicular short axis (one axis
  alone when only one was measured), reported to 0.1 mm (halves up) as ACR Lung-RADS v2022 reports it.
* **Growth** is an increase in mean diameter of more than 1.5 mm (:data:`GROWTH_THRESHOLD_MM`). Lung-RADS
  v2022 defines growth this way, within a 12-month interval; Fleischner 2017 (MacMahon et al., Radiology
  2017;284:228-243) warns that smaller changes cannot be told apart from measurement variability. So a change
  of 1.5 mm or less either way is "stable within measurement error", never growth. A decrease of more than
  1.5 mm is "smaller". For a part-solid nodule the solid component counts too: its growth by more than
  1.5 mm, or a solid component appearing in a ground-glass nodule, is growth.
* **Within 12 months**: the Lung-RADS growth definition holds over at most 12 months (here 366 days). Growth
  over a longer interval is still growth beyond measurement error, and the result says the interval was
  longer (Lung-RADS treats slow growth over several screens as suspicious, category 4B).
* **Stability over time** (Fleischner 2017): a solid nodule unchanged for 2 years, a subsolid one (ground-glass
  or part-solid) for 5 years, needs no further routine follow-up. The stable period runs from the earliest
  time point that is still within measurement error of the current one, in calendar years.
* **Volume** is an estimate: an ellipsoid from the measured diameters, V = pi/6 x long x short x third axis,
  with the unmeasured third axis taken as the mean of the two measured ones (a sphere when one axis was
  measured). **Volume doubling time** = interval x ln 2 / ln(V current / V prior), given only for a lesion
  that grew beyond measurement error (smaller changes give meaningless doubling times).
* **New** (absent on the prior, present now) and **resolved** (present on the prior, absent now) need the
  lesion marked absent on the other study; a lesion measured on one study only is not compared.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tools.calculators.common import round_half_up
from tools.errors import ComparisonError, PriorNewerError

GROWTH_THRESHOLD_MM = 1.5          # Lung-RADS v2022 growth; Fleischner 2017 measurement variability
GROWTH_WINDOW_DAYS = 366           # "within 12 months"
CAUTION_BELOW_MM = 2.0             # Fleischner 2017: a change under about 2 mm deserves a second look
STABLE_YEARS = {"solid": 2, "part_solid": 5, "ground_glass": 5}
SUBSOLID = ("part_solid", "ground_glass")
DAYS_PER_MONTH = 365.25 / 12

ChangeStatus = Literal["new", "growing", "stable", "smaller", "resolved"]


@dataclass(frozen=True)
class TimePoint:
    """One study's reading of one lesion. ``axes_mm``: the measured diameters (long, then short; one is
    enough); empty with ``present=False`` when the lesion was marked as not seen on this study."""

    study_date: dt.date
    axes_mm: tuple[float, ...] = ()
    solid_component_mm: float | None = None
    nodule_type: str | None = None       # solid | part_solid | ground_glass
    present: bool = True
    study: str = ""                      # the study's reference in the case (S1, S2 ...), for the text

    def __post_init__(self) -> None:
        if self.present and not self.axes_mm:
            raise ComparisonError(f"the lesion on study {self.study or '?'} has no measured diameter")
        if not self.present and (self.axes_mm or self.solid_component_mm):
            raise ComparisonError(f"a lesion marked absent on study {self.study or '?'} cannot also be measured")
        for value in (*self.axes_mm, *((self.solid_component_mm,) if self.solid_component_mm is not None else ())):
            if not (math.isfinite(value) and 0 < value <= 300):
                raise ComparisonError(f"a diameter of {value} mm is not a lesion size (0-300 mm)")

    @property
    def mean_mm(self) -> float | None:
        """Mean diameter to 0.1 mm (None when absent)."""
        if not self.present:
            return None
        axes = sorted(self.axes_mm, reverse=True)[:2]
        return round_half_up(sum(axes) / len(axes), 1)

    @property
    def volume_mm3(self) -> float | None:
        """Ellipsoid volume estimate in mm3 (None when absent)."""
        if not self.present:
            return None
        return ellipsoid_volume_mm3(*sorted(self.axes_mm, reverse=True)[:2])

    @property
    def has_solid_part(self) -> bool:
        return self.solid_component_mm is not None or self.nodule_type in ("part_solid", "solid")


def ellipsoid_volume_mm3(long_mm: float, short_mm: float | None = None) -> float:
    """pi/6 x long x short x (long + short) / 2; a sphere of ``long_mm`` when no short axis was measured."""
    short = long_mm if short_mm is None else short_mm
    return math.pi / 6 * long_mm * short * (long_mm + short) / 2


def volume_doubling_days(prior_mm3: float, current_mm3: float, interval_days: int) -> float | None:
    """Days for the volume to double at the rate seen; None unless the volume grew over a positive interval."""
    if interval_days <= 0 or current_mm3 <= prior_mm3 or prior_mm3 <= 0:
        return None
    return interval_days * math.log(2) / math.log(current_mm3 / prior_mm3)


def add_years(day: dt.date, years: int) -> dt.date:
    """``day`` plus whole calendar years (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def whole_months(start: dt.date, end: dt.date) -> int:
    """Calendar months completed from ``start`` to ``end`` (2021-05-01 to 2023-05-01 is 24, to 2023-04-30 23)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    if end.day < start.day and (end + dt.timedelta(days=1)).month == end.month:
        months -= 1  # the last month is not complete (unless ``end`` is the last day of a shorter month)
    return months


def check_order(prior: dt.date, current: dt.date, prior_ref: str = "the prior", current_ref: str = "the current "
                "study") -> int:
    """Days from ``prior`` to ``current``; :class:`PriorNewerError` when the prior is the newer one."""
    days = (current - prior).days
    if days < 0:
        raise PriorNewerError(f"{prior_ref} ({prior.isoformat()}) is newer than {current_ref} "
                              f"({current.isoformat()}): a prior must be the earlier study")
    return days


@dataclass(frozen=True)
class LesionChange:
    """How one lesion changed from ``prior`` to ``current`` (the most recent earlier time point)."""

    lesion: str
    status: ChangeStatus
    prior_study: str
    current_study: str
    prior_date: str                       # ISO dates, after the de-identification date policy
    current_date: str
    interval_days: int
    prior_mean_mm: float | None
    current_mean_mm: float | None
    change_mm: float | None               # current - prior mean diameter, 0.1 mm
    change_pct: float | None              # relative to the prior mean diameter, 0.1 %
    prior_volume_mm3: float | None        # ellipsoid estimates, whole mm3
    current_volume_mm3: float | None
    doubling_days: float | None           # volume doubling time, days (growing lesions only)
    within_measurement_error: bool
    growth_within_12_months: bool | None  # growing lesions: was the interval at most 12 months?
    solid_component_change_mm: float | None = None
    nodule_type: str | None = None
    stable_since: str | None = None       # stable lesions: earliest date within measurement error of now
    stable_days: int | None = None
    stable_months: int | None = None      # whole calendar months of that stable period
    stable_years_needed: int | None = None
    stability_complete: bool = False      # stable for 2 (solid) or 5 (subsolid) years
    threshold_mm: float = GROWTH_THRESHOLD_MM
    reasons: tuple[str, ...] = ()         # why the status (which size changed, by how much)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def interval_months(self) -> float:
        return round(self.interval_days / DAYS_PER_MONTH, 1)

    @property
    def frame_status(self) -> str:
        """The case frame's status word: new | growing | stable | resolved (smaller is managed as stable)."""
        return "stable" if self.status == "smaller" else self.status

    def statement(self) -> str:
        """One line for the answer, the summary and the evidence quote (every number the result holds)."""
        when = (f"{self.prior_study} {self.prior_date} to {self.current_study} {self.current_date}, "
                f"{self.interval_days} days ({self.interval_months:g} months)")
        if self.status == "new":
            return (f"{self.lesion}: new, not seen on {self.prior_study} ({self.prior_date}), "
                    f"{self.current_mean_mm:g} mm mean diameter on {self.current_study} ({self.current_date}); "
                    f"{self.interval_days} days ({self.interval_months:g} months) apart")
        if self.status == "resolved":
            return (f"{self.lesion}: resolved, {self.prior_mean_mm:g} mm mean diameter on {self.prior_study} "
                    f"({self.prior_date}), not seen on {self.current_study} ({self.current_date}); "
                    f"{self.interval_days} days ({self.interval_months:g} months) apart")
        sign = "+" if (self.change_mm or 0) >= 0 else ""
        pct = f", {sign}{self.change_pct:g}%" if self.change_pct is not None else ""
        size = (f"mean diameter {self.prior_mean_mm:g} mm to {self.current_mean_mm:g} mm "
                f"({sign}{self.change_mm:g} mm{pct})")
        verdict = {"growing": f"growing (more than the {self.threshold_mm:g} mm measurement error)",
                   "smaller": f"smaller (by more than the {self.threshold_mm:g} mm measurement error)",
                   "stable": f"stable within measurement error ({self.threshold_mm:g} mm)"}[self.status]
        text = f"{self.lesion}: {size} from {when}: {verdict}"
        if self.prior_volume_mm3 is not None and self.current_volume_mm3 is not None:
            text += (f"; volume estimate {self.prior_volume_mm3:g} to {self.current_volume_mm3:g} mm³ "
                     "(ellipsoid from the diameters)")
        if self.doubling_days is not None:
            text += f", volume doubling time about {self.doubling_days:g} days"
        if self.stable_days is not None and self.stable_since and self.stable_since != self.prior_date:
            text += f"; stable since {self.stable_since} ({self.stable_days} days)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval_months": self.interval_months, "frame_status": self.frame_status}


def _change_status(prior: TimePoint, current: TimePoint) -> tuple[ChangeStatus, list[str]]:
    assert prior.mean_mm is not None and current.mean_mm is not None
    change = round_half_up(current.mean_mm - prior.mean_mm, 1)
    reasons: list[str] = []
    solid_grew = False
    if prior.nodule_type == "ground_glass" and current.has_solid_part:
        solid_grew = True
        reasons.append("a solid component appeared in a ground-glass nodule")
    elif prior.solid_component_mm is not None and current.solid_component_mm is not None:
        solid_change = round_half_up(current.solid_component_mm - prior.solid_component_mm, 1)
        if solid_change > GROWTH_THRESHOLD_MM:
            solid_grew = True
            reasons.append(f"the solid component grew by {solid_change:g} mm")
    if change > GROWTH_THRESHOLD_MM:
        reasons.insert(0, f"the mean diameter grew by {change:g} mm, more than {GROWTH_THRESHOLD_MM:g} mm")
        return "growing", reasons
    if solid_grew:
        return "growing", reasons
    if change < -GROWTH_THRESHOLD_MM:
        return "smaller", [f"the mean diameter fell by {-change:g} mm, more than {GROWTH_THRESHOLD_MM:g} mm"]
    return "stable", [f"the mean diameter changed by {change:g} mm, within {GROWTH_THRESHOLD_MM:g} mm"]


def compare_lesion(lesion: str, points: list[TimePoint]) -> LesionChange:
    """The change of ``lesion`` from its most recent earlier time point to the newest one (``points`` in any
    order; at least two, on different studies). Stability is traced back through every earlier point."""
    if len(points) < 2:
        raise ComparisonError(f"{lesion} is measured on one study only: mark it on a prior (or as not seen there) "
                              "to compare")
    ordered = sorted(points, key=lambda p: p.study_date)
    current, prior = ordered[-1], ordered[-2]
    days = check_order(prior.study_date, current.study_date, prior.study or "the prior", current.study or "the "
                       "current study")
    if not prior.present and not current.present:
        raise ComparisonError(f"{lesion} is marked as not seen on both {prior.study} and {current.study}: nothing "
                              "to compare")
    notes: list[str] = []
    if days == 0:
        notes.append("both studies are of the same day: no interval, no doubling time")
    kind = current.nodule_type or prior.nodule_type
    base: dict[str, Any] = {"lesion": lesion, "prior_study": prior.study, "current_study": current.study,
                            "prior_date": prior.study_date.isoformat(), "current_date": current.study_date.isoformat(),
                            "interval_days": days, "prior_mean_mm": prior.mean_mm, "current_mean_mm": current.mean_mm,
                            "nodule_type": kind}
    if not prior.present or not current.present:
        status: ChangeStatus = "new" if current.present else "resolved"
        return LesionChange(status=status, change_mm=None, change_pct=None, prior_volume_mm3=None,
                            current_volume_mm3=None, doubling_days=None, within_measurement_error=False,
                            growth_within_12_months=None, reasons=(f"marked as not seen on "
                                                                   f"{prior.study if status == 'new' else current.study}",),
                            notes=tuple(notes), **base)
    status, reasons = _change_status(prior, current)
    assert prior.mean_mm is not None and current.mean_mm is not None
    change = round_half_up(current.mean_mm - prior.mean_mm, 1)
    v1, v2 = prior.volume_mm3, current.volume_mm3
    assert v1 is not None and v2 is not None
    doubling = volume_doubling_days(v1, v2, days) if status == "growing" else None
    solid_change = (round_half_up(current.solid_component_mm - prior.solid_component_mm, 1)
                    if prior.solid_component_mm is not None and current.solid_component_mm is not None else None)
    result: dict[str, Any] = {
        "status": status, "change_mm": change,
        "change_pct": round_half_up(change / prior.mean_mm * 100, 1),
        "prior_volume_mm3": float(round(v1)), "current_volume_mm3": float(round(v2)),
        "doubling_days": float(round(doubling)) if doubling is not None else None,
        "within_measurement_error": status == "stable",
        "growth_within_12_months": days <= GROWTH_WINDOW_DAYS if status == "growing" else None,
        "solid_component_change_mm": solid_change, "reasons": tuple(reasons)}
    if status == "growing" and change < CAUTION_BELOW_MM and not _growth_on_solid_part(reasons):
        notes.append(f"an increase under about {CAUTION_BELOW_MM:g} mm is close to measurement variability "
                     "(Fleischner 2017): check both measurements on the same plane and window")
    if status == "growing" and days > GROWTH_WINDOW_DAYS:
        notes.append(f"the growth was seen over {days} days, longer than the 12 months of the Lung-RADS growth "
                     "definition; slow growth over several screens is Lung-RADS category 4B")
    if status in ("stable", "smaller"):
        result.update(_stability(ordered, current, kind, notes))
    return LesionChange(notes=tuple(notes), **base, **result)


def _growth_on_solid_part(reasons: list[str]) -> bool:
    """True when the growth was called on the solid component (not the whole nodule's diameter)."""
    return bool(reasons) and not reasons[0].startswith("the mean diameter")


def _stability(ordered: list[TimePoint], current: TimePoint, kind: str | None, notes: list[str]) -> dict[str, Any]:
    """How long the lesion has been within measurement error of its current size, and whether that meets the
    Fleischner period for its type."""
    assert current.mean_mm is not None
    since = ordered[-2]
    for p in reversed(ordered[:-1]):
        if not p.present or p.mean_mm is None or abs(current.mean_mm - p.mean_mm) > GROWTH_THRESHOLD_MM:
            break
        since = p
    if kind is None:
        notes.append("nodule type not given: the 2-year stability period of a solid nodule is applied (5 years "
                     "for a subsolid one)")
    years = STABLE_YEARS.get(kind or "solid", 2)
    return {"stable_since": since.study_date.isoformat(), "stable_days": (current.study_date - since.study_date).days,
            "stable_months": whole_months(since.study_date, current.study_date),
            "stable_years_needed": years, "stability_complete": add_years(since.study_date, years) <= current.study_date}


def parse_study_date(value: str | None, study: str = "the study") -> dt.date:
    """A DICOM DA (YYYYMMDD) or ISO date; :class:`ComparisonError` when the study has none."""
    text = (value or "").strip().replace("-", "").replace(".", "")
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise ComparisonError(f"{study} has no usable study date, so no interval can be measured: compare studies "
                              "whose DICOM headers carry a Study Date") from None
