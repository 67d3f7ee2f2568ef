"""Retention rules: which backups of one instance to keep (SPEC §4), with restic ``forget`` semantics.

This module is pure: it reads no clock, calls no AWS API and takes the time zone as an argument.

Retention expressions
---------------------
Items are separated by spaces and/or commas; case and surrounding blanks do not matter::

    last=N  hourly=N  daily=N  weekly=N  monthly=N  yearly=N  within=DURATION

``N`` is a whole number, at least 1. Two shorthands: a bare number means ``last`` (``7`` is ``last=7``) and
a bare duration means ``within`` (``14d`` is ``within=14d``). A DURATION is one or more of ``<n>y``
(years), ``<n>m`` (months, not minutes), ``<n>w`` (weeks), ``<n>d`` (days) and ``<n>h`` (hours) written
together, each unit at most once: ``36h``, ``14d``, ``8w``, ``1y``, ``1y6m``. Each item may appear once.
An expression that is empty, names an unknown item, repeats an item, has a count below 1 or a malformed
duration is rejected with a :class:`RetentionError`; keeping nothing is never guessed.

What is kept
------------
Only ``available`` backups are looked at by the items; a backup is kept when any item keeps it, and every
reason is listed.

- ``last=N`` keeps the N newest backups (reason ``last #1`` for the newest, ``last #2``, ...).
- ``hourly``/``daily``/``weekly``/``monthly``/``yearly=N`` split the backups into calendar hours, days,
  ISO weeks (Monday to Sunday, so 1 Jan may belong to the last week of the year before), months and years
  in the stack's ``TimeZone``, and keep the newest backup of each of the N most recent of those periods
  that *have* a backup. Periods without a backup are skipped, not counted, so ``daily=7`` always keeps
  seven days' worth when seven days have backups. Reasons name the period: ``daily 2026-11-28``,
  ``weekly 2026-W48``, ``monthly 2026-11``, ``yearly 2026`` and ``hourly 2026-11-28T14:00+01:00``. An hour
  is a real hour: when a daylight-saving change repeats 01:00-02:00, the two are two hours, told apart by
  their UTC offset.
- ``within=D`` keeps every backup created less than D before the *newest available backup*, not before
  now, so a schedule that stalls never empties an instance (restic does the same). Years, months, weeks
  and days are counted on the calendar in ``TimeZone`` (``14d`` across a daylight-saving change is 14
  calendar days, not 336 hours); hours are exact hours. Counting back a month from the 31st lands on the
  last day of a shorter month (restic would overflow into the next month and keep less). When the
  wall-clock time reached is skipped or repeated by a daylight-saving change, the earlier instant is used.
  A backup exactly D older than the newest is not kept.

Whatever the items say, these are kept:

- a backup on legal hold (``held``);
- a backup still being made (``pending``);
- the newest available backup (``newest backup``), unless the caller turns that protection off for an
  instance terminated longer ago than the grace period;
- a backup in use by an instance, launch template or launch configuration (``in use``). When an item or
  one of the protections above keeps it anyway, ``in use`` is just one more reason; when nothing else
  would keep it, it is reported as kept-in-use (:attr:`Decision.kept_only_because_in_use`).

Everything else is deleted: an ``available`` backup with reason ``expired``, a ``failed`` one with reason
``failed``.

Held and in-use backups fill the items' periods like any other available backup, as restic's
``--keep-tag`` snapshots do. So putting or lifting a hold, or starting or stopping to use an image,
never changes which *other* backups the items keep: the items decide from dates alone, and the
protections only add to what they keep.

Ties in creation time are broken by image id (the larger id counts as newer), so the result never
depends on the order the backups are given in; decisions come back in that same order.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import MINYEAR, UTC, datetime, timedelta, tzinfo
from typing import Final, Literal, get_args

BackupState = Literal["pending", "available", "failed"]

_STATES: Final[frozenset[str]] = frozenset(get_args(BackupState))
_COUNT_KEYS: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_ALL_KEYS: Final = (*_COUNT_KEYS, "within")
_DURATION_UNITS: Final = {"y": "years", "m": "months", "w": "weeks", "d": "days", "h": "hours"}
_NUMBER: Final = re.compile(r"[0-9]+")
_DURATION_PART: Final = re.compile(r"([0-9]+)([a-z])")
_DURATION_SHAPE: Final = re.compile(r"(?:[0-9]+[a-z])+")
_DURATION_HINT: Final = "a duration is numbers each followed by y, m, w, d or h, e.g. 36h, 14d, 8w, 1y, 1y6m"


class RetentionError(ValueError):
    """A retention expression (or one item of it) that cannot be used, and why."""

    def __init__(self, expression: str, reason: str, item: str | None = None) -> None:
        self.expression = expression
        self.item = item
        self.reason = reason
        where = f"item {item!r}: " if item is not None else ""
        super().__init__(f"retention expression {expression!r}: {where}{reason}")


class DurationError(ValueError):
    """A duration text that cannot be read, and why."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"duration {text!r}: {reason}")


