"""Schedule expressions (SPEC §3): which instants are backup slots.

Every form is evaluated in the wall time of the stack's ``TimeZone``. A schedule is a set of
wall-clock times (times of day on fire days); each one becomes an instant by this DST rule:

* a wall time that does not exist (spring-forward gap) maps to the first instant after the gap,
  e.g. 02:30 on 2026-03-29 in Europe/Berlin is 03:00 CEST (01:00 UTC);
* a wall time that occurs twice (fall-back overlap) maps to its first occurrence,
  e.g. 02:30 on 2026-10-25 in Europe/Berlin is 02:30 CEST (00:30 UTC), never 02:30 CET.

Wall times that map to the same instant are one slot. ``monthly@D`` fires on the month's last day
when the month is shorter than D (``monthly@31`` is 30 April, 28 or 29 February).

Supported EventBridge cron syntax (fields: minutes hours day-of-month month day-of-week year):
``*``, lists, ranges ``a-b``, steps ``a/n``, ``*/n`` and ``a-b/n`` (not in day-of-week), month
names JAN-DEC, day names SUN-SAT with 1 = SUN ... 7 = SAT, ``L``, ``LW`` and ``nW`` alone in
day-of-month, ``L`` (Saturday, the last day of the week), ``nL`` (last such weekday of the month)
and ``n#k`` (k-th such weekday) alone in day-of-week, years 1970-2199. Exactly one of day-of-month
and day-of-week must be ``?``. Ranges that run backwards (``FRI-MON``) and ``L-n`` are rejected.
"""

from __future__ import annotations

