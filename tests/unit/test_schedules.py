"""Schedule expressions (SPEC §3): forms, slots, DST, month ends, invalid values and properties."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as datetime_time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amikeeper.schedules import (
    CronSchedule,
    DailySchedule,
    IntervalSchedule,
    MonthlySchedule,
    NaiveDatetimeError,
    Schedule,
    ScheduleError,
    WeeklySchedule,
    parse_schedule,
)

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    """'2026-11-29 03:00' as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz: ZoneInfo) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def assert_next_slot(schedule: Schedule, slot: datetime, following: datetime) -> None:
    """`following` is the first slot after `slot`: a slot itself, and no slot lies between the two."""
    assert schedule.slot_at(following) == following
    assert schedule.slot_at(following - timedelta(microseconds=1)) == slot


def next_slot(schedule: Schedule, slot: datetime) -> datetime:
    """The first slot after `slot`, found with slot_at alone: the earliest instant whose slot is later.

    The search looks no further than max_interval, so a longer gap fails here.
    """
    before, after = slot, slot + schedule.max_interval()
    assert schedule.slot_at(after) > slot, f"no slot within max_interval after {slot.isoformat()}"
    while after - before > timedelta(microseconds=1):
        middle = before + (after - before) / 2
        if schedule.slot_at(middle) > slot:
            after = middle
        else:
            before = middle
    return schedule.slot_at(after)


# --- parsing and normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expression", "kind"),
    [
        ("hourly", "hourly", IntervalSchedule),
        ("  HOURLY  ", "hourly", IntervalSchedule),
        ("every 6h", "every 6h", IntervalSchedule),
        ("Every 06H", "every 6h", IntervalSchedule),
        ("every 24h", "every 24h", IntervalSchedule),
        ("daily", "daily", DailySchedule),
        ("daily@3:00", "daily@03:00", DailySchedule),
        ("Daily @ 23:59", "daily@23:59", DailySchedule),
        ("weekly@sun", "weekly@sun", WeeklySchedule),
        ("weekly@Sunday 03:00", "weekly@sun 03:00", WeeklySchedule),
        ("WEEKLY@MON   7:05", "weekly@mon 07:05", WeeklySchedule),
        ("monthly@1", "monthly@1", MonthlySchedule),
        ("monthly@07 04:30", "monthly@7 04:30", MonthlySchedule),
        ("cron(0 7 * * ? *)", "cron(0 7 * * ? *)", CronSchedule),
        ("  CRON( 0/15  *  ?  jan-mar  mon-fri  * ) ", "cron(0/15 * ? JAN-MAR MON-FRI *)", CronSchedule),
    ],
)
def test_each_form_parses_to_its_normalised_expression(text: str, expression: str, kind: type) -> None:
    # Given a schedule as a user might type it / When parsed
    schedule = parse_schedule(text, UTC_ZONE)
    # Then it is the form's schedule, with trimmed, lower-case keywords
    assert isinstance(schedule, kind)
    assert schedule.expression == expression


def test_parsing_is_cached_and_schedules_are_values() -> None:
    # Given the same text and zone twice / Then the same schedule comes back, equal and hashable
    first = parse_schedule("daily@03:00", BERLIN)
    assert parse_schedule("daily@03:00", BERLIN) is first
    assert first == DailySchedule("daily@03:00", BERLIN, hour=3, minute=0)
    assert len({first, parse_schedule("daily@03:00", BERLIN)}) == 1
    assert first != parse_schedule("daily@03:00", UTC_ZONE)


