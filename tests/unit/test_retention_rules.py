"""Retention expressions and keep/delete decisions (SPEC §4), as a user reads them in reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amikeeper.retention_rules import (
    Backup,
    BackupState,
    Decision,
    Duration,
    DurationError,
    InvalidBackupError,
    RetentionError,
    RetentionRules,
    parse_retention,
    select,
)

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    """An aware UTC instant from 'YYYY-MM-DDTHH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def available(image_id: str, created: str, *, held: bool = False, in_use: bool = False) -> Backup:
    return Backup(image_id, at(created), "available", held=held, in_use=in_use)


def daily_backups(first: str, count: int) -> list[Backup]:
    """One available backup a day, image id 'ami-YYYYMMDD', starting at the instant given."""
    start = at(first)
    return [
        Backup(f"ami-{(start + timedelta(days=n)):%Y%m%d}", start + timedelta(days=n), "available")
        for n in range(count)
    ]


def kept(decisions: list[Decision]) -> list[str]:
    return [decision.image_id for decision in decisions if decision.keep]


def reasons_by_id(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {decision.image_id: decision.reasons for decision in decisions}


def item_reasons(decision: Decision) -> tuple[str, ...]:
    """The reasons that come from the expression's items, not from protections or deletion."""
    not_from_items = {"newest backup", "held", "pending", "in use", "expired", "failed"}
    return tuple(reason for reason in decision.reasons if reason not in not_from_items)


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily=7 weekly=4 monthly=6", RetentionRules(daily=7, weekly=4, monthly=6)),
        ("monthly=6,daily=7, weekly=4", RetentionRules(daily=7, weekly=4, monthly=6)),
        ("  DAILY=7  Weekly = 4 ,, ", RetentionRules(daily=7, weekly=4)),
        ("7", RetentionRules(last=7)),
        ("14d", RetentionRules(within=Duration(days=14))),
        ("7, 14d", RetentionRules(last=7, within=Duration(days=14))),
        ("last=3 hourly=24 yearly=2", RetentionRules(last=3, hourly=24, yearly=2)),
        ("within=36h", RetentionRules(within=Duration(hours=36))),
        ("within=8w", RetentionRules(within=Duration(weeks=8))),
        ("within=1Y6M", RetentionRules(within=Duration(years=1, months=6))),
        ("within=12h2d", RetentionRules(within=Duration(days=2, hours=12))),
        ("daily=007", RetentionRules(daily=7)),
    ],
)
def test_valid_expressions_parse_to_their_rules(text: str, expected: RetentionRules) -> None:
    # Given a retention expression as an operator would type it
    # When it is parsed
    rules = parse_retention(text)
    # Then it means exactly the expected rules
    assert rules == expected


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("daily=7 weekly=4 monthly=6", "daily=7 weekly=4 monthly=6"),
        ("Monthly=6, DAILY=7", "daily=7 monthly=6"),
        ("14d 7", "last=7 within=14d"),
        ("within=12h2d1y", "within=1y2d12h"),
        ("within=1y0m", "within=1y"),
    ],
)
def test_expression_is_normalised_for_reports(text: str, normalised: str) -> None:
    # Given an expression in any spelling / When parsed / Then it reads back in one canonical form
    assert parse_retention(text).expression == normalised
    assert str(parse_retention(text)) == normalised