import calendar
import functools
import itertools
import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
ACCEPTED_FORMS = (
    "hourly, every Nh, daily, daily@HH:MM, weekly@DAY, weekly@DAY HH:MM, monthly@D, monthly@D HH:MM "
    "or cron(minutes hours day-of-month month day-of-week year)"
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CRON_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
CRON_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_YEARS = (1970, 2199)
# The Gregorian calendar repeats (leap years and weekdays) every 400 years: a cron whose year is
# `*` that has not fired within that span never fires.
GREGORIAN_CYCLE_MONTHS = 400 * 12
GREGORIAN_CYCLE_DAYS = 146_097
# Offsets are sampled once a day, so a change is placed to within a day on either side of a gap.
OFFSET_SAMPLE_MARGIN_DAYS = 3


class ScheduleError(ValueError):
    """A schedule expression that is invalid, or that has no slot where one was asked for."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid schedule {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[str, str]]:
        return type(self), (self.expression, self.reason)


class NaiveDatetimeError(ValueError):
    """A datetime without a time zone where an instant is required."""

    def __init__(self, name: str, value: datetime) -> None:
        super().__init__(f"{name} must be timezone-aware, got naive {value.isoformat()}")


@dataclass(frozen=True)
class Schedule(ABC):
    """The slots of one schedule expression in one time zone."""

    expression: str
    tz: tzinfo

    def slot_at(self, now: datetime) -> datetime:
        """The latest slot at or before `now`, in UTC."""
        _require_aware("now", now)
        try:
            wall_now = _wall_time(now, self.tz)
            candidate = self._wall_at_or_before(wall_now)
            probe = self._wall_after(wall_now if candidate is None else candidate)
            # In a fall-back overlap a wall time later than `now`'s may still be an earlier instant.
            while probe is not None and _to_utc(probe, self.tz) <= now:
                candidate, probe = probe, self._wall_after(probe)
        except OverflowError:
            raise ScheduleError(self.expression, f"{now.isoformat()} is beyond the calendar") from None
        if candidate is None:
            raise ScheduleError(self.expression, f"it has no scheduled time at or before {now.isoformat()}")
        return _to_utc(candidate, self.tz)

    def max_interval(self) -> timedelta:
        """The longest time between two consecutive slots, DST and other offset changes included.

        Slots are spaced in wall time; a UTC offset that drops between two slots (fall-back)
        lengthens their gap by the drop, e.g. `hourly` in Europe/Berlin is 2h: at fall-back 02:00
        is taken once, so 02:00 CEST to 03:00 CET is two hours. The drop is the largest the zone
        has within such a span in 1970-2199.
        """
        wall_gap = self._max_wall_gap()
        return wall_gap + _offset_drop(self.tz, wall_gap.days + OFFSET_SAMPLE_MARGIN_DAYS)

    @property
    @abstractmethod
    def _times_of_day(self) -> tuple[int, ...]:
        """Minutes after local midnight at which the schedule fires on a fire day, ascending."""

    @abstractmethod
    def _last_day_on_or_before(self, day: date) -> date | None: ...

    @abstractmethod
    def _first_day_on_or_after(self, day: date) -> date | None: ...

    @abstractmethod
    def _max_wall_gap(self) -> timedelta: ...

    def _wall_at_or_before(self, wall: datetime) -> datetime | None:
        day, minute = wall.date(), wall.hour * 60 + wall.minute
        times = self._times_of_day
        if self._last_day_on_or_before(day) == day:
            index = bisect_right(times, minute)
            if index:
                return _at(day, times[index - 1])
        previous = self._last_day_on_or_before(day - timedelta(days=1))
        return None if previous is None else _at(previous, times[-1])

    def _wall_after(self, wall: datetime) -> datetime | None:
        day, minute = wall.date(), wall.hour * 60 + wall.minute
        times = self._times_of_day
        if self._first_day_on_or_after(day) == day:
            index = bisect_right(times, minute)
            if index < len(times):
                return _at(day, times[index])
        following = self._first_day_on_or_after(day + timedelta(days=1))
        return None if following is None else _at(following, times[0])


class _EveryDay:
    """Mixin for forms that fire every day."""

    def _last_day_on_or_before(self, day: date) -> date | None:
        return day

    def _first_day_on_or_after(self, day: date) -> date | None:
        return day


@dataclass(frozen=True)
class IntervalSchedule(_EveryDay, Schedule):
    """`hourly` and `every Nh`: every N hours from local midnight."""

    hours: int

    @property
    def _times_of_day(self) -> tuple[int, ...]:
        return tuple(range(0, MINUTES_PER_DAY, self.hours * 60))

    def _max_wall_gap(self) -> timedelta:
        return timedelta(hours=self.hours)


@dataclass(frozen=True)
class DailySchedule(_EveryDay, Schedule):
    """`daily` and `daily@HH:MM`."""

    hour: int
    minute: int

    @property
    def _times_of_day(self) -> tuple[int, ...]:
        return (self.hour * 60 + self.minute,)

    def _max_wall_gap(self) -> timedelta:
        return timedelta(days=1)


@dataclass(frozen=True)
class WeeklySchedule(Schedule):
    """`weekly@DAY` and `weekly@DAY HH:MM`; `weekday` counts from Monday = 0."""

    weekday: int
    hour: int
    minute: int

    @property
    def _times_of_day(self) -> tuple[int, ...]:
        return (self.hour * 60 + self.minute,)

    def _last_day_on_or_before(self, day: date) -> date | None:
        return day - timedelta(days=(day.weekday() - self.weekday) % 7)

    def _first_day_on_or_after(self, day: date) -> date | None:
        return day + timedelta(days=(self.weekday - day.weekday()) % 7)

    def _max_wall_gap(self) -> timedelta:
        return timedelta(days=7)


@dataclass(frozen=True)
class MonthlySchedule(Schedule):
    """`monthly@D` and `monthly@D HH:MM`; in a month shorter than D it fires on the last day."""

    day: int
    hour: int
    minute: int

    @property
    def _times_of_day(self) -> tuple[int, ...]:
        return (self.hour * 60 + self.minute,)

    def _fire_day(self, year: int, month: int) -> date:
        return date(year, month, min(self.day, calendar.monthrange(year, month)[1]))

    def _last_day_on_or_before(self, day: date) -> date | None:
        fire = self._fire_day(day.year, day.month)
        if fire <= day:
            return fire
        return self._fire_day(*_previous_month(day.year, day.month))

    def _first_day_on_or_after(self, day: date) -> date | None:
        fire = self._fire_day(day.year, day.month)
        if fire >= day:
            return fire
        return self._fire_day(*_next_month(day.year, day.month))

    def _max_wall_gap(self) -> timedelta:
        # Whatever D is, two consecutive fire days are at most 31 days apart (e.g. 31 Jan -> 28 Feb
        # is 28, 28 Feb -> 31 Mar is 31, 15 Dec -> 15 Jan is 31).
        return timedelta(days=31)


DayKind = Literal[
    "days", "last_day", "last_weekday", "nearest_weekday", "weekdays", "last_of_weekday", "nth_weekday"
]


@dataclass(frozen=True)
class CronDays:
    """The day part of a cron: which days of which months of which years it fires on.

    `kind` says how `values` (days of month, or EventBridge weekdays 1 = SUN .. 7 = SAT) and `nth`
    are read. `years` is None for `*` (any year).
    """

    kind: DayKind
    values: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None
    nth: int = 0

    def fires_in_year(self, year: int) -> bool:
        return self.years is None or year in self.years

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        if month not in self.months or not self.fires_in_year(year):
            return ()
        return _cached_days_in_month(self, year, month)

    def days_in_uncached(self, year: int, month: int) -> tuple[int, ...]:
        """Like `days_in`, for whole-calendar sweeps that would only flush the cache."""
        if month not in self.months or not self.fires_in_year(year):
            return ()
        return _days_in_month(self, year, month)


def _days_in_month(spec: CronDays, year: int, month: int) -> tuple[int, ...]:
    first_weekday, length = calendar.monthrange(year, month)

    def cron_weekday(day: int) -> int:
        return (first_weekday + day) % 7 + 1  # Python's Monday = 0 becomes EventBridge's MON = 2

    if spec.kind == "days":
        return tuple(day for day in sorted(spec.values) if day <= length)
    if spec.kind == "last_day":
        return (length,)
    if spec.kind == "last_weekday":
        return (_nearest_weekday(length, year, month, length),)
    if spec.kind == "nearest_weekday":
        (target,) = spec.values
        return () if target > length else (_nearest_weekday(target, year, month, length),)
    if spec.kind == "weekdays":
        return tuple(day for day in range(1, length + 1) if cron_weekday(day) in spec.values)
    (weekday,) = spec.values
    if spec.kind == "last_of_weekday":
        return (length - (cron_weekday(length) - weekday) % 7,)
    first = 1 + (weekday - cron_weekday(1)) % 7
    nth = first + 7 * (spec.nth - 1)
    return (nth,) if nth <= length else ()


_cached_days_in_month = functools.lru_cache(maxsize=4096)(_days_in_month)


def _nearest_weekday(target: int, year: int, month: int, length: int) -> int:
    """Quartz/EventBridge `W`: the Monday-Friday day nearest `target`, never leaving the month."""
    weekday = calendar.weekday(year, month, target)
    if weekday == calendar.SATURDAY:
        return target - 1 if target > 1 else target + 2
    if weekday == calendar.SUNDAY:
        return target + 1 if target < length else target - 2
    return target


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """An EventBridge `cron(...)` expression evaluated in the stack's time zone."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: CronDays
    _times: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = tuple(sorted(hour * 60 + minute for hour in self.hours for minute in self.minutes))
        object.__setattr__(self, "_times", times)

    @property
    def _times_of_day(self) -> tuple[int, ...]:
        return self._times

    def _last_day_on_or_before(self, day: date) -> date | None:
        year, month = day.year, day.month
        earlier = [d for d in self.days.days_in(year, month) if d <= day.day]
        if earlier:
            return date(year, month, earlier[-1])
        years = self.days.years
        if years is not None and year > max(years):
            year, month = max(years) + 1, 1  # skip straight to the last listed year
        # Bounded: a fire day exists in every Gregorian cycle (checked when parsing), and listed
        # years span less than one.
        for _ in range(GREGORIAN_CYCLE_MONTHS):
            if (year, month) == (1, 1) or (years is not None and year < min(years)):
                return None
            year, month = _previous_month(year, month)
            days = self.days.days_in(year, month)
            if days:
                return date(year, month, days[-1])
        return None

    def _first_day_on_or_after(self, day: date) -> date | None:
        year, month = day.year, day.month
        later = [d for d in self.days.days_in(year, month) if d >= day.day]
        if later:
            return date(year, month, later[0])
        years = self.days.years
        if years is not None and year < min(years):
            year, month = min(years) - 1, 12  # skip straight to the first listed year
        for _ in range(GREGORIAN_CYCLE_MONTHS):
            if (year, month) == (9999, 12) or (years is not None and year > max(years)):
                return None
            year, month = _next_month(year, month)
            days = self.days.days_in(year, month)
            if days:
                return date(year, month, days[0])
        return None

    def _max_wall_gap(self) -> timedelta:
        return _cron_max_wall_gap(self.expression, self.days, self._times)


@functools.lru_cache(maxsize=256)
def _cron_max_wall_gap(expression: str, days: CronDays, times: tuple[int, ...]) -> timedelta:
    fire_days = _fire_day_ordinals(days)
    within_day = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0)
    day_gap = max((later - earlier for earlier, later in itertools.pairwise(fire_days)), default=0)
    if days.years is None:
        day_gap = max(day_gap, fire_days[0] + GREGORIAN_CYCLE_DAYS - fire_days[-1])
    if day_gap == 0 and within_day == 0:
        raise ScheduleError(expression, "it fires only once, so it has no interval between slots")
    across_days = day_gap * MINUTES_PER_DAY - (times[-1] - times[0]) if day_gap else 0
    return timedelta(minutes=max(within_day, across_days))


