"""Growth, volume doubling time and the guidelines' thresholds against values worked out by hand."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from tools.comparison import (
    GROWTH_THRESHOLD_MM,
    TimePoint,
    add_years,
    check_order,
    compare_lesion,
    ellipsoid_volume_mm3,
    parse_study_date,
    volume_doubling_days,
)
from tools.errors import ComparisonError, InputError, PriorNewerError


def tp(day: str, *axes: float, study: str = "", **kw) -> TimePoint:
    return TimePoint(dt.date.fromisoformat(day), tuple(axes), study=study, **kw)


def test_volume_is_an_ellipsoid_with_the_third_axis_the_mean_of_the_two():
    # pi/6 x 10 x 6 x 8 = 80 pi = 251.33; a sphere of 6 mm: 36 pi = 113.10
    assert ellipsoid_volume_mm3(10, 6) == pytest.approx(80 * math.pi)
    assert ellipsoid_volume_mm3(6) == pytest.approx(36 * math.pi)
    assert ellipsoid_volume_mm3(6, 6) == pytest.approx(36 * math.pi)


def test_doubling_time_by_hand():
    # 6 mm -> 8 mm sphere in 273 days: V ratio (8/6)^3 = 2.3704, ln = 0.86305; 273 x 0.69315 / 0.86305 = 219.3 days
    assert volume_doubling_days(36 * math.pi, 512 / 6 * math.pi, 273) == pytest.approx(219.26, abs=0.01)
    assert volume_doubling_days(100, 100, 365) is None      # no growth: no doubling time
    assert volume_doubling_days(100, 80, 365) is None       # shrinking: none either
    assert volume_doubling_days(100, 200, 0) is None        # no interval


def test_growing_solid_nodule_within_a_year():
    c = compare_lesion("RUL-1", [tp("2023-10-01", 8, 8, study="S2"), tp("2023-01-01", 6, 6, study="S1")])
    assert (c.status, c.frame_status, c.interval_days) == ("growing", "growing", 273)
    assert (c.prior_study, c.current_study) == ("S1", "S2")
    assert (c.prior_mean_mm, c.current_mean_mm, c.change_mm, c.change_pct) == (6.0, 8.0, 2.0, 33.3)
    assert (c.prior_volume_mm3, c.current_volume_mm3) == (113.0, 268.0)
    assert c.doubling_days == 219.0 and c.growth_within_12_months is True
    assert not c.within_measurement_error
    text = c.statement()
    assert "RUL-1: mean diameter 6 mm to 8 mm (+2 mm, +33.3%)" in text and "273 days (9 months)" in text
    assert "growing (more than the 1.5 mm measurement error)" in text and "doubling time about 219 days" in text


def test_interval_under_three_months():
    # 70 days: 5.0 -> 6.5 mm is exactly 1.5 mm: not more than the threshold, so stable within measurement error
    edge = compare_lesion("L1", [tp("2024-01-10", 5, 5), tp("2024-03-20", 7, 6)])
    assert (edge.interval_days, edge.change_mm, edge.status) == (70, 1.5, "stable")
    assert edge.within_measurement_error and edge.doubling_days is None
    # 5.0 -> 7.0 mm in 70 days: V 65.45 -> 179.59 mm3, ratio 2.744, ln 1.0094: 70 x 0.69315 / 1.0094 = 48 days
    fast = compare_lesion("L1", [tp("2024-01-10", 5, 5), tp("2024-03-20", 7, 7)])
    assert (fast.status, fast.change_mm, fast.interval_months) == ("growing", 2.0, 2.3)
    assert (fast.prior_volume_mm3, fast.current_volume_mm3, fast.doubling_days) == (65.0, 180.0, 48.0)


def test_measurement_error_is_stable_not_growth():
    c = compare_lesion("L1", [tp("2022-06-01", 8, 8), tp("2023-06-01", 9.6, 8.8)])  # 8.0 -> 9.2 mm: +1.2 mm
    assert (c.status, c.change_mm, c.change_pct) == ("stable", 1.2, 15.0)
    assert c.within_measurement_error and c.doubling_days is None and c.growth_within_12_months is None
    assert "stable within measurement error (1.5 mm)" in c.statement()
    assert c.threshold_mm == GROWTH_THRESHOLD_MM == 1.5
    # 1.51 mm more rounds to 1.5 at 0.1 mm and is not growth; 1.56 rounds to 1.6 and is
    assert compare_lesion("L", [tp("2022-01-01", 6), tp("2022-06-01", 7.51)]).status == "stable"
    assert compare_lesion("L", [tp("2022-01-01", 6), tp("2022-06-01", 7.56)]).status == "growing"


def test_shrinking_lesion_is_smaller_and_managed_as_stable():
    c = compare_lesion("L1", [tp("2022-01-01", 9, 9), tp("2022-07-01", 7, 6)])  # 9.0 -> 6.5: -2.5 mm, -27.8 %
    assert (c.status, c.frame_status, c.change_mm, c.change_pct) == ("smaller", "stable", -2.5, -27.8)
    assert c.doubling_days is None
    assert "(-2.5 mm, -27.8%)" in c.statement() and "smaller" in c.statement()


def test_resolved_and_new_lesions():
    gone = compare_lesion("L1", [tp("2022-01-01", 6, 5, study="S1"),
                                 TimePoint(dt.date(2022, 4, 1), present=False, study="S2")])
    assert (gone.status, gone.prior_mean_mm, gone.current_mean_mm, gone.change_mm) == ("resolved", 5.5, None, None)
    assert gone.statement().startswith("L1: resolved, 5.5 mm mean diameter on S1 (2022-01-01), not seen on S2")
    new = compare_lesion("L2", [TimePoint(dt.date(2022, 1, 1), present=False, study="S1"),
                                tp("2023-01-01", 4, 4, study="S2")])
    assert (new.status, new.current_mean_mm, new.interval_days) == ("new", 4.0, 365)
    assert "new, not seen on S1" in new.statement()
    with pytest.raises(ComparisonError, match="not seen on both"):
        compare_lesion("L3", [TimePoint(dt.date(2022, 1, 1), present=False), TimePoint(dt.date(2023, 1, 1),
                                                                                      present=False)])


def test_stable_for_two_years_solid_but_not_five_years_subsolid():
    points = [tp("2021-05-01", 6, 6), tp("2022-05-10", 6.4, 6), tp("2023-05-02", 6.5, 6)]
    solid = compare_lesion("L1", [TimePoint(p.study_date, p.axes_mm, nodule_type="solid") for p in points])
    assert (solid.status, solid.stable_since, solid.stable_days, solid.stable_months) == ("stable", "2021-05-01",
                                                                                           731, 24)
    assert solid.stable_years_needed == 2 and solid.stability_complete
    assert solid.prior_date == "2022-05-10"  # the change is against the most recent earlier study
    ggn = compare_lesion("L1", [TimePoint(p.study_date, p.axes_mm, nodule_type="ground_glass") for p in points])
    assert ggn.stable_years_needed == 5 and not ggn.stability_complete
    # a day short of 2 calendar years is not 2 years
    short = compare_lesion("L1", [tp("2021-05-01", 6, nodule_type="solid"), tp("2023-04-30", 6, nodule_type="solid")])
    assert not short.stability_complete and short.stable_days == 729
    # growth between the first and second study cuts the stable period at the second
    cut = compare_lesion("L1", [tp("2020-01-01", 4), tp("2021-01-01", 6), tp("2023-02-01", 6.5)])
    assert (cut.status, cut.stable_since) == ("stable", "2021-01-01") and cut.stability_complete


def test_growth_over_more_than_twelve_months_says_so():
    c = compare_lesion("L1", [tp("2022-01-01", 6, 6), tp("2023-06-01", 8, 8)])
    assert c.status == "growing" and c.growth_within_12_months is False and c.interval_days == 516
    assert any("longer than the 12 months" in n for n in c.notes)


def test_solid_component_growth_and_a_new_solid_component():
    appeared = compare_lesion("L1", [tp("2022-01-01", 10, 8, nodule_type="ground_glass"),
                                     tp("2022-07-01", 10, 9, nodule_type="part_solid", solid_component_mm=3)])
    assert appeared.status == "growing" and appeared.change_mm == 0.5
    assert appeared.reasons == ("a solid component appeared in a ground-glass nodule",)
    grew = compare_lesion("L1", [tp("2022-01-01", 12, 10, nodule_type="part_solid", solid_component_mm=3),
                                 tp("2022-07-01", 12, 10, nodule_type="part_solid", solid_component_mm=5)])
    assert grew.status == "growing" and grew.solid_component_change_mm == 2.0


def test_bad_input_is_a_typed_error():
    with pytest.raises(ComparisonError, match="one study only"):
        compare_lesion("L1", [tp("2022-01-01", 6)])
    with pytest.raises(PriorNewerError, match=r"S2 \(2024-02-01\) is newer than S1 \(2023-02-01\)"):
        check_order(dt.date(2024, 2, 1), dt.date(2023, 2, 1), "S2", "S1")
    assert check_order(dt.date(2024, 2, 1), dt.date(2024, 2, 1)) == 0
    with pytest.raises(ComparisonError, match="no usable study date"):
        parse_study_date(None, "S2")
    with pytest.raises(ComparisonError):
        parse_study_date("2023-02-30")
    assert parse_study_date("20230214") == parse_study_date("2023-02-14") == dt.date(2023, 2, 14)
    with pytest.raises(ComparisonError, match="no measured diameter"):
        TimePoint(dt.date(2022, 1, 1))
    with pytest.raises(ComparisonError, match="not a lesion size"):
        TimePoint(dt.date(2022, 1, 1), (float("nan"),))
    assert issubclass(ComparisonError, InputError)


def test_same_day_studies_give_no_doubling_time():
    c = compare_lesion("L1", [tp("2024-01-01", 6, study="S1"), tp("2024-01-01", 9, study="S2")])
    assert c.interval_days == 0 and c.doubling_days is None and any("same day" in n for n in c.notes)


def test_whole_calendar_months():
    from tools.comparison import whole_months

    assert whole_months(dt.date(2021, 5, 1), dt.date(2023, 5, 1)) == 24
    assert whole_months(dt.date(2021, 5, 1), dt.date(2023, 4, 30)) == 23
    assert whole_months(dt.date(2020, 2, 29), dt.date(2022, 2, 28)) == 24  # as add_years counts 2 years
    assert whole_months(dt.date(2023, 1, 31), dt.date(2023, 2, 28)) == 1


def test_small_growth_carries_the_fleischner_caution():
    c = compare_lesion("L1", [tp("2022-01-01", 6, 6), tp("2022-07-01", 7.8, 7.8)])  # +1.8 mm
    assert c.status == "growing" and any("under about 2 mm" in n for n in c.notes)
    assert not any("under about 2 mm" in n for n in compare_lesion("L1", [tp("2022-01-01", 6),
                                                                          tp("2022-07-01", 9)]).notes)


def test_add_years_handles_leap_days():
    assert add_years(dt.date(2020, 2, 29), 2) == dt.date(2022, 2, 28)
    assert add_years(dt.date(2021, 3, 1), 5) == dt.date(2026, 3, 1)