# --- slots in UTC, one table per form --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "slot", "following"),
    [
        ("hourly", "2026-11-29 10:59:59", "2026-11-29 10:00", "2026-11-29 11:00"),
        ("hourly", "2026-11-29 00:00", "2026-11-29 00:00", "2026-11-29 01:00"),
        ("every 6h", "2026-11-29 05:59", "2026-11-29 00:00", "2026-11-29 06:00"),
        ("every 6h", "2026-11-29 23:00", "2026-11-29 18:00", "2026-11-30 00:00"),
        ("every 8h", "2026-12-31 23:59", "2026-12-31 16:00", "2027-01-01 00:00"),
        ("every 24h", "2026-11-29 12:00", "2026-11-29 00:00", "2026-11-30 00:00"),
        ("daily", "2026-11-29 12:00", "2026-11-29 00:00", "2026-11-30 00:00"),
        ("daily@03:00", "2026-11-29 02:59:59.999999", "2026-11-28 03:00", "2026-11-29 03:00"),
        ("daily@03:00", "2026-11-29 03:00", "2026-11-29 03:00", "2026-11-30 03:00"),
        ("daily@03:00", "2027-01-01 01:00", "2026-12-31 03:00", "2027-01-01 03:00"),
        ("weekly@sun", "2026-11-29 00:00", "2026-11-29 00:00", "2026-12-06 00:00"),
        ("weekly@sun", "2026-11-28 23:59", "2026-11-22 00:00", "2026-11-29 00:00"),
        ("weekly@wednesday 18:30", "2026-12-02 18:29", "2026-11-25 18:30", "2026-12-02 18:30"),
        ("weekly@wed 18:30", "2026-12-03 09:00", "2026-12-02 18:30", "2026-12-09 18:30"),
        ("monthly@1", "2026-11-29 12:00", "2026-11-01 00:00", "2026-12-01 00:00"),
        ("monthly@15 03:00", "2026-11-15 02:00", "2026-10-15 03:00", "2026-11-15 03:00"),
        ("monthly@15 03:00", "2027-01-10 00:00", "2026-12-15 03:00", "2027-01-15 03:00"),
    ],
)
def test_slot_is_the_latest_scheduled_time_at_or_before_now(
    text: str, now: str, slot: str, following: str
) -> None:
    # Given a schedule in UTC
    schedule = parse_schedule(text, UTC_ZONE)
    # When asking for the slot at `now`
    current = schedule.slot_at(utc(now))
    # Then it is the expected instant, in UTC, and the next slot is `following`
    assert current == utc(slot)
    assert current.tzinfo is UTC
    assert_next_slot(schedule, current, utc(following))


def test_now_in_another_zone_is_the_same_instant() -> None:
    # Given now expressed in New York time / When the slot of a UTC schedule is asked
    now = local("2026-11-28 22:30", NEW_YORK)  # 03:30 UTC on the 29th
    # Then the instant counts, not its wall time
    assert parse_schedule("daily@03:00", UTC_ZONE).slot_at(now) == utc("2026-11-29 03:00")


# --- month ends and leap years ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "slot"),
    [
        ("monthly@31", "2026-04-30 12:00", "2026-04-30 00:00"),  # April has 30 days
        ("monthly@31", "2026-04-29 12:00", "2026-03-31 00:00"),
        ("monthly@31", "2027-03-01 00:00", "2027-02-28 00:00"),  # common year
        ("monthly@31", "2028-03-01 00:00", "2028-02-29 00:00"),  # leap year
        ("monthly@30 06:00", "2028-02-29 06:00", "2028-02-29 06:00"),
        ("monthly@29", "2100-03-01 00:00", "2100-02-28 00:00"),  # 2100 is not a leap year
        ("monthly@29", "2000-03-01 00:00", "2000-02-29 00:00"),  # 2000 is
        ("monthly@31", "2026-12-31 23:59", "2026-12-31 00:00"),
    ],
)
def test_monthly_day_beyond_the_month_falls_on_its_last_day(text: str, now: str, slot: str) -> None:
    assert parse_schedule(text, UTC_ZONE).slot_at(utc(now)) == utc(slot)


def test_monthly_31_walks_every_month_end_of_a_leap_year() -> None:
    # Given monthly@31 / When following its slots through 2028
    schedule = parse_schedule("monthly@31", UTC_ZONE)
    slot = schedule.slot_at(utc("2028-01-31 00:00"))
    days = [slot.day]
    for _ in range(11):
        slot = next_slot(schedule, slot)
        days.append(slot.day)
    # Then each slot is the 31st or the month's last day
    assert days == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_february_29_cron_skips_to_the_next_leap_year_and_over_2100() -> None:
    schedule = parse_schedule("cron(0 0 29 2 ? *)", UTC_ZONE)
    assert schedule.slot_at(utc("2027-06-01 00:00")) == utc("2024-02-29 00:00")
    assert_next_slot(schedule, utc("2024-02-29 00:00"), utc("2028-02-29 00:00"))
    assert_next_slot(schedule, utc("2096-02-29 00:00"), utc("2104-02-29 00:00"))
    assert schedule.max_interval() == timedelta(days=8 * 365 + 1)