class InvalidBackupError(ValueError):
    """A backup handed to :func:`select` that the rules cannot reason about."""


@dataclass(frozen=True)
class Duration:
    """A span of calendar years, months, weeks and days plus exact hours, as ``within=`` takes."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0

    def __post_init__(self) -> None:
        parts = [getattr(self, name) for name in _DURATION_UNITS.values()]
        if any(isinstance(part, bool) or not isinstance(part, int) or part < 0 for part in parts):
            raise DurationError(self._render(), "every part must be a whole number, zero or more")
        if not any(parts):
            raise DurationError("0h", "must be longer than zero")

    @classmethod
    def parse(cls, text: str) -> Duration:
        normalised = text.strip().lower()
        if not normalised:
            raise DurationError(text, f"is empty; {_DURATION_HINT}")
        if not _DURATION_SHAPE.fullmatch(normalised):
            raise DurationError(text, f"is not a duration; {_DURATION_HINT}")
        amounts: dict[str, int] = {}
        for number, unit in _DURATION_PART.findall(normalised):
            if unit not in _DURATION_UNITS:
                raise DurationError(text, f"unknown unit {unit!r}; {_DURATION_HINT}")
            if _DURATION_UNITS[unit] in amounts:
                raise DurationError(text, f"unit {unit!r} is given twice")
            amounts[_DURATION_UNITS[unit]] = int(number)
        if not any(amounts.values()):
            raise DurationError(text, "must be longer than zero")
        return cls(**amounts)

    def __str__(self) -> str:
        return self._render()

    def _render(self) -> str:
        return "".join(
            f"{getattr(self, name)}{unit}" for unit, name in _DURATION_UNITS.items() if getattr(self, name)
        )

    def back_from(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The instant this duration before ``moment`` (in UTC), or None when that is before year 1."""
        local = moment.astimezone(tz)
        month_index = local.year * 12 + (local.month - 1) - (self.years * 12 + self.months)
        year, month_offset = divmod(month_index, 12)
        if year < MINYEAR:
            return None
        month = month_offset + 1
        # Landing on the 31st of a 30-day month clamps to its last day, so the window never shrinks.
        wall = local.replace(year=year, month=month, day=min(local.day, monthrange(year, month)[1]))
        try:
            # Aware arithmetic on one tzinfo moves the wall clock, which is what calendar days mean.
            wall = wall - timedelta(days=self.days + 7 * self.weeks)
            earliest_reading = min(wall.replace(fold=0).astimezone(UTC), wall.replace(fold=1).astimezone(UTC))
            return earliest_reading - timedelta(hours=self.hours)
        except OverflowError:
            return None


