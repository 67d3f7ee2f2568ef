"""The restore drills' pure part: when a drill is due, in which order drills start under a cap, how the
outcome is recorded on the backup, which network and type a drill gets, what one look means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amikeeper.drill_plan import (
    DrillCandidate,
    DrillNetwork,
    client_token,
    drill_type,
    due_drill,
    failed,
    first_drills,
    judge,
    last_drill,
    pick_network,
    read_record,
    verified,
)
from amikeeper.model import RESTORE_DRILL, GroupFacts, Image, Subnet
from amikeeper.naming import format_slot
from amikeeper.policies import build_catalog
from amikeeper.readiness import Readiness
from amikeeper.schedules import parse_schedule

UTC_ZONE = ZoneInfo("UTC")
WEEKLY = parse_schedule("weekly@sun 05:00", UTC_ZONE)
SUNDAY = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
NOW = SUNDAY + timedelta(hours=1)


def backup(day: int, *, drill: str | None = None, state: str = "available") -> Image:
    slot = datetime(2026, 11, day, 3, 0, tzinfo=UTC)
    return Image(
        image_id=f"ami-{day:017x}",
        name=f"b{day}",
        state=state,
        created=slot,
        tags={"amikeeper:slot": format_slot(slot)} | ({RESTORE_DRILL: drill} if drill else {}),
    )


def candidate(*backups: Image, instance_id: str = "i-0123456789abcdef0") -> DrillCandidate:
    return DrillCandidate("eu-west-1", instance_id, WEEKLY, tuple(backups))


def test_an_instance_never_drilled_is_due_on_its_newest_available_backup() -> None:
    # Given backups on the 26th, 27th and a pending one on the 28th
    owed = due_drill(candidate(backup(26), backup(27), backup(28, state="pending")), NOW, in_flight=())
    # Then the drill is for the newest available one, for this Sunday's slot
    assert owed is not None and owed.image.image_id == backup(27).image_id
    assert owed.slot == SUNDAY and owed.last is None


def test_a_drill_after_the_slot_whatever_it_found_settles_it_until_the_next() -> None:
    for outcome in (verified(SUNDAY + timedelta(minutes=5), 40, 95), failed(SUNDAY, "impaired")):
        drilled = backup(27, drill=outcome.tag_value())
        # When the tick looks within the week
        assert due_drill(candidate(backup(26), drilled), NOW + timedelta(days=6), in_flight=()) is None
        # And at the next Sunday's slot it is due again
        next_week = due_drill(candidate(backup(26), drilled), NOW + timedelta(days=7), in_flight=())
        assert next_week is not None and next_week.last == outcome


def test_a_drill_still_running_is_never_doubled() -> None:
    assert due_drill(candidate(backup(27)), NOW, in_flight=["i-0123456789abcdef0"]) is None


def test_no_available_backup_means_no_drill() -> None:
    assert due_drill(candidate(backup(27, state="failed")), NOW, in_flight=()) is None
    assert due_drill(candidate(), NOW, in_flight=()) is None


def test_under_a_cap_the_never_drilled_go_first_then_the_longest_unverified() -> None:
    # Given three due instances: one drilled last week, one never, one three weeks ago
    last_week = backup(22, drill=verified(SUNDAY - timedelta(days=7), 1, 2).tag_value())
    long_ago = backup(8, drill=failed(SUNDAY - timedelta(days=21), "x").tag_value())
    due = [
        due_drill(candidate(last_week, backup(27), instance_id=f"i-{1:017x}"), NOW, ()),
        due_drill(candidate(backup(27), instance_id=f"i-{2:017x}"), NOW, ()),
        due_drill(candidate(long_ago, backup(27), instance_id=f"i-{3:017x}"), NOW, ()),
    ]
    # When room is made for two
    chosen = first_drills([d for d in due if d is not None], 2)
    # Then the never-drilled and the longest unverified start
    assert [d.candidate.instance_id for d in chosen] == [f"i-{2:017x}", f"i-{3:017x}"]
    assert first_drills([d for d in due if d is not None], -1) == []


@given(
    st.sampled_from(["verified", "failed"]),
    # hypothesis takes naive bounds and adds the zone itself
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),  # noqa: DTZ001
    st.text(max_size=400),
)
def test_a_record_reads_back_as_written_within_a_tags_length(outcome: str, at: datetime, detail: str) -> None:
    at = at.replace(microsecond=0)
    record = verified(at, 1, 2) if outcome == "verified" else failed(at, detail)
    value = record.tag_value()
    assert len(value) <= 256
    read = read_record(value)
    assert read is not None and read.outcome == record.outcome and read.at == at


def test_an_unreadable_record_is_no_drill() -> None:
    for text in (None, "", "passed 2026-11-29T05:00:00Z", "verified yesterday"):
        assert read_record(text) is None
    assert last_drill([backup(27, drill="garbage")]) is None


def test_a_small_type_of_the_backups_architecture_unless_overridden() -> None:
    assert drill_type("arm64", None) == "t4g.micro"
    assert drill_type("x86_64", None) == "t3.micro"
    assert drill_type(None, None) == "t3.micro"
    assert drill_type("arm64", "c7g.large") == "c7g.large"


def test_one_launch_per_backup_and_verify_slot() -> None:
    token = client_token("amikeeper", "ami-0123456789abcdef0", SUNDAY)
    assert token == client_token("amikeeper", "ami-0123456789abcdef0", SUNDAY) and len(token) <= 64
    assert token != client_token("amikeeper", "ami-0123456789abcdef0", SUNDAY + timedelta(days=7))
    assert token != client_token("other", "ami-0123456789abcdef0", SUNDAY)


def test_the_drill_network_is_a_subnet_with_a_no_ingress_group_of_its_vpc() -> None:
    subnets = [Subnet("subnet-0aaaaaaaaaaaaaaaa", "vpc-1", "eu-west-1a")]
    closed = GroupFacts("sg-0bbbbbbbbbbbbbbbb", "vpc-1", 0)
    assert pick_network(subnets, [GroupFacts("sg-0cccccccccccccccc", "vpc-2", 0), closed]) == DrillNetwork(
        "subnet-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"
    )
    opened = pick_network(subnets, [GroupFacts("sg-0bbbbbbbbbbbbbbbb", "vpc-1", 2)])
    assert isinstance(opened, str) and "sg-0bbbbbbbbbbbbbbbb" in opened and "inbound" in opened
    assert "no DrillSubnetIds" in str(pick_network([], [closed]))
    assert "VPC" in str(pick_network(subnets, [GroupFacts("sg-0cccccccccccccccc", "vpc-2", 0)]))


@pytest.mark.parametrize(
    ("readiness", "minutes", "verdict"),
    [
        (Readiness(done=True), 3, "verified"),
        (Readiness(failure="i-1: instance status check impaired"), 3, "failed"),
        (Readiness(pending="i-1's instance status check (initializing)"), 3, "pending"),
        (Readiness(pending="i-1's instance status check (initializing)"), 20, "failed"),
    ],
)
def test_one_look_at_a_drill(readiness: Readiness, minutes: int, verdict: str) -> None:
    look = judge(readiness, NOW, NOW + timedelta(minutes=minutes), timedelta(minutes=20))
    assert look.verdict == verdict
    if verdict == "failed" and readiness.failure is None:
        assert "not up after 20 minutes" in look.detail


def test_verify_comes_from_the_stack_default_or_a_policy_which_may_turn_it_off() -> None:
    document = '{"gold": {"verify": "daily@06:00"}, "quiet": {"verify": "off"}, "same": {}}'
    catalog = build_catalog("daily@03:00", "daily=7", UTC_ZONE, document, "weekly@sun 05:00")
    assert catalog.default.verify is not None and catalog.default.verify.expression == "weekly@sun 05:00"
    assert catalog.named["gold"].verify is not None
    assert catalog.named["quiet"].verify is None
    assert catalog.named["same"].verify == catalog.default.verify
    broken = build_catalog("daily@03:00", "daily=7", UTC_ZONE, '{"gold": {"verify": 7}}')
    assert broken.document_error is not None and "verify" in broken.document_error