# --- DST -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "text", "now", "slot"),
    [
        # Europe/Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC)
        (BERLIN, "daily@02:30", "2026-03-29 12:00", "2026-03-29 01:00"),  # missing: after the gap
        (BERLIN, "daily@02:30", "2026-03-29 00:59", "2026-03-28 01:30"),
        (BERLIN, "daily@03:00", "2026-03-29 12:00", "2026-03-29 01:00"),
        (BERLIN, "daily@01:59", "2026-03-29 12:00", "2026-03-29 00:59"),
        # ... and falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC)
        (BERLIN, "daily@02:30", "2026-10-25 12:00", "2026-10-25 00:30"),  # twice: the first one
        (BERLIN, "daily@02:30", "2026-10-25 00:29", "2026-10-24 00:30"),
        (BERLIN, "daily@03:00", "2026-10-25 12:00", "2026-10-25 02:00"),
        # America/New_York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC)
        (NEW_YORK, "daily@02:30", "2026-03-08 12:00", "2026-03-08 07:00"),
        (NEW_YORK, "daily@02:30", "2026-03-09 12:00", "2026-03-09 06:30"),
        # ... and falls back 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC)
        (NEW_YORK, "daily@01:30", "2026-11-01 12:00", "2026-11-01 05:30"),
        (NEW_YORK, "daily@01:30", "2026-11-01 06:45", "2026-11-01 05:30"),  # 01:45 EST, after both
        (NEW_YORK, "weekly@sun 01:30", "2026-11-02 00:00", "2026-11-01 05:30"),
        (NEW_YORK, "monthly@1 01:30", "2026-11-20 00:00", "2026-11-01 05:30"),
        (NEW_YORK, "cron(30 1 ? * SUN *)", "2026-11-02 00:00", "2026-11-01 05:30"),
        (NEW_YORK, "cron(30 2 8 3 ? *)", "2026-06-01 00:00", "2026-03-08 07:00"),
    ],
)
def test_wall_times_in_dst_changes_follow_the_stated_rule(
    tz: ZoneInfo, text: str, now: str, slot: str
) -> None:
    # Given a schedule in a zone with DST / When the slot is asked around a change
    # Then a missing wall time is the instant after the gap and a doubled one its first occurrence
    assert parse_schedule(text, tz).slot_at(utc(now)) == utc(slot)


def test_hourly_across_spring_forward_has_no_slot_in_the_gap() -> None:
    # Given hourly in Berlin on the spring-forward night
    schedule = parse_schedule("hourly", BERLIN)
    # When following its slots from 00:00 CET
    slots = [schedule.slot_at(utc("2026-03-28 23:00"))]
    for _ in range(3):
        slots.append(next_slot(schedule, slots[-1]))
    # Then 02:00 (missing) and 03:00 CEST are the same instant, taken once
    assert slots == [
        utc("2026-03-28 23:00"),
        utc("2026-03-29 00:00"),
        utc("2026-03-29 01:00"),
        utc("2026-03-29 02:00"),
    ]


def test_hourly_across_fall_back_takes_the_doubled_hour_once() -> None:
    # Given hourly in Berlin on the fall-back night
    schedule = parse_schedule("hourly", BERLIN)
    # When the clock is in the second 02:xx (CET)
    now = utc("2026-10-25 01:30")
    # Then the slot is still 02:00 CEST, and the next one is 03:00 CET: a two-hour gap
    assert schedule.slot_at(now) == utc("2026-10-25 00:00")
    assert_next_slot(schedule, utc("2026-10-25 00:00"), utc("2026-10-25 02:00"))
    assert schedule.max_interval() == timedelta(hours=2)