@pytest.mark.parametrize(
    ("text", "item", "why"),
    [
        ("", None, "is empty"),
        ("   ", None, "is empty"),
        (" , ,", None, "is empty"),
        ("daily=7 bogus=1", "bogus=1", "unknown item 'bogus'"),
        ("dayly=7", "dayly=7", "unknown item 'dayly'"),
        ("daily=7 daily=3", "daily=3", "daily is given more than once"),
        ("7 last=2", "last=2", "last is given more than once"),
        ("14d within=7d", "within=7d", "within is given more than once"),
        ("daily=0", "daily=0", "at least 1"),
        ("0", "0", "at least 1"),
        ("daily=-1", "daily=-1", "at least 1"),
        ("daily=x", "daily=x", "'x' is not a whole number"),
        ("daily=1.5", "daily=1.5", "'1.5' is not a whole number"),
        ("daily=", "daily=", "'' is not a whole number"),
        ("daily", "daily", "needs a value, e.g. daily=7"),
        ("within=14x", "within=14x", "unknown unit 'x'"),
        ("within=0d", "within=0d", "must be longer than zero"),
        ("within=1d1d", "within=1d1d", "unit 'd' is given twice"),
        ("within=", "within=", "is empty"),
        ("within=d", "within=d", "is not a duration"),
        ("within=7", "within=7", "is not a duration"),
        ("14x", "14x", "unknown unit 'x'"),
        ("=7", "=7", "no item name"),
        ("daily=7=1", "daily=7=1", "not a whole number"),
        ("7.5", "7.5", "is not an item"),
        ("keep everything", "keep", "is not an item"),
        ("\u00b2", "\u00b2", "is not an item"),
    ],
)
def test_invalid_expressions_are_rejected_naming_item_and_reason(
    text: str, item: str | None, why: str
) -> None:
    # Given an expression that cannot be used
    # When it is parsed
    with pytest.raises(RetentionError) as raised:
        parse_retention(text)
    # Then the error names the expression, the offending item and why, and nothing is guessed
    error = raised.value
    assert isinstance(error, ValueError)
    assert error.expression == text
    assert error.item == item
    assert why in str(error)
    assert repr(text) in str(error)