def _fire_day_ordinals(days: CronDays) -> list[int]:
    """Every fire day in one full period: the listed years, or one Gregorian cycle for `*`."""
    years = range(2000, 2400) if days.years is None else sorted(days.years)
    return [
        date(year, month, day).toordinal()
        for year in years
        for month in range(1, 13)
        for day in days.days_in_uncached(year, month)
    ]


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(name, value)


def _at(day: date, minute_of_day: int) -> datetime:
    # A wall time, deliberately naive: _to_utc gives it its instant.
    return datetime(day.year, day.month, day.day, minute_of_day // 60, minute_of_day % 60)  # noqa: DTZ001


def _wall_time(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def _to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """The instant of a local wall time, by the module's DST rule."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall_time(first, tz) == wall:
        return first  # exists; fold=0 is the first occurrence of an ambiguous time
    # In a gap, fold=0 reads the wall time with the offset before the transition and fold=1 with
    # the one after, which brackets the transition; find it to the second.
    lowest = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = 0, int((first - lowest).total_seconds())
    while low < high:
        middle = (low + high) // 2
        if _wall_time(lowest + timedelta(seconds=middle), tz) > wall:
            high = middle
        else:
            low = middle + 1
    return lowest + timedelta(seconds=low)


@functools.lru_cache(maxsize=64)
def _daily_offsets(tz: tzinfo) -> tuple[int, ...]:
    """UTC offsets of `tz` in seconds, sampled daily at 00:00 UTC over 1970-2199."""
    instant, end = datetime(CRON_YEARS[0], 1, 1, tzinfo=UTC), datetime(CRON_YEARS[1] + 1, 1, 1, tzinfo=UTC)
    offsets = []
    while instant < end:
        offset = instant.astimezone(tz).utcoffset()
        offsets.append(0 if offset is None else int(offset.total_seconds()))
        instant += timedelta(days=1)
    return tuple(offsets)


@functools.lru_cache(maxsize=256)
def _offset_drop(tz: tzinfo, window_days: int) -> timedelta:
    """The largest fall of `tz`'s UTC offset between two samples at most `window_days` apart."""
    offsets = _daily_offsets(tz)
    largest = 0
    highest: deque[int] = deque()  # indices in the window, their offsets descending
    for index, offset in enumerate(offsets):
        while highest and highest[0] < index - window_days:
            highest.popleft()
        if highest:
            largest = max(largest, offsets[highest[0]] - offset)
        while highest and offsets[highest[-1]] <= offset:
            highest.pop()
        highest.append(index)
    return timedelta(seconds=largest)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


# ---------------------------------------------------------------------------------------------
# Parsing


_EVERY = re.compile(r"every ([0-9]{1,3}) ?h")
_AT_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_CRON = re.compile(r"cron\s*\((.*)\)", re.IGNORECASE | re.DOTALL)


@functools.lru_cache(maxsize=1024)
def parse_schedule(text: str, tz: ZoneInfo) -> Schedule:
    """Parse a schedule expression (SPEC §3); raises ScheduleError naming the expression and why."""
    shown = text.strip()
    cron = _CRON.fullmatch(shown)
    if cron is not None:
        return _parse_cron(shown, cron.group(1), tz)
    normal = re.sub(r"\s*@\s*", "@", re.sub(r"\s+", " ", shown.lower()))
    if not normal:
        raise ScheduleError(shown, f"it is empty; expected {ACCEPTED_FORMS}")
    if normal == "hourly":
        return IntervalSchedule(normal, tz, hours=1)
    every = _EVERY.fullmatch(normal)
    if every is not None:
        return _parse_every(shown, int(every.group(1)), tz)
    if normal == "daily":
        return DailySchedule(normal, tz, hour=0, minute=0)
    keyword, at, argument = normal.partition("@")
    if keyword in ("weekly", "monthly") and not at:
        raise ScheduleError(shown, f"{keyword} needs @, e.g. weekly@sun 03:00 or monthly@1 03:00")
    if keyword == "daily" and at:
        hour, minute = _parse_time(shown, argument)
        return DailySchedule(f"daily@{hour:02d}:{minute:02d}", tz, hour=hour, minute=minute)
    if keyword == "weekly":
        return _parse_weekly(shown, argument, tz)
    if keyword == "monthly":
        return _parse_monthly(shown, argument, tz)
    if normal.startswith("rate(") or normal.startswith("rate "):
        raise ScheduleError(shown, f"rate expressions are not schedules here; use {ACCEPTED_FORMS}")
    raise ScheduleError(shown, f"unknown form; expected {ACCEPTED_FORMS}")


def _parse_every(shown: str, hours: int, tz: ZoneInfo) -> Schedule:
    if hours == 0 or 24 % hours:
        raise ScheduleError(shown, f"every {hours}h: N must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
    return IntervalSchedule(f"every {hours}h", tz, hours=hours)


def _parse_weekly(shown: str, argument: str, tz: ZoneInfo) -> Schedule:
    day_text, _, time_text = argument.partition(" ")
    if not day_text:
        raise ScheduleError(shown, "weekly needs a day, e.g. weekly@sun or weekly@sun 03:00")
    if day_text in WEEKDAYS:
        weekday = WEEKDAYS.index(day_text)
    elif day_text in FULL_WEEKDAYS:
        weekday = FULL_WEEKDAYS.index(day_text)
    else:
        raise ScheduleError(shown, f"{day_text!r} is not a day (mon..sun or monday..sunday)")
    expression = f"weekly@{WEEKDAYS[weekday]}"
    if not time_text:
        return WeeklySchedule(expression, tz, weekday=weekday, hour=0, minute=0)
    hour, minute = _parse_time(shown, time_text)
    return WeeklySchedule(
        f"{expression} {hour:02d}:{minute:02d}", tz, weekday=weekday, hour=hour, minute=minute
    )


def _parse_monthly(shown: str, argument: str, tz: ZoneInfo) -> Schedule:
    day_text, _, time_text = argument.partition(" ")
    if not _is_number(day_text) or len(day_text) > 2:
        raise ScheduleError(shown, f"{day_text!r} is not a day of the month (1..31), e.g. monthly@1 03:00")
    day = int(day_text)
    if not 1 <= day <= 31:
        raise ScheduleError(shown, f"day {day} is out of range 1..31")
    if not time_text:
        return MonthlySchedule(f"monthly@{day}", tz, day=day, hour=0, minute=0)
    hour, minute = _parse_time(shown, time_text)
    return MonthlySchedule(f"monthly@{day} {hour:02d}:{minute:02d}", tz, day=day, hour=hour, minute=minute)


def _parse_time(shown: str, text: str) -> tuple[int, int]:
    match = _AT_TIME.fullmatch(text)
    if match is None:
        raise ScheduleError(shown, f"{text!r} is not a time of day HH:MM (24-hour, e.g. 03:00)")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise ScheduleError(shown, f"hour {hour} is out of range 0..23")
    if minute > 59:
        raise ScheduleError(shown, f"minute {minute} is out of range 0..59")
    return hour, minute


# ---------------------------------------------------------------------------------------------
# EventBridge cron


def _parse_cron(shown: str, inner: str, tz: ZoneInfo) -> Schedule:
    fields = inner.upper().split()
    if len(fields) != 6:
        raise ScheduleError(
            shown,
            f"cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}",
        )
    minute_text, hour_text, dom_text, month_text, dow_text, year_text = fields
    parse = _CronFieldParser(shown)
    minutes = parse.values(minute_text, "minutes", 0, 59)
    hours = parse.values(hour_text, "hours", 0, 23)
    months = parse.values(month_text, "month", 1, 12, names=CRON_MONTHS)
    years = None if year_text == "*" else frozenset(parse.values(year_text, "year", *CRON_YEARS))
    if (dom_text == "?") == (dow_text == "?"):
        raise ScheduleError(shown, "exactly one of day-of-month and day-of-week must be '?'")
    if dow_text == "?":
        days = parse.day_of_month(dom_text, frozenset(months), years)
    else:
        days = parse.day_of_week(dow_text, frozenset(months), years)
    expression = f"cron({' '.join(fields)})"
    if not _fires_ever(days):
        raise ScheduleError(shown, "this cron never fires (no month or year has such a day)")
    return CronSchedule(expression, tz, minutes=frozenset(minutes), hours=frozenset(hours), days=days)


def _fires_ever(days: CronDays) -> bool:
    years = range(2000, 2400) if days.years is None else sorted(days.years)
    return any(days.days_in_uncached(year, month) for year in years for month in sorted(days.months))


_NEAREST_WEEKDAY = re.compile(r"([0-9]{1,2})W")
_LAST_OF_WEEKDAY = re.compile(r"([0-9A-Z]+)L")
_NTH_WEEKDAY = re.compile(r"([0-9A-Z]+)#([0-9A-Z]+)")


@dataclass(frozen=True)
class _CronFieldParser:
    shown: str

    def error(self, reason: str) -> ScheduleError:
        return ScheduleError(self.shown, reason)

    def day_of_month(self, text: str, months: frozenset[int], years: frozenset[int] | None) -> CronDays:
        if text == "L":
            return CronDays("last_day", frozenset(), months, years)
        if text == "LW":
            return CronDays("last_weekday", frozenset(), months, years)
        nearest = _NEAREST_WEEKDAY.fullmatch(text)
        if nearest is not None:
            day = self.number(nearest.group(1), "day-of-month", 1, 31)
            return CronDays("nearest_weekday", frozenset({day}), months, years)
        if text.startswith("L-"):
            raise self.error(f"day-of-month {text!r}: offsets from the last day (L-n) are not supported")
        if "L" in text or "W" in text:
            raise self.error(f"day-of-month {text!r}: 'L', 'LW' and 'nW' must stand alone in the field")
        return CronDays("days", frozenset(self.values(text, "day-of-month", 1, 31)), months, years)

    def day_of_week(self, text: str, months: frozenset[int], years: frozenset[int] | None) -> CronDays:
        if text == "L":
            return CronDays("weekdays", frozenset({7}), months, years)
        if "," in text and ("#" in text or "L" in text):
            raise self.error(f"day-of-week {text!r}: '#' and 'L' must stand alone in the field")
        nth = _NTH_WEEKDAY.fullmatch(text)
        if nth is not None:
            weekday = self.number(nth.group(1), "day-of-week", 1, 7, names=CRON_WEEKDAYS)
            occurrence = self.number(nth.group(2), "occurrence after '#'", 1, 5)
            return CronDays("nth_weekday", frozenset({weekday}), months, years, nth=occurrence)
        last = _LAST_OF_WEEKDAY.fullmatch(text)
        if last is not None:
            weekday = self.number(last.group(1), "day-of-week", 1, 7, names=CRON_WEEKDAYS)
            return CronDays("last_of_weekday", frozenset({weekday}), months, years)
        if "/" in text:
            raise self.error(f"day-of-week {text!r}: EventBridge allows no '/' step in day-of-week")
        if "#" in text or "L" in text:
            raise self.error(f"day-of-week {text!r}: '#' and 'L' must stand alone in the field")
        weekdays = self.values(text, "day-of-week", 1, 7, names=CRON_WEEKDAYS)
        return CronDays("weekdays", frozenset(weekdays), months, years)

    def values(self, text: str, name: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
        if text == "?":
            raise self.error(f"{name} {text!r}: '?' is only allowed in day-of-month or day-of-week")
        selected: set[int] = set()
        for item in text.split(","):
            if not item:
                raise self.error(f"{name} {text!r}: empty item in the list")
            selected |= self.item(item, name, low, high, names)
        return selected

    def item(self, item: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            step = self.number(step_text, f"{name} step", 1, high - low + 1)
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = self.number(first, name, low, high, names)
            stop = self.number(last, name, low, high, names)
            if start > stop:
                raise self.error(f"{name} {item!r}: range runs backwards; list the values instead")
        else:
            start = self.number(base, name, low, high, names)
            stop = high if slash else start
        return set(range(start, stop + 1, step))

    def number(self, text: str, name: str, low: int, high: int, names: tuple[str, ...] = ()) -> int:
        if text in names:
            return names.index(text) + 1
        if not _is_number(text):
            expected = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
            raise self.error(f"{name} {text!r} is not a value ({expected})")
        value = int(text)
        if not low <= value <= high:
            raise self.error(f"{name} {value} is out of range {low}-{high}")
        return value


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other scripts' digits."""
    return text.isascii() and text.isdigit()