def test_minute_cron_inside_the_doubled_hour_keeps_first_occurrences_only() -> None:
    # Given a cron every 15 minutes in New York, and now in the second 01:xx (EST)
    schedule = parse_schedule("cron(0/15 * * * ? *)", NEW_YORK)
    now = utc("2026-11-01 06:20")  # 01:20 EST
    # Then the latest slot is 01:45 EDT (the first occurrences of 01:xx ran before the change)
    assert schedule.slot_at(now) == utc("2026-11-01 05:45")
    assert_next_slot(schedule, utc("2026-11-01 05:45"), utc("2026-11-01 07:00"))


# --- EventBridge cron --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "slot", "following"),
    [
        ("cron(0 7 * * ? *)", "2026-11-29 06:59", "2026-11-28 07:00", "2026-11-29 07:00"),
        ("cron(15 12 * * ? *)", "2026-11-29 12:15", "2026-11-29 12:15", "2026-11-30 12:15"),
        ("cron(0 18 ? * MON-FRI *)", "2026-11-29 12:00", "2026-11-27 18:00", "2026-11-30 18:00"),
        ("cron(0 18 ? * 2-6 *)", "2026-11-29 12:00", "2026-11-27 18:00", "2026-11-30 18:00"),
        ("cron(0 8 1 * ? *)", "2026-11-29 12:00", "2026-11-01 08:00", "2026-12-01 08:00"),
        ("cron(0/10 * ? * MON-FRI *)", "2026-11-27 23:55", "2026-11-27 23:50", "2026-11-30 00:00"),
        ("cron(1/10 * * * ? *)", "2026-11-29 12:10", "2026-11-29 12:01", "2026-11-29 12:11"),
        ("cron(*/20 9-17/4 * * ? *)", "2026-11-29 14:00", "2026-11-29 13:40", "2026-11-29 17:00"),
        ("cron(5,35 1,13 * * ? *)", "2026-11-29 13:34", "2026-11-29 13:05", "2026-11-29 13:35"),
        ("cron(0 0 1 JAN,JUL ? *)", "2026-11-29 00:00", "2026-07-01 00:00", "2027-01-01 00:00"),
        ("cron(0 0 1 */3 ? *)", "2026-11-29 00:00", "2026-10-01 00:00", "2027-01-01 00:00"),
        ("cron(0 0 L * ? *)", "2026-11-29 00:00", "2026-10-31 00:00", "2026-11-30 00:00"),
        ("cron(0 0 L 2 ? *)", "2028-12-01 00:00", "2028-02-29 00:00", "2029-02-28 00:00"),
        ("cron(0 0 LW * ? *)", "2026-06-01 00:00", "2026-05-29 00:00", "2026-06-30 00:00"),  # 31 May: Sun
        ("cron(0 0 15W * ? *)", "2026-11-29 00:00", "2026-11-16 00:00", "2026-12-15 00:00"),  # 15 Nov: Sun
        ("cron(0 0 1W * ? *)", "2026-08-04 00:00", "2026-08-03 00:00", "2026-09-01 00:00"),  # 1 Aug: Sat
        ("cron(0 0 31W * ? *)", "2026-06-01 00:00", "2026-05-29 00:00", "2026-07-31 00:00"),  # none in June
        ("cron(0 0 ? * L *)", "2026-11-29 00:00", "2026-11-28 00:00", "2026-12-05 00:00"),  # Saturdays
        ("cron(0 0 ? * 6L *)", "2026-11-29 00:00", "2026-11-27 00:00", "2026-12-25 00:00"),  # last Friday
        ("cron(0 0 ? * FRIL *)", "2026-11-29 00:00", "2026-11-27 00:00", "2026-12-25 00:00"),
        ("cron(0 0 ? * 3#2 *)", "2026-11-29 00:00", "2026-11-10 00:00", "2026-12-08 00:00"),  # 2nd Tuesday
        ("cron(0 0 ? * MON#5 *)", "2026-11-29 00:00", "2026-08-31 00:00", "2026-11-30 00:00"),
        ("cron(0 0 1 1 ? 2026-2028)", "2027-06-01 00:00", "2027-01-01 00:00", "2028-01-01 00:00"),
        ("cron(0 0 1 1 ? 2020/5)", "2027-06-01 00:00", "2025-01-01 00:00", "2030-01-01 00:00"),
    ],
)
def test_cron_fields_select_the_expected_slots(text: str, now: str, slot: str, following: str) -> None:
    schedule = parse_schedule(text, UTC_ZONE)
    current = schedule.slot_at(utc(now))
    assert current == utc(slot)
    assert_next_slot(schedule, current, utc(following))