def test_rules_built_in_code_carry_their_normalised_expression() -> None:
    # Given rules constructed directly / Then they read like the parsed expression and parse back equal
    rules = RetentionRules(monthly=6, daily=7, within=Duration(weeks=2))
    assert rules.expression == "daily=7 monthly=6 within=2w"
    assert parse_retention(rules.expression) == rules


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (RetentionRules, "keeps nothing"),
        (lambda: RetentionRules(daily=0), "at least 1"),
        (lambda: RetentionRules(last=True), "at least 1"),
    ],
)
def test_rules_that_keep_nothing_cannot_be_built(build: Callable[[], object], why: str) -> None:
    with pytest.raises(RetentionError, match=why):
        build()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("36h", Duration(hours=36)),
        ("14d", Duration(days=14)),
        ("8w", Duration(weeks=8)),
        ("1y", Duration(years=1)),
        ("1y6m", Duration(years=1, months=6)),
        ("1y2m3w4d5h", Duration(1, 2, 3, 4, 5)),
    ],
)
def test_durations_parse_and_print_back(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected
    assert str(expected) == text


def test_a_zero_duration_is_rejected() -> None:
    with pytest.raises(DurationError, match="longer than zero"):
        Duration()


# --- documented examples ---------------------------------------------------------------------------


def test_thirty_daily_backups_with_the_default_policy() -> None:
    # Given one backup a day at 03:00 UTC from 31 Oct to 29 Nov 2026 (29 Nov is a Sunday)
    backups = daily_backups("2026-10-31T03:00", 30)
    # When the default retention applies
    decisions = select(backups, parse_retention("daily=7 weekly=4 monthly=6"), UTC_ZONE)
    # Then the last 7 days, the Sundays ending the 3 weeks before, and the newest of October survive
    assert kept(decisions) == [
        "ami-20261031",
        "ami-20261108",
        "ami-20261115",
        "ami-20261122",
        "ami-20261123",
        "ami-20261124",
        "ami-20261125",
        "ami-20261126",
        "ami-20261127",
        "ami-20261128",
        "ami-20261129",
    ]
    reasons = reasons_by_id(decisions)
    assert reasons["ami-20261129"] == (
        "daily 2026-11-29",
        "weekly 2026-W48",
        "monthly 2026-11",
        "newest backup",
    )
    assert reasons["ami-20261122"] == ("weekly 2026-W47",)
    assert reasons["ami-20261031"] == ("monthly 2026-10",)
    assert reasons["ami-20261121"] == ("expired",)
    assert len([d for d in decisions if not d.keep]) == 19


def test_several_backups_a_day_keep_the_newest_of_each_day() -> None:
    # Given a backup every 6 hours for three days
    backups = [
        available(f"ami-{day}-{hour:02d}", f"2026-11-{day}T{hour:02d}:00")
        for day in (27, 28, 29)
        for hour in (0, 6, 12, 18)
    ]
    # When daily=2 applies / Then only the 18:00 backups of the last two days survive
    assert kept(select(backups, parse_retention("daily=2"), UTC_ZONE)) == ["ami-28-18", "ami-29-18"]
    # When last=3 applies / Then the three newest survive, ranked
    decisions = select(backups, parse_retention("last=3"), UTC_ZONE)
    assert kept(decisions) == ["ami-29-06", "ami-29-12", "ami-29-18"]
    assert reasons_by_id(decisions)["ami-29-06"] == ("last #3",)
    assert reasons_by_id(decisions)["ami-29-18"] == ("last #1", "newest backup")


def test_days_without_a_backup_are_skipped_not_counted() -> None:
    # Given backups on 1, 5, 9 and 20 November only
    backups = [available(f"ami-{day}", f"2026-11-{day:02d}T03:00") for day in (1, 5, 9, 20)]
    # When daily=3 applies / Then the three most recent days that have a backup are kept
    assert kept(select(backups, parse_retention("daily=3"), UTC_ZONE)) == ["ami-5", "ami-9", "ami-20"]


def test_within_keeps_the_last_fourteen_days_counted_from_the_newest_backup() -> None:
    # Given a daily backup from 1 to 29 November
    backups = daily_backups("2026-11-01T03:00", 29)
    # When within=14d (or its shorthand 14d) applies
    decisions = select(backups, parse_retention("within=14d"), UTC_ZONE)
    # Then 16..29 November survive; 15 November, exactly 14 days older than the newest, does not
    assert kept(decisions) == [f"ami-202611{day}" for day in range(16, 30)]
    assert reasons_by_id(decisions)["ami-20261116"] == ("within 14d",)
    assert select(backups, parse_retention("14d"), UTC_ZONE) == decisions


def test_a_stalled_schedule_never_empties_an_instance() -> None:
    # Given backups that stopped on 20 January (whenever retention runs later)
    backups = daily_backups("2026-01-01T03:00", 20)
    # When within=7d applies / Then the week before the last backup is still kept
    assert kept(select(backups, parse_retention("7d"), UTC_ZONE)) == [
        f"ami-202601{day}" for day in range(14, 21)
    ]


def test_shorthand_number_means_last() -> None:
    backups = daily_backups("2026-11-01T03:00", 10)
    assert select(backups, parse_retention("3"), UTC_ZONE) == select(
        backups, parse_retention("last=3"), UTC_ZONE
    )
    assert kept(select(backups, parse_retention("3"), UTC_ZONE)) == [
        "ami-20261108",
        "ami-20261109",
        "ami-20261110",
    ]


def test_a_backup_kept_by_several_items_lists_every_reason() -> None:
    backups = daily_backups("2026-11-20T03:00", 10)
    decisions = select(backups, parse_retention("2, daily=3, 3d"), UTC_ZONE)
    assert reasons_by_id(decisions)["ami-20261128"] == ("last #2", "daily 2026-11-28", "within 3d")
    assert reasons_by_id(decisions)["ami-20261127"] == ("daily 2026-11-27", "within 3d")
    assert reasons_by_id(decisions)["ami-20261126"] == ("expired",)


def test_within_a_month_from_the_31st_reaches_the_end_of_february() -> None:
    # Given a daily backup at noon through February and March 2026
    backups = daily_backups("2026-02-01T12:00", 59)
    assert backups[-1].created == at("2026-03-31T12:00")
    # When within=1m applies
    survivors = kept(select(backups, parse_retention("within=1m"), UTC_ZONE))
    # Then all of March survives; 28 Feb noon, exactly one month back, does not
    assert survivors == [f"ami-202603{day:02d}" for day in range(1, 32)]


def test_an_absurdly_long_window_keeps_everything() -> None:
    backups = daily_backups("2026-11-01T03:00", 5)
    assert kept(select(backups, parse_retention("within=5000y"), UTC_ZONE)) == [b.image_id for b in backups]


# --- always kept, always deleted ---------------------------------------------------------------------


def test_protections_and_deletions_are_reported_with_their_reasons() -> None:
    # Given backups in every state and protection, with a policy that keeps only the newest
    backups = [
        available("ami-old", "2026-11-01T03:00"),
        available("ami-held", "2026-11-02T03:00", held=True),
        Backup("ami-pending", at("2026-11-30T03:00"), "pending"),
        Backup("ami-failed", at("2026-11-03T03:00"), "failed"),
        Backup("ami-failed-held", at("2026-11-04T03:00"), "failed", held=True),
        available("ami-used", "2026-11-05T03:00", in_use=True),
        available("ami-newest", "2026-11-29T03:00"),
    ]
    # When last=1 applies
    decisions = select(backups, parse_retention("last=1"), UTC_ZONE)
    # Then each decision says why, in the input order
    assert decisions == [
        Decision("ami-old", False, ("expired",)),
        Decision("ami-held", True, ("held",)),
        Decision("ami-pending", True, ("pending",)),
        Decision("ami-failed", False, ("failed",)),
        Decision("ami-failed-held", True, ("held",)),
        Decision("ami-used", True, ("in use",)),
        Decision("ami-newest", True, ("last #1", "newest backup")),
    ]
    assert [d.image_id for d in decisions if d.kept_only_because_in_use] == ["ami-used"]


def test_in_use_is_only_an_extra_reason_when_something_else_keeps_the_backup() -> None:
    backups = [
        available("ami-a", "2026-11-27T03:00", in_use=True),
        available("ami-b", "2026-11-28T03:00", held=True, in_use=True),
        available("ami-c", "2026-11-29T03:00", in_use=True),
        Backup("ami-d", at("2026-11-30T03:00"), "pending", in_use=True),
    ]
    decisions = select(backups, parse_retention("daily=1"), UTC_ZONE)
    assert reasons_by_id(decisions) == {
        "ami-a": ("in use",),
        "ami-b": ("held", "in use"),
        "ami-c": ("daily 2026-11-29", "newest backup", "in use"),
        "ami-d": ("pending", "in use"),
    }
    assert [d.kept_only_because_in_use for d in decisions] == [True, False, False, False]


def test_newest_backup_means_newest_available_not_newest_pending() -> None:
    backups = [
        available("ami-done", "2026-11-28T03:00"),
        Backup("ami-making", at("2026-11-29T03:00"), "pending"),
    ]
    decisions = select(backups, parse_retention("within=1h"), UTC_ZONE)
    assert reasons_by_id(decisions) == {
        "ami-done": ("within 1h", "newest backup"),
        "ami-making": ("pending",),
    }


def test_without_newest_protection_the_reason_disappears_but_the_rules_still_keep_it() -> None:
    backups = daily_backups("2026-11-01T03:00", 3)
    decisions = select(backups, parse_retention("last=1"), UTC_ZONE, protect_newest=False)
    assert reasons_by_id(decisions)["ami-20261103"] == ("last #1",)


def test_held_backups_fill_their_period_like_any_other() -> None:
    # Given two backups on one day, the later on legal hold
    backups = [
        available("ami-morning", "2026-11-29T03:00"),
        available("ami-evening", "2026-11-29T21:00", held=True),
    ]
    # When daily=1 applies
    decisions = select(backups, parse_retention("daily=1"), UTC_ZONE)
    # Then the held backup stands for that day and the other is not kept in its place
    assert reasons_by_id(decisions) == {
        "ami-morning": ("expired",),
        "ami-evening": ("daily 2026-11-29", "newest backup", "held"),
    }


def test_only_failed_backups_and_no_available_ones() -> None:
    backups = [
        Backup("ami-f1", at("2026-11-28T03:00"), "failed"),
        Backup("ami-p", at("2026-11-29T03:00"), "pending"),
    ]
    assert select(backups, parse_retention("daily=7"), UTC_ZONE) == [
        Decision("ami-f1", False, ("failed",)),
        Decision("ami-p", True, ("pending",)),
    ]
    assert select([], parse_retention("daily=7"), UTC_ZONE) == []


def test_equal_creation_times_are_broken_by_image_id_whatever_the_input_order() -> None:
    # Given two backups created at the same instant
    one = available("ami-aaa", "2026-11-29T03:00")
    two = available("ami-bbb", "2026-11-29T03:00")
    # When last=1 applies in either order
    forwards = select([one, two], parse_retention("last=1"), UTC_ZONE)
    backwards = select([two, one], parse_retention("last=1"), UTC_ZONE)
    # Then the larger image id counts as newer both times, and output follows input order
    assert forwards == [
        Decision("ami-aaa", False, ("expired",)),
        Decision("ami-bbb", True, ("last #1", "newest backup")),
    ]
    assert backwards == forwards[::-1]


def test_creation_times_in_other_offsets_compare_as_instants() -> None:
    # 04:00+02:00 is 02:00 UTC, earlier than 03:00 UTC despite the larger wall-clock reading
    earlier = Backup("ami-z", datetime.fromisoformat("2026-11-29T04:00+02:00"), "available")
    later = available("ami-a", "2026-11-29T03:00")
    assert kept(select([earlier, later], parse_retention("last=1"), UTC_ZONE)) == ["ami-a"]


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda: Backup("ami-1", datetime(2026, 11, 29), "available"), "has no time zone"),  # noqa: DTZ001
        (lambda: Backup("ami-1", at("2026-11-29T03:00"), "deregistered"), "'deregistered' is not one of"),  # type: ignore[arg-type]
        (lambda: Backup("", at("2026-11-29T03:00"), "available"), "needs an image id"),
    ],
)
def test_backups_retention_cannot_reason_about_are_rejected(build: Callable[[], object], why: str) -> None:
    with pytest.raises(InvalidBackupError, match=why):
        build()


