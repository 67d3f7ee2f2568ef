"""The daily report's RPO judgement and its two notifications, without AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amikeeper.model import INSTANCE_ID, MANAGED_BY, SLOT, Image, Instance, TagKeys
from amikeeper.naming import format_slot
from amikeeper.notifications import SIZE_MARGIN, SNS_MESSAGE_LIMIT
from amikeeper.policies import PolicyCatalog, build_catalog
from amikeeper.report import (
    DailyReport,
    RegionReport,
    assess_region,
    format_age,
    report_notifications,
)

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
TICK = timedelta(minutes=15)
PENDING_TIMEOUT = timedelta(hours=6)
KEYS = TagKeys("Backup")
DAILY_BOUND = timedelta(hours=24, minutes=15)  # daily@03:00 in UTC: 24h between slots, plus one tick
LONG_AGO = NOW - timedelta(days=90)
REGION = "eu-west-1"


def catalog(document: str | None = None) -> PolicyCatalog:
    return build_catalog("daily@03:00", "daily=7", ZoneInfo("UTC"), document)


def instance(number: int, tags: dict[str, str] | None = None, launched: datetime = LONG_AGO) -> Instance:
    return Instance(
        instance_id=f"i-{number:017x}",
        state="running",
        tags={"Name": f"host-{number}", "Backup": "true"} if tags is None else tags,
        launch_time=launched,
    )


def backup(number: int, slot: datetime, *, state: str = "available", image: int = 0) -> Image:
    return Image(
        image_id=f"ami-{number:08x}{image:09x}",
        name=f"amikeeper-i-{number:017x}-schedule-{slot:%Y%m%dT%H%MZ}",
        state=state,
        created=slot + timedelta(minutes=5),
        tags={MANAGED_BY: "amikeeper", INSTANCE_ID: f"i-{number:017x}", SLOT: format_slot(slot), "Name": "x"},
    )


def assess(
    instances: list[Instance],
    images: list[Image],
    policies: PolicyCatalog | None = None,
    region: str = REGION,
) -> RegionReport:
    return assess_region(
        region,
        instances,
        images,
        policies or catalog(),
        KEYS,
        now=NOW,
        tick=TICK,
        pending_timeout=PENDING_TIMEOUT,
    )


def report_of(*regions: RegionReport) -> DailyReport:
    return DailyReport(time=NOW, regions=regions, tick=TICK, pending_timeout=PENDING_TIMEOUT)


# --- the RPO judgement --------------------------------------------------------------------------------


def test_backup_of_todays_slot_is_within_rpo() -> None:
    # Given a daily instance whose newest backup is this morning's 03:00 slot
    region = assess([instance(1)], [backup(1, NOW - timedelta(hours=4))])
    # Then it is fine, with its age and allowance
    [status] = region.instances
    assert status.status == "ok"
    assert status.age == timedelta(hours=4)
    assert status.allowed_age == DAILY_BOUND
    assert status.schedule == "daily@03:00"


def test_backup_older_than_interval_plus_one_tick_is_a_violation() -> None:
    # Given yesterday's backup was missed: the newest is two days old
    region = assess([instance(1)], [backup(1, NOW - timedelta(days=2, hours=4))])
    [status] = region.instances
    # Then it is a violation and the reason names both ages
    assert status.status == "violation"
    assert status.reason == "newest available backup is 2d 04h old, more than the 1d 00h allowed"


def test_age_exactly_at_the_bound_is_still_within_rpo() -> None:
    at_bound = assess([instance(1)], [backup(1, NOW - DAILY_BOUND)])
    just_over = assess([instance(1)], [backup(1, NOW - DAILY_BOUND - timedelta(seconds=1))])
    assert [s.status for s in at_bound.instances] == ["ok"]
    assert [s.status for s in just_over.instances] == ["violation"]


def test_no_backup_at_all_is_a_violation_unless_the_instance_is_new() -> None:
    # Given two instances without any backup, one launched long ago, one an hour ago
    region = assess([instance(1), instance(2, launched=NOW - timedelta(hours=1))], [])
    # Then the old one is a violation, the new one is not (yet)
    assert [(s.instance_id, s.status, s.reason) for s in region.instances] == [
        (f"i-{1:017x}", "violation", "no available backup"),
        (f"i-{2:017x}", "new", "launched recently; its first backup is not due yet"),
    ]


def test_only_available_backups_count_and_the_newest_one_is_named() -> None:
    # Given an old available backup, and newer ones that are pending and failed
    images = [
        backup(1, NOW - timedelta(days=3), image=1),
        backup(1, NOW - timedelta(days=2), image=2),
        backup(1, NOW - timedelta(hours=4), state="failed", image=3),
        backup(1, NOW - timedelta(hours=1), state="pending", image=4),
    ]
    [status] = assess([instance(1)], images).instances
    # Then the newest *available* one decides, and it is too old
    assert status.status == "violation"
    assert status.image_id == images[1].image_id
    assert status.backup_time == NOW - timedelta(days=2)


def test_age_counts_from_the_slot_not_the_creation_time() -> None:
    # Given a backup of the 03:00 slot created at 03:05
    [status] = assess([instance(1)], [backup(1, NOW - timedelta(hours=4))]).instances
    assert status.backup_time == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def test_the_instances_own_schedule_sets_its_bound() -> None:
    # Given an hourly instance (tag override) and a gold instance every 6h (named policy)
    policies = catalog('{"gold": {"schedule": "every 6h"}}')
    hourly = instance(1, {"Backup": "true", "Backup:Schedule": "hourly"})
    gold = instance(2, {"Backup": "gold"})
    images = [backup(1, NOW - timedelta(hours=2)), backup(2, NOW - timedelta(hours=2))]
    region = assess([hourly, gold], images, policies)
    # Then two hours is too old for hourly, fine for every 6h
    assert [(s.policy, s.status, s.allowed_age) for s in region.instances] == [
        ("default", "violation", timedelta(hours=1, minutes=15)),
        ("gold", "ok", timedelta(hours=6, minutes=15)),
    ]


def test_invalid_tags_are_listed_apart_and_opted_out_instances_not_at_all() -> None:
    broken = instance(1, {"Backup": "true", "Backup:Schedule": "sometimes"})
    opted_out = instance(2, {"Backup": "no"})
    region = assess([broken, opted_out], [])
    [status] = region.instances
    assert status.status == "invalid"
    assert status.reason is not None
    assert "Backup:Schedule='sometimes'" in status.reason


def test_pending_longer_than_the_timeout_is_stale() -> None:
    # Given two pending AMIs, created 7h and 5h ago, with a 6h timeout
    old = backup(1, NOW - timedelta(hours=7, minutes=5), state="pending", image=1)
    recent = backup(1, NOW - timedelta(hours=5, minutes=5), state="pending", image=2)
    region = assess([instance(1)], [old, recent])
    # Then only the older one is stale, with its age from creation
    assert [(s.image_id, s.age) for s in region.stale] == [(old.image_id, timedelta(hours=7))]


@given(
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    launched_ago=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    has_backup=st.booleans(),
)
def test_status_follows_the_rule_for_any_age(
    age: timedelta, launched_ago: timedelta, has_backup: bool
) -> None:
    # Property: ok iff the newest backup is within the bound; otherwise new iff launched within it
    images = [backup(1, NOW - age)] if has_backup else []
    [status] = assess([instance(1, launched=NOW - launched_ago)], images).instances
    if has_backup and age <= DAILY_BOUND:
        assert status.status == "ok"
    elif launched_ago <= DAILY_BOUND:
        assert status.status == "new"
    else:
        assert status.status == "violation"


# --- the notifications ---------------------------------------------------------------------------------


def test_all_within_rpo_sends_one_info_report_and_no_violation() -> None:
    region = assess([instance(1), instance(2)], [backup(1, NOW - timedelta(hours=4)), backup(2, NOW)])
    [daily] = report_notifications(report_of(region))
    assert (daily.event, daily.severity) == ("report.daily", "info")
    assert daily.subject_line() == "amikeeper daily report: all 2 instance(s) within RPO in eu-west-1"
    assert daily.document()["instances_total"] == 2


def test_violations_send_a_warning_report_and_one_error_listing_them() -> None:
    # Given one healthy instance and two in violation, in two regions
    west = assess([instance(1), instance(2)], [backup(1, NOW - timedelta(hours=4))])
    east = assess([instance(3)], [backup(3, NOW - timedelta(days=5))], region="us-east-1")
    daily, violation = report_notifications(report_of(west, east))
    # Then the report is a warning listing problems first (no backup at all, then the oldest), and one
    # rpo.violation (error) names both
    assert (daily.event, daily.severity) == ("report.daily", "warning")
    assert daily.subject_line() == "amikeeper daily report: 2 RPO violation(s) in eu-west-1, us-east-1"
    assert [row[-1] for row in daily.table[1:]] == ["violation", "violation", "ok"]
    assert (violation.event, violation.severity) == ("rpo.violation", "error")
    assert violation.subject_line() == "amikeeper: 2 instance(s) missed their RPO in eu-west-1, us-east-1"
    document = violation.document()
    assert document["violations_total"] == 2
    assert [(v["region"], v["instance_id"]) for v in document["violations"]] == [
        ("eu-west-1", f"i-{2:017x}"),
        ("us-east-1", f"i-{3:017x}"),
    ]
    assert document["violations"][0]["reason"] == "no available backup"
    assert document["violations"][1]["age_seconds"] == 5 * 24 * 3600


def test_stale_pending_and_unreadable_regions_make_a_warning_without_a_violation() -> None:
    stale = backup(1, NOW - timedelta(hours=10), state="pending")
    west = assess([instance(1)], [backup(1, NOW - timedelta(hours=4), image=9), stale])
    broken = RegionReport("us-east-1", error="ClientError: UnauthorizedOperation")
    [daily] = report_notifications(report_of(west, broken))
    assert daily.severity == "warning"
    assert "1 stale AMI(s)" in daily.subject_line()
    assert "1 region(s) unreadable" in daily.subject_line()
    assert "Region us-east-1 could not be read: ClientError: UnauthorizedOperation" in daily.text()
    assert stale.image_id in daily.text()
    assert daily.document()["stale_pending"][0]["image_id"] == stale.image_id


def test_a_fleet_too_big_for_one_sns_message_is_cut_to_fit_problems_first() -> None:
    # Given 3,000 instances, 40 of them in violation
    fleet = [instance(n) for n in range(3000)]
    images = [backup(n, NOW - timedelta(hours=4)) for n in range(40, 3000)]
    daily, violation = report_notifications(report_of(assess(fleet, images)))
    # Then both messages fit SNS, say how many they list, and list every violation first
    for note in (daily, violation):
        assert len(note.sns_message().encode()) <= SNS_MESSAGE_LIMIT - SIZE_MARGIN
    document = daily.document()
    assert document["instances_total"] == 3000
    assert 40 < document["instances_listed"] < 3000
    assert [i["status"] for i in document["instances"][:40]] == ["violation"] * 40
    assert f"{3000 - document['instances_listed']} more not listed" in daily.text()
    assert violation.document()["violations_listed"] == 40
    machine = json.loads(json.loads(daily.sns_message())["default"])
    assert machine["instances_listed"] == document["instances_listed"]


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(minutes=42), "42m"),
        (timedelta(hours=5, minutes=7), "5h 07m"),
        (timedelta(days=2, hours=3, minutes=59), "2d 03h"),
        (timedelta(seconds=-30), "0m"),
    ],
)
def test_ages_read_like_a_person_would_write_them(span: timedelta, text: str) -> None:
    assert format_age(span) == text


# --- disaster-recovery copies (SPEC §9) ------------------------------------------------------------------
DR_DOCUMENT = json.dumps({"dr": {"copies": [{"region": "eu-central-1"}, {"region": "us-east-1"}]}})
ALLOWANCE = timedelta(hours=6)


def copied(image: Image, **copies: str) -> Image:
    """The backup, recording its completed copies (destination -> copy id)."""
    marks = {f"amikeeper:copied:{key.replace('_', '-')}": value for key, value in copies.items()}
    return Image(image.image_id, image.name, image.state, image.created, dict(image.tags) | marks)


def assess_copies_of(instances: list[Instance], images: list[Image]) -> RegionReport:
    return assess_region(
        REGION,
        instances,
        images,
        catalog(DR_DOCUMENT),
        KEYS,
        now=NOW,
        tick=TICK,
        pending_timeout=PENDING_TIMEOUT,
        copy_allowance=ALLOWANCE,
    )


def test_each_destination_shows_the_newest_copy_and_flags_one_older_than_interval_tick_and_allowance() -> (
    None
):
    # Given an instance on the dr policy, backed up this morning and two days ago; this morning's backup is
    # copied to Frankfurt only, and Virginia's newest copy is of the backup two days ago
    host = instance(1, {"Backup": "dr"})
    today = copied(backup(1, NOW - timedelta(hours=4), image=2), eu_central_1="ami-0c0000000000000f2")
    older = copied(
        backup(1, NOW - timedelta(days=2, hours=4), image=1),
        eu_central_1="ami-0c0000000000000f1",
        us_east_1="ami-0c0000000000000e1",
    )
    # When the region is assessed with a 6-hour copy allowance
    [status] = assess_copies_of([host], [today, older]).instances
    # Then Frankfurt's newest copy is of this morning's backup and is on time
    frankfurt, virginia = status.copies
    assert (frankfurt.destination, frankfurt.state, frankfurt.image_id) == (
        "eu-central-1",
        "ok",
        "ami-0c0000000000000f2",
    )
    # And Virginia's is of the backup two days ago: more than 24h + 15m + 6h old, so late
    assert (virginia.state, virginia.image_id, virginia.age) == (
        "late",
        "ami-0c0000000000000e1",
        timedelta(days=2, hours=4),
    )
    assert virginia.allowed_age == DAILY_BOUND + ALLOWANCE
    # And the daily report is a warning that names the late copy
    [note] = report_notifications(report_of(assess_copies_of([host], [today, older])))
    assert note.severity == "warning"
    assert "1 late copies" in note.subject
    assert "us-east-1" in note.text() and "late" in note.text()
    assert note.document()["late_copies_total"] == 1


def test_a_destination_without_any_copy_is_missing_unless_the_instance_is_new() -> None:
    # Given two instances on the dr policy without any copy, one launched an hour ago
    old = instance(1, {"Backup": "dr"})
    new = instance(2, {"Backup": "dr"}, launched=NOW - timedelta(hours=1))
    images = [backup(1, NOW - timedelta(hours=4)), backup(2, NOW - timedelta(minutes=30))]
    # When the region is assessed
    statuses = {s.instance_id: s for s in assess_copies_of([old, new], images).instances}
    # Then the old one's copies are missing in both destinations, the new one is not flagged yet
    assert [c.state for c in statuses[old.instance_id].copies] == ["missing", "missing"]
    assert [c.state for c in statuses[new.instance_id].copies] == ["ok", "ok"]


def test_an_instance_without_copies_in_its_policy_shows_none() -> None:
    [status] = assess_copies_of([instance(1)], [backup(1, NOW - timedelta(hours=4))]).instances
    assert status.copies == ()