def test_cron_with_years_has_no_slot_outside_them() -> None:
    # Given a cron limited to 2030-2031
    schedule = parse_schedule("cron(0 0 1 1 ? 2030-2031)", UTC_ZONE)
    # When asked before its first or after its last slot / Then the error names it and says why
    with pytest.raises(
        ScheduleError, match=r"'cron\(0 0 1 1 \? 2030-2031\)'.*no scheduled time at or before"
    ):
        schedule.slot_at(utc("2029-12-31 23:59"))
    assert schedule.slot_at(utc("2040-06-01 00:00")) == utc("2031-01-01 00:00")
    assert schedule.max_interval() == timedelta(days=365)


def test_cron_that_fires_once_has_no_interval() -> None:
    schedule = parse_schedule("cron(0 0 1 1 ? 2030)", UTC_ZONE)
    assert schedule.slot_at(utc("2100-01-01 00:00")) == utc("2030-01-01 00:00")
    with pytest.raises(ScheduleError, match="fires only once"):
        schedule.max_interval()


# --- max_interval ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tz", "interval"),
    [
        ("hourly", UTC_ZONE, timedelta(hours=1)),
        ("every 6h", UTC_ZONE, timedelta(hours=6)),
        ("daily@03:00", UTC_ZONE, timedelta(days=1)),
        ("daily@03:00", BERLIN, timedelta(days=1, hours=1)),
        ("weekly@sun 03:00", NEW_YORK, timedelta(days=7, hours=1)),
        ("monthly@1", UTC_ZONE, timedelta(days=31)),
        ("monthly@31", UTC_ZONE, timedelta(days=31)),
        ("cron(0/15 * * * ? *)", UTC_ZONE, timedelta(minutes=15)),
        ("cron(0 9,17 * * ? *)", UTC_ZONE, timedelta(hours=16)),
        ("cron(0 18 ? * MON-FRI *)", UTC_ZONE, timedelta(days=3)),
        ("cron(0 0 ? * 6L *)", UTC_ZONE, timedelta(days=35)),
        ("cron(0 0 1 JAN,JUL ? *)", UTC_ZONE, timedelta(days=184)),
    ],
)
def test_max_interval_is_the_longest_gap_between_slots(text: str, tz: ZoneInfo, interval: timedelta) -> None:
    assert parse_schedule(text, tz).max_interval() == interval