def test_a_backup_listed_twice_is_rejected() -> None:
    backup = available("ami-1", "2026-11-29T03:00")
    with pytest.raises(InvalidBackupError, match="ami-1 is listed more than once"):
        select([backup, backup], parse_retention("7"), UTC_ZONE)


# --- calendar edges --------------------------------------------------------------------------------


def test_days_are_local_days_in_berlin_across_the_spring_change() -> None:
    # Given backups around the night Berlin moves to summer time (29 March 2026)
    backups = [
        available("ami-a", "2026-03-28T22:30"),  # 28 Mar 23:30 CET
        available("ami-b", "2026-03-28T23:30"),  # 29 Mar 00:30 CET
        available("ami-c", "2026-03-29T21:30"),  # 29 Mar 23:30 CEST
        available("ami-d", "2026-03-29T22:30"),  # 30 Mar 00:30 CEST
    ]
    rules = parse_retention("daily=3")
    # When daily=3 applies in Berlin / Then the newest of each Berlin day survives
    berlin = select(backups, rules, BERLIN)
    assert kept(berlin) == ["ami-a", "ami-c", "ami-d"]
    assert reasons_by_id(berlin)["ami-c"] == ("daily 2026-03-29",)
    # When it applies in UTC / Then the same backups group into two UTC days instead
    assert kept(select(backups, rules, UTC_ZONE)) == ["ami-b", "ami-d"]