@dataclass(frozen=True)
class RetentionRules:
    """A parsed retention expression; ``expression`` is its normalised spelling, derived from the items."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: Duration | None = None
    expression: str = field(init=False)

    def __post_init__(self) -> None:
        items = [f"{key}={getattr(self, key)}" for key in _ALL_KEYS if getattr(self, key) is not None]
        expression = " ".join(items)
        object.__setattr__(self, "expression", expression)
        if not items:
            raise RetentionError(expression, "keeps nothing; give at least one item, e.g. daily=7")
        for key in _COUNT_KEYS:
            count = getattr(self, key)
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
                raise RetentionError(
                    expression, "the count must be a whole number, at least 1", f"{key}={count}"
                )
        if self.within is not None and not isinstance(self.within, Duration):
            raise RetentionError(expression, "within needs a Duration", f"within={self.within}")

    def __str__(self) -> str:
        return self.expression


def parse_retention(text: str) -> RetentionRules:
    """Read a retention expression such as ``"daily=7 weekly=4 monthly=6"`` or ``"7, 14d"``."""
    # Blanks around "=" are tolerated so that "daily = 7" reads as one item, not three.
    tokens = [token for token in re.split(r"[\s,]+", re.sub(r"\s*=\s*", "=", text.strip().lower())) if token]
    if not tokens:
        raise RetentionError(text, "is empty; keeping nothing is never guessed, give e.g. daily=7")
    counts: dict[str, int] = {}
    within: Duration | None = None
    for token in tokens:
        key, value = _parse_item(text, token)
        if key in counts or (key == "within" and within is not None):
            raise RetentionError(text, f"{key} is given more than once", token)
        if isinstance(value, Duration):
            within = value
        else:
            counts[key] = value
    return RetentionRules(
        last=counts.get("last"),
        hourly=counts.get("hourly"),
        daily=counts.get("daily"),
        weekly=counts.get("weekly"),
        monthly=counts.get("monthly"),
        yearly=counts.get("yearly"),
        within=within,
    )


def _parse_item(expression: str, token: str) -> tuple[str, int | Duration]:
    if _NUMBER.fullmatch(token):
        return "last", _parse_count(expression, token, token)
    if _DURATION_SHAPE.fullmatch(token):
        return "within", _parse_duration(expression, token, token)
    if "=" not in token:
        if token in _ALL_KEYS:
            raise RetentionError(expression, f"needs a value, e.g. {token}=7", token)
        raise RetentionError(
            expression,
            "is not an item; expected a count (7), a duration (14d) or one of "
            + ", ".join(f"{key}=..." for key in _ALL_KEYS),
            token,
        )
    key, _, value = token.partition("=")
    if not key:
        raise RetentionError(expression, "has no item name before '='", token)
    if key not in _ALL_KEYS:
        raise RetentionError(
            expression, f"unknown item {key!r}; expected one of {', '.join(_ALL_KEYS)}", token
        )
    if key == "within":
        return key, _parse_duration(expression, token, value)
    return key, _parse_count(expression, token, value)


def _parse_count(expression: str, token: str, value: str) -> int:
    if not _NUMBER.fullmatch(value.removeprefix("-")):
        raise RetentionError(expression, f"the count {value!r} is not a whole number", token)
    count = int(value)
    if count < 1:
        # "-1" and "0" are both numbers, just not counts: say so rather than "not a number".
        raise RetentionError(expression, "the count must be at least 1", token)
    return count


def _parse_duration(expression: str, token: str, value: str) -> Duration:
    try:
        return Duration.parse(value)
    except DurationError as error:
        raise RetentionError(expression, str(error), token) from error


@dataclass(frozen=True)
class Backup:
    """One AMI made for an instance, as retention sees it."""

    image_id: str
    created: datetime
    state: BackupState
    held: bool = False
    in_use: bool = False

    def __post_init__(self) -> None:
        if not self.image_id:
            raise InvalidBackupError("a backup needs an image id")
        if self.created.utcoffset() is None:
            raise InvalidBackupError(f"backup {self.image_id}: created {self.created} has no time zone")
        if self.state not in _STATES:
            raise InvalidBackupError(
                f"backup {self.image_id}: state {self.state!r} is not one of {', '.join(sorted(_STATES))}"
            )


@dataclass(frozen=True)
class Decision:
    """What retention does with one backup, and every reason a user would want to read."""

    image_id: str
    keep: bool
    reasons: tuple[str, ...]

    @property
    def kept_only_because_in_use(self) -> bool:
        return self.keep and self.reasons == ("in use",)


@dataclass(frozen=True)
class _Period:
    name: str
    bucket: Callable[[datetime], object]
    label: Callable[[datetime], str]
    # Consecutive whole numbers for consecutive periods: how many periods lie between two moments.
    index: Callable[[datetime], int]


def _hour_bucket(local: datetime) -> object:
    # The UTC offset tells apart the two 01:00 hours of a night that turns the clocks back.
    return (local.date(), local.hour, local.utcoffset())


def _hour_label(local: datetime) -> str:
    return local.replace(minute=0, second=0, microsecond=0).isoformat(timespec="minutes")


def _hour_index(local: datetime) -> int:
    # Real hours, cut where the local clock's hours start (zones with :30 and :45 offsets included).
    offset = local.utcoffset() or timedelta(0)
    return (int(local.timestamp()) + int(offset.total_seconds()) % 3600) // 3600


def _week_index(local: datetime) -> int:
    return (local.date().toordinal() - local.weekday()) // 7


def _week_label(local: datetime) -> str:
    iso = local.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


_PERIODS: Final = (
    _Period("hourly", _hour_bucket, _hour_label, _hour_index),
    _Period(
        "daily",
        lambda local: local.date(),
        lambda local: local.date().isoformat(),
        lambda local: local.date().toordinal(),
    ),
    _Period("weekly", lambda local: local.isocalendar()[:2], _week_label, _week_index),
    _Period(
        "monthly",
        lambda local: (local.year, local.month),
        lambda local: f"{local:%Y-%m}",
        lambda local: local.year * 12 + local.month,
    ),
    _Period("yearly", lambda local: local.year, lambda local: f"{local.year:04d}", lambda local: local.year),
)


def select(
    backups: Iterable[Backup],
    rules: RetentionRules,
    tz: tzinfo,
    *,
    protect_newest: bool = True,
    as_of: datetime | None = None,
) -> list[Decision]:
    """Decide keep or delete for every backup of one instance, in the order given.

    ``as_of`` is for an instance that will never be backed up again (terminated, grace over): the rules
    are then counted back from that moment instead of from the newest backup, as if its schedule had
    kept running and finding nothing. ``daily=7`` keeps only backups of the 7 days up to ``as_of``,
    ``within`` counts back from ``as_of``, and ``last=N`` keeps nothing. So such backups age out and,
    unless held or in use, are eventually all deleted.
    """
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidBackupError("as_of must be timezone-aware")
    given = list(backups)
    _reject_duplicate_ids(given)
    newest_first = sorted(
        (backup for backup in given if backup.state == "available"),
        key=lambda backup: (backup.created.astimezone(UTC), backup.image_id),
        reverse=True,
    )
    rule_reasons = _rule_reasons(newest_first, rules, tz, as_of)
    newest_id = newest_first[0].image_id if newest_first and protect_newest else None
    return [_decide(backup, rule_reasons.get(backup.image_id, []), newest_id) for backup in given]


def _reject_duplicate_ids(backups: list[Backup]) -> None:
    seen: set[str] = set()
    for backup in backups:
        if backup.image_id in seen:
            raise InvalidBackupError(f"backup {backup.image_id} is listed more than once")
        seen.add(backup.image_id)


def _rule_reasons(
    newest_first: list[Backup], rules: RetentionRules, tz: tzinfo, as_of: datetime | None
) -> dict[str, list[str]]:
    reasons: dict[str, list[str]] = {backup.image_id: [] for backup in newest_first}
    if not newest_first:
        return reasons
    local = {backup.image_id: backup.created.astimezone(tz) for backup in newest_first}
    newest_local = local[newest_first[0].image_id]
    anchor_local = as_of.astimezone(tz) if as_of is not None else None
    if rules.last is not None and as_of is None:
        for rank, backup in enumerate(newest_first[: rules.last], start=1):
            reasons[backup.image_id].append(f"last #{rank}")
    for period in _PERIODS:
        count = getattr(rules, period.name)
        if count is None:
            continue
        if anchor_local is not None:
            # The periods since the newest backup, up to as_of, used up their share of the count.
            count -= max(0, period.index(anchor_local) - period.index(newest_local))
            if count <= 0:
                continue
        # Periods are contiguous stretches of time, so walking newest first meets each one as a single
        # run, and its first backup is its newest.
        seen: set[object] = set()
        for backup in newest_first:
            bucket = period.bucket(local[backup.image_id])
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.add(bucket)
            reasons[backup.image_id].append(f"{period.name} {period.label(local[backup.image_id])}")
    if rules.within is not None:
        cutoff = rules.within.back_from(as_of or newest_first[0].created, tz)
        for backup in newest_first:
            if cutoff is None or backup.created > cutoff:
                reasons[backup.image_id].append(f"within {rules.within}")
    return reasons


def _decide(backup: Backup, rule_reasons: list[str], newest_id: str | None) -> Decision:
    reasons = list(rule_reasons)
    if backup.image_id == newest_id:
        reasons.append("newest backup")
    if backup.held:
        reasons.append("held")
    if backup.state == "pending":
        reasons.append("pending")
    if backup.in_use:
        reasons.append("in use")
    if reasons:
        return Decision(backup.image_id, keep=True, reasons=tuple(reasons))
    return Decision(
        backup.image_id, keep=False, reasons=("failed",) if backup.state == "failed" else ("expired",)
    )