# --- invalid values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("sometimes", "unknown form; expected hourly, every Nh"),
        ("rate(1 hour)", "rate expressions are not schedules here"),
        ("daily 03:00", "unknown form"),
        ("every 5h", "N must divide 24"),
        ("every 0h", "N must divide 24"),
        ("every 48h", "N must divide 24"),
        ("every h", "unknown form"),
        ("daily@", "'' is not a time of day HH:MM"),
        ("daily@24:00", "hour 24 is out of range 0..23"),
        ("daily@03:60", "minute 60 is out of range 0..59"),
        ("daily@3", "'3' is not a time of day"),
        ("daily@03:00:00", "not a time of day"),
        ("daily@\u0660\u0663:\u0660\u0660", "not a time of day"),  # Arabic-Indic digits
        ("weekly", "weekly needs @"),
        ("weekly@", "weekly needs a day"),
        ("weekly@funday", "'funday' is not a day (mon..sun or monday..sunday)"),
        ("weekly@tues", "'tues' is not a day"),
        ("weekly@mon 25:00", "hour 25 is out of range"),
        ("monthly", "monthly needs @"),
        ("monthly@0", "day 0 is out of range 1..31"),
        ("monthly@32", "day 32 is out of range 1..31"),
        ("monthly@last", "'last' is not a day of the month"),
        ("monthly@\u00b9", "'\u00b9' is not a day of the month"),  # superscript one
        ("monthly@15 3pm", "'3pm' is not a time of day"),
        ("cron(0 7 * * ?)", "cron needs 6 fields"),
        (
            "cron(0 7 * * ? * *)",
            "cron needs 6 fields (minutes hours day-of-month month day-of-week year), got 7",
        ),
        ("cron(0 7 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 7 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(60 7 * * ? *)", "minutes 60 is out of range 0-59"),
        ("cron(0 24 * * ? *)", "hours 24 is out of range 0-23"),
        ("cron(0 7 0 * ? *)", "day-of-month 0 is out of range 1-31"),
        ("cron(0 7 * 13 ? *)", "month 13 is out of range 1-12"),
        ("cron(0 7 * FOO ? *)", "month 'FOO' is not a value (1-12 or JAN-DEC)"),
        ("cron(0 7 ? * 8 *)", "day-of-week 8 is out of range 1-7"),
        ("cron(0 7 ? * 0 *)", "day-of-week 0 is out of range 1-7"),
        ("cron(0 7 * * ? 1969)", "year 1969 is out of range 1970-2199"),
        ("cron(0 7 * * ? 2200)", "year 2200 is out of range 1970-2199"),
        ("cron(x 7 * * ? *)", "minutes 'X' is not a value (0-59)"),
        ("cron(0,,5 7 * * ? *)", "empty item in the list"),
        ("cron(0/0 7 * * ? *)", "minutes step 0 is out of range"),
        ("cron(0 10-2 * * ? *)", "range runs backwards"),
        ("cron(0 7 ? * FRI-MON *)", "range runs backwards"),
        ("cron(? 7 * * ? *)", "'?' is only allowed in day-of-month or day-of-week"),
        ("cron(0 7 ? * MON/2 *)", "EventBridge allows no '/' step in day-of-week"),
        ("cron(0 7 ? * 2#1,3#1 *)", "'#' and 'L' must stand alone"),
        ("cron(0 7 ? * 2#6 *)", "occurrence after '#' 6 is out of range 1-5"),
        ("cron(0 7 ? * 9#1 *)", "day-of-week 9 is out of range 1-7"),
        ("cron(0 7 ? * L,MON *)", "'#' and 'L' must stand alone"),
        ("cron(0 7 L-3 * ? *)", "offsets from the last day (L-n) are not supported"),
        ("cron(0 7 1,L * ? *)", "'L', 'LW' and 'nW' must stand alone"),
        ("cron(0 7 32W * ? *)", "day-of-month 32 is out of range 1-31"),
        ("cron(0 0 30 2 ? *)", "this cron never fires"),
        ("cron(0 0 31 APR,JUN,SEP,NOV ? *)", "this cron never fires"),
        ("cron(0 0 29 2 ? 2100)", "this cron never fires"),
    ],
)
def test_invalid_expression_is_rejected_with_its_reason(text: str, reason: str) -> None:
    # Given an invalid expression / When parsed
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(text, UTC_ZONE)
    # Then the message names the expression as written and says why
    assert raised.value.expression == text.strip()
    assert str(raised.value).startswith(f"invalid schedule {text.strip()!r}: ")
    assert reason in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_schedule_error_survives_pickling() -> None:
    # Given an error as a Lambda runtime might serialise it / Then it comes back whole
    error = ScheduleError("every 5h", "N must divide 24")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.expression, copy.reason, str(copy)) == (error.expression, error.reason, str(error))


def test_naive_datetimes_are_rejected() -> None:
    schedule = parse_schedule("hourly", UTC_ZONE)
    with pytest.raises(NaiveDatetimeError, match="must be timezone-aware, got naive 2026-11-29T03:00:00"):
        schedule.slot_at(datetime(2026, 11, 29, 3, 0))  # noqa: DTZ001


# --- speed -----------------------------------------------------------------------------------