def test_berlin_spring_day_has_twenty_three_hours_and_no_two_oclock() -> None:
    # Given an hourly backup from 28 Mar 23:00 CET to 30 Mar 00:00 CEST (25 backups, 23 of them on 29 Mar)
    start = at("2026-03-28T22:00")
    backups = [Backup(f"ami-{n:02d}", start + timedelta(hours=n), "available") for n in range(25)]
    # When daily=3 applies / Then one backup per Berlin day survives: 28, 29 and 30 March
    decisions = select(backups, parse_retention("daily=3"), BERLIN)
    assert kept(decisions) == ["ami-00", "ami-23", "ami-24"]
    assert reasons_by_id(decisions)["ami-23"] == ("daily 2026-03-29",)
    # When hourly=25 applies / Then every hour is its own period and 02:00 never appears
    labels = [reason for d in select(backups, parse_retention("hourly=25"), BERLIN) for reason in d.reasons]
    hourly = [label for label in labels if label.startswith("hourly")]
    assert len(hourly) == 25
    assert "hourly 2026-03-29T01:00+01:00" in hourly
    assert "hourly 2026-03-29T03:00+02:00" in hourly
    assert not [label for label in hourly if label.startswith("hourly 2026-03-29T02")]


def test_the_repeated_hour_in_new_york_counts_as_two_hours() -> None:
    # Given hourly backups through the night New York returns to standard time (1 Nov 2026, 06:00 UTC)
    backups = [available(f"ami-{hour}", f"2026-11-01T0{hour}:30") for hour in range(3, 9)]
    # When hourly=6 applies / Then all six survive, both 01:00 hours labelled by their offset
    decisions = select(backups, parse_retention("hourly=6"), NEW_YORK)
    assert kept(decisions) == [b.image_id for b in backups]
    assert [d.reasons[0] for d in decisions] == [
        "hourly 2026-10-31T23:00-04:00",
        "hourly 2026-11-01T00:00-04:00",
        "hourly 2026-11-01T01:00-04:00",
        "hourly 2026-11-01T01:00-05:00",
        "hourly 2026-11-01T02:00-05:00",
        "hourly 2026-11-01T03:00-05:00",
    ]
    # When hourly=3 applies / Then the three most recent real hours survive
    assert kept(select(backups, parse_retention("hourly=3"), NEW_YORK)) == ["ami-6", "ami-7", "ami-8"]


def test_new_york_autumn_day_has_twenty_five_hours() -> None:
    backups = [
        available("ami-a", "2026-11-01T03:30"),  # 31 Oct 23:30 EDT
        available("ami-b", "2026-11-01T04:30"),  # 1 Nov 00:30 EDT
        available("ami-c", "2026-11-02T04:30"),  # 1 Nov 23:30 EST, 24 h 60 min later, same day
        available("ami-d", "2026-11-02T05:30"),  # 2 Nov 00:30 EST
    ]
    decisions = select(backups, parse_retention("daily=2"), NEW_YORK)
    assert kept(decisions) == ["ami-c", "ami-d"]
    assert reasons_by_id(decisions)["ami-c"] == ("daily 2026-11-01",)
    assert kept(select(backups, parse_retention("daily=2"), UTC_ZONE)) == ["ami-b", "ami-d"]


def test_iso_week_53_and_the_turn_of_the_year() -> None:
    # Given a backup every noon from Sat 26 Dec 2026 to Tue 5 Jan 2027 (2026 has an ISO week 53: 28 Dec - 3 Jan)
    backups = daily_backups("2026-12-26T12:00", 11)
    # When weekly, monthly and yearly items apply
    decisions = select(backups, parse_retention("weekly=3 monthly=2 yearly=2"), UTC_ZONE)
    # Then the week survivors are the Sundays ending W52 and W53 and the newest of 2027-W01
    assert {d.image_id: d.reasons for d in decisions if d.keep} == {
        "ami-20261227": ("weekly 2026-W52",),
        "ami-20261231": ("monthly 2026-12", "yearly 2026"),
        "ami-20270103": ("weekly 2026-W53",),
        "ami-20270105": ("weekly 2027-W01", "monthly 2027-01", "yearly 2027", "newest backup"),
    }


def test_new_year_arrives_at_local_midnight() -> None:
    # Given backups at 22:30 and 23:30 UTC on 31 Dec 2026
    backups = [available("ami-early", "2026-12-31T22:30"), available("ami-late", "2026-12-31T23:30")]
    rules = parse_retention("yearly=2 weekly=2")
    # When yearly=2 applies in Berlin / Then 23:30 UTC is already 2027 there, and both years are kept
    assert reasons_by_id(select(backups, rules, BERLIN)) == {
        "ami-early": ("yearly 2026",),
        "ami-late": ("weekly 2026-W53", "yearly 2027", "newest backup"),
    }
    # When it applies in New York / Then both are still 2026 and only the later is kept
    assert kept(select(backups, rules, NEW_YORK)) == ["ami-late"]


def test_within_days_are_calendar_days_across_a_dst_change() -> None:
    # Given the newest backup at 12:00 CEST on 29 Mar 2026, the day Berlin lost an hour
    backups = [
        available("ami-23h30", "2026-03-28T10:30"),  # 11:30 CET the day before, 23.5 h earlier
        available("ami-22h30", "2026-03-28T11:30"),  # 12:30 CET the day before, 22.5 h earlier
        available("ami-newest", "2026-03-29T10:00"),
    ]
    # When within=1d applies / Then one calendar day back is 12:00 CET, so 11:30 CET has expired
    assert kept(select(backups, parse_retention("within=1d"), BERLIN)) == ["ami-22h30", "ami-newest"]
    # When within=24h applies / Then exact hours reach further back
    assert kept(select(backups, parse_retention("within=24h"), BERLIN)) == [b.image_id for b in backups]


@pytest.mark.parametrize(
    ("duration", "newest", "zone", "window_start"),
    [
        ("1y6m", "2026-08-31T12:00", UTC_ZONE, "2025-02-28T12:00"),
        ("1m", "2024-03-31T00:00", UTC_ZONE, "2024-02-29T00:00"),
        ("2w", "2026-11-29T03:00", UTC_ZONE, "2026-11-15T03:00"),
        ("1d12h", "2026-11-29T03:00", UTC_ZONE, "2026-11-27T15:00"),
        # 29 Mar 02:30 never happens in Berlin: the earlier reading (01:30 CET = 00:30 UTC) is used
        ("1d", "2026-03-30T00:30", BERLIN, "2026-03-29T00:30"),
        # 25 Oct 02:30 happens twice in Berlin: the earlier (CEST, 00:30 UTC) is used
        ("1d", "2026-10-26T01:30", BERLIN, "2026-10-25T00:30"),
    ],
)
def test_window_start_uses_calendar_arithmetic(
    duration: str, newest: str, zone: ZoneInfo, window_start: str
) -> None:
    assert Duration.parse(duration).back_from(at(newest), zone) == at(window_start)