def test_ten_thousand_slot_lookups_are_fast() -> None:
    # Given the planner's workload: 10,000 instances, a handful of schedules, one `now`
    schedules = [
        parse_schedule(text, BERLIN) for text in ("daily@03:00", "cron(0 3 ? * MON-FRI *)", "every 6h")
    ]
    now = utc("2026-11-29 12:34:56")
    started = time.perf_counter()
    slots = {schedules[index % 3].slot_at(now) for index in range(10_000)}
    # Then it takes well under a second (no minute-by-minute scanning)
    assert time.perf_counter() - started < 1.0
    assert slots == {utc("2026-11-29 02:00"), utc("2026-11-27 02:00"), utc("2026-11-29 11:00")}


# --- properties ------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Sao_Paulo",  # historical DST changes at midnight
    "Asia/Kolkata",
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]
SIMPLE_FORMS = st.one_of(
    st.sampled_from(["hourly", "daily"]),
    st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]).map(lambda hours: f"every {hours}h"),
    st.builds("daily@{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59)),
    st.builds(
        "weekly@{} {:02d}:{:02d}".format,
        st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    st.builds("monthly@{} {:02d}:{:02d}".format, st.integers(1, 31), st.integers(0, 23), st.integers(0, 59)),
)
CRON_DAYS = [
    ("*", "?"),
    ("?", "*"),
    ("?", "MON-FRI"),
    ("?", "SAT,SUN"),
    ("L", "?"),
    ("LW", "?"),
    ("15W", "?"),
    ("1,15", "?"),
    ("29", "?"),
    ("31", "?"),
    ("1-7/3", "?"),
    ("?", "L"),
    ("?", "6L"),
    ("?", "2#1"),
    ("?", "MON#5"),
]
CRONS = st.builds(
    lambda minute, hour, days, month: f"cron({minute} {hour} {days[0]} {month} {days[1]} *)",
    st.sampled_from(["0", "30", "0,30", "*/15", "5-10", "0/20"]),
    st.sampled_from(["*", "2", "3", "0-23/6", "1,13", "22"]),
    st.sampled_from(CRON_DAYS),
    st.sampled_from(["*", "JAN,JUL", "2,3", "*/3", "MAR-OCT"]),
)
INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2150, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def schedules() -> st.SearchStrategy[Schedule]:
    return st.builds(parse_schedule, st.one_of(SIMPLE_FORMS, CRONS), st.sampled_from(ZONES).map(ZoneInfo))


@PROPERTY_SETTINGS
@given(schedule=schedules(), now=INSTANTS)
def test_slot_brackets_now(schedule: Schedule, now: datetime) -> None:
    # Given any schedule and instant / When the slot and the next slot are taken
    slot = schedule.slot_at(now)
    following = next_slot(schedule, slot)
    # Then slot <= now < next, both in UTC, and the gap is within max_interval
    assert slot <= now < following
    assert slot.tzinfo is UTC and following.tzinfo is UTC
    assert following - slot <= schedule.max_interval()


@PROPERTY_SETTINGS
@given(schedule=schedules(), now=INSTANTS)
def test_slot_at_a_slot_is_that_slot(schedule: Schedule, now: datetime) -> None:
    slot = schedule.slot_at(now)
    following = next_slot(schedule, slot)
    assert schedule.slot_at(slot) == slot
    assert schedule.slot_at(following) == following
    assert schedule.slot_at(following - timedelta(microseconds=1)) == slot


@PROPERTY_SETTINGS
@given(schedule=schedules(), now=INSTANTS, steps=st.integers(2, 6))
def test_consecutive_slots_increase_within_max_interval(
    schedule: Schedule, now: datetime, steps: int
) -> None:
    slot = schedule.slot_at(now)
    for _ in range(steps):
        following = next_slot(schedule, slot)
        assert timedelta(0) < following - slot <= schedule.max_interval()
        slot = following


@settings(max_examples=200, deadline=None)
@given(
    day=st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    now=INSTANTS,
)
def test_weekly_slot_in_utc_is_on_that_day_and_time(day: str, hour: int, minute: int, now: datetime) -> None:
    # Given weekly@DAY HH:MM in UTC (no DST) / Then every slot falls on exactly that wall time
    slot = parse_schedule(f"weekly@{day} {hour:02d}:{minute:02d}", UTC_ZONE).slot_at(now)
    assert (slot.strftime("%a").lower(), slot.hour, slot.minute, slot.second) == (day, hour, minute, 0)
    assert now - slot < timedelta(days=7)


@settings(max_examples=200, deadline=None)
@given(day=st.integers(1, 31), now=INSTANTS)
def test_monthly_slot_in_utc_is_day_d_or_the_last_day(day: int, now: datetime) -> None:
    slot = parse_schedule(f"monthly@{day}", UTC_ZONE).slot_at(now)
    last_day = (slot.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    assert slot.day == min(day, last_day.day)
    assert (slot.hour, slot.minute) == (0, 0)


# An independent reading of each cron field used by CRONS below, written from the EventBridge
# documentation rather than from the parser, so the property below checks one against the other.
def _is_last_day(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


def _nearest_weekday_to_15th(day: date) -> bool:
    fifteenth = day.replace(day=15)
    shift = {5: -1, 6: 1}.get(fifteenth.weekday(), 0)
    return day == fifteenth + timedelta(days=shift)


ORACLE_DAYS: dict[tuple[str, str], Callable[[date], bool]] = {
    ("*", "?"): lambda day: True,
    ("?", "*"): lambda day: True,
    ("?", "MON-FRI"): lambda day: day.weekday() < 5,
    ("?", "SAT,SUN"): lambda day: day.weekday() >= 5,
    ("L", "?"): _is_last_day,
    ("LW", "?"): lambda day: (
        day.weekday() < 5
        and all(
            (day + timedelta(days=ahead)).month != day.month or (day + timedelta(days=ahead)).weekday() >= 5
            for ahead in (1, 2, 3)
        )
    ),
    ("15W", "?"): _nearest_weekday_to_15th,
    ("1,15", "?"): lambda day: day.day in (1, 15),
    ("29", "?"): lambda day: day.day == 29,
    ("31", "?"): lambda day: day.day == 31,
    ("1-7/3", "?"): lambda day: day.day in (1, 4, 7),
    ("?", "L"): lambda day: day.weekday() == 5,
    ("?", "6L"): lambda day: day.weekday() == 4 and (day + timedelta(days=7)).month != day.month,
    ("?", "2#1"): lambda day: day.weekday() == 0 and day.day <= 7,
    ("?", "MON#5"): lambda day: day.weekday() == 0 and day.day >= 29,
}
ORACLE_MINUTES = {"0": {0}, "30": {30}, "0,30": {0, 30}, "*/15": {0, 15, 30, 45}, "5-10": set(range(5, 11))}
ORACLE_HOURS = {"*": set(range(24)), "2": {2}, "0-23/6": {0, 6, 12, 18}, "1,13": {1, 13}, "22": {22}}
ORACLE_MONTHS = {"*": set(range(1, 13)), "JAN,JUL": {1, 7}, "2,3": {2, 3}, "*/3": {1, 4, 7, 10}}


@settings(max_examples=150, deadline=None)
@given(
    minute=st.sampled_from(sorted(ORACLE_MINUTES)),
    hour=st.sampled_from(sorted(ORACLE_HOURS)),
    days=st.sampled_from(sorted(ORACLE_DAYS)),
    month=st.sampled_from(sorted(ORACLE_MONTHS)),
    now=INSTANTS,
)
def test_cron_slot_in_utc_matches_a_day_by_day_search(
    minute: str, hour: str, days: tuple[str, str], month: str, now: datetime
) -> None:
    # Given a cron in UTC / When its slot is compared with a plain backwards search of the calendar
    schedule = parse_schedule(f"cron({minute} {hour} {days[0]} {month} {days[1]} *)", UTC_ZONE)
    times = sorted(datetime_time(h, m) for h in ORACLE_HOURS[hour] for m in ORACLE_MINUTES[minute])
    day = now.date()
    while not (day.month in ORACLE_MONTHS[month] and ORACLE_DAYS[days](day)) or (
        day == now.date() and times[0] > now.time()
    ):
        day -= timedelta(days=1)
    latest = max(t for t in times if day < now.date() or t <= now.time())
    # Then both find the same slot
    assert schedule.slot_at(now) == datetime.combine(day, latest, tzinfo=UTC)