# --- properties ------------------------------------------------------------------------------------

ZONES = tuple(
    ZoneInfo(name)
    for name in ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
)
# Anchors sit just before DST changes and the week-53 new year, so generated backups straddle them.
ANCHORS = (at("2026-03-27T00:00"), at("2026-10-23T00:00"), at("2026-10-30T00:00"), at("2026-12-26T00:00"))
STEPS = (timedelta(minutes=20), timedelta(hours=3), timedelta(days=1), timedelta(days=9))
STATES: tuple[BackupState, ...] = ("available", "available", "available", "pending", "failed")
RARELY = st.sampled_from((False, False, False, True))

counts = st.integers(min_value=1, max_value=8)
durations = (
    st.tuples(*(st.integers(0, limit) for limit in (1, 3, 3, 10, 48)))
    .filter(any)
    .map(lambda parts: Duration(*parts))
)


@st.composite
def backup_sets(draw: st.DrawFn) -> list[Backup]:
    anchor = draw(st.sampled_from(ANCHORS))
    step = draw(st.sampled_from(STEPS))
    specs = draw(
        st.lists(st.tuples(st.integers(0, 60), st.sampled_from(STATES), RARELY, RARELY), max_size=30)
    )
    return [
        Backup(f"ami-{index:03d}", anchor + step * offset, state, held=held, in_use=in_use)
        for index, (offset, state, held, in_use) in enumerate(specs)
    ]


rule_sets = (
    st.tuples(*(st.none() | counts for _ in range(6)), st.none() | durations)
    .filter(lambda items: any(item is not None for item in items))
    .map(lambda items: RetentionRules(*items))
)


@st.composite
def widened(draw: st.DrawFn, rules: RetentionRules) -> RetentionRules:
    """The same rules with one item added or made more generous."""
    key = draw(st.sampled_from(("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")))
    current = getattr(rules, key)
    if key == "within":
        extra = draw(durations)
        if current is None:
            return replace(rules, within=extra)
        return replace(
            rules,
            within=Duration(
                current.years + extra.years,
                current.months + extra.months,
                current.weeks + extra.weeks,
                current.days + extra.days,
                current.hours + extra.hours,
            ),
        )
    more: dict[str, Any] = {key: (current or 0) + draw(counts)}
    return replace(rules, **more)


PROPERTY_SETTINGS = settings(max_examples=250, deadline=None)


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES))
def test_newest_available_backup_is_always_kept(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo
) -> None:
    decisions = reasons_by_id(select(backups, rules, tz))
    candidates = [b for b in backups if b.state == "available"]
    if candidates:
        newest = max(candidates, key=lambda b: (b.created, b.image_id))
        assert "newest backup" in decisions[newest.image_id]


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES), st.booleans())
def test_held_pending_and_in_use_backups_are_never_deleted(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo, protect_newest: bool
) -> None:
    for backup, decision in zip(
        backups, select(backups, rules, tz, protect_newest=protect_newest), strict=True
    ):
        assert decision.image_id == backup.image_id
        if backup.held or backup.in_use or backup.state == "pending":
            assert decision.keep
        if not decision.keep:
            assert decision.reasons == (("failed",) if backup.state == "failed" else ("expired",))
        if decision.kept_only_because_in_use:
            assert backup.in_use


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES))
def test_selecting_again_over_the_survivors_deletes_nothing_more(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo
) -> None:
    survivors_by_id = set(kept(select(backups, rules, tz)))
    survivors = [b for b in backups if b.image_id in survivors_by_id]
    assert all(decision.keep for decision in select(survivors, rules, tz))


@PROPERTY_SETTINGS
@given(
    backup_sets(),
    rule_sets.flatmap(lambda rules: st.tuples(st.just(rules), widened(rules))),
    st.sampled_from(ZONES),
)
def test_a_more_generous_policy_never_deletes_more(
    backups: list[Backup], rule_pair: tuple[RetentionRules, RetentionRules], tz: ZoneInfo
) -> None:
    rules, more_generous = rule_pair
    assert set(kept(select(backups, rules, tz))) <= set(kept(select(backups, more_generous, tz)))


@PROPERTY_SETTINGS
@given(
    backup_sets().flatmap(lambda b: st.tuples(st.just(b), st.permutations(b))),
    rule_sets,
    st.sampled_from(ZONES),
)
def test_decisions_do_not_depend_on_input_order(
    orders: tuple[list[Backup], list[Backup]], rules: RetentionRules, tz: ZoneInfo
) -> None:
    original, shuffled = orders
    assert reasons_by_id(select(original, rules, tz)) == reasons_by_id(select(shuffled, rules, tz))
    assert [d.image_id for d in select(shuffled, rules, tz)] == [b.image_id for b in shuffled]


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES))
def test_holds_and_use_never_change_what_the_items_keep(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo
) -> None:
    # Documented choice: held and in-use backups fill periods like any other, so the flags only add.
    plain = [replace(b, held=False, in_use=False) for b in backups]
    flagged_reasons = [item_reasons(d) for d in select(backups, rules, tz)]
    plain_reasons = [item_reasons(d) for d in select(plain, rules, tz)]
    assert flagged_reasons == plain_reasons


@PROPERTY_SETTINGS
@given(
    rule_sets.flatmap(lambda rules: st.tuples(st.just(rules), st.permutations(rules.expression.split(" ")))),
    st.sampled_from([" ", ",", ", ", " ,  "]),
    st.booleans(),
)
def test_a_normalised_expression_parses_back_to_the_same_rules(
    rules_and_items: tuple[RetentionRules, list[str]], separator: str, upper: bool
) -> None:
    rules, items = rules_and_items
    text = separator.join(items)
    assert parse_retention(text.upper() if upper else text) == rules


# --- ageing out: as_of, for an instance that will never be backed up again ---------------------------


def test_as_of_counts_the_rules_back_from_that_moment() -> None:
    # Given ten daily backups, the newest 40 days before as_of
    newest = at("2026-10-20T03:00")
    backups = [Backup(f"ami-{n:02d}", newest - timedelta(days=n), "available") for n in range(10)]
    # When the rules are counted back from as_of
    as_of = newest + timedelta(days=40)

    def kept(text: str) -> list[str]:
        decisions = select(backups, parse_retention(text), UTC_ZONE, as_of=as_of, protect_newest=False)
        return [d.image_id for d in decisions if d.keep]

    # Then the 40 empty days use up 40 of daily=45, so 5 days are left for the backups
    assert kept("daily=45") == ["ami-00", "ami-01", "ami-02", "ami-03", "ami-04"]
    assert kept("daily=7") == []
    assert kept("within=42d") == ["ami-00", "ami-01"]
    assert kept("last=5") == []
    assert kept("monthly=2") == ["ami-00"]  # October is the month before as_of's November


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES), st.integers(0, 2000))
def test_ageing_out_keeps_nothing_more_as_time_passes_and_nothing_protected_is_lost(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo, hours_later: int
) -> None:
    if not backups:
        return
    start = max(b.created for b in backups)
    earlier = select(backups, rules, tz, protect_newest=False, as_of=start)
    later = select(backups, rules, tz, protect_newest=False, as_of=start + timedelta(hours=hours_later))
    for backup, before, after in zip(backups, earlier, later, strict=True):
        if after.keep and not (backup.held or backup.in_use or backup.state == "pending"):
            assert before.keep
        if backup.held or backup.in_use or backup.state == "pending":
            assert after.keep


@PROPERTY_SETTINGS
@given(backup_sets(), rule_sets, st.sampled_from(ZONES))
def test_long_after_every_window_only_protected_backups_remain(
    backups: list[Backup], rules: RetentionRules, tz: ZoneInfo
) -> None:
    if not backups:
        return
    far = max(b.created for b in backups) + timedelta(days=366 * 10)
    for backup, decision in zip(
        backups, select(backups, rules, tz, protect_newest=False, as_of=far), strict=True
    ):
        assert decision.keep == (backup.held or backup.in_use or backup.state == "pending")
