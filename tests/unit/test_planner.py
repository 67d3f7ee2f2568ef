"""Planner decisions (SPEC §3, §5, §6) without AWS: who is due, what the work item carries, who is invalid."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from amikeeper.gateways.ec2 import Image, Instance
from amikeeper.planner import (
    InvalidInstance,
    RegionPlan,
    Stack,
    index_backups,
    plan_region,
    planner_notifications,
)
from amikeeper.policies import PolicyCatalog, build_catalog
from amikeeper.tagkeys import TagKeys

NOW = datetime(2026, 11, 29, 10, 7, tzinfo=UTC)
STACK = Stack("amikeeper", TagKeys("Backup"), copy_tags=("CostCenter",))


def catalog() -> PolicyCatalog:
    return build_catalog("daily@03:00", "7", ZoneInfo("UTC"), json.dumps({"gold": {"schedule": "every 6h"}}))


def instance(instance_id: str, **tags: str) -> Instance:
    return Instance(instance_id, "running", tags)


def backup(instance_id: str, slot: datetime, state: str = "available") -> Image:
    return Image(
        image_id=f"ami-{instance_id[2:]}{slot:%H}",
        name="n",
        state=state,
        created=slot,
        tags={
            "amikeeper:instance-id": instance_id,
            "amikeeper:trigger": "schedule",
            "amikeeper:slot": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def test_instance_without_a_backup_in_its_current_slot_is_due() -> None:
    # Given a default-policy instance whose last backup is from yesterday's 03:00 slot
    fleet = [instance("i-00000000000000001", Backup="true", Name="web-1", CostCenter="42", Owner="x")]
    latest = index_backups(
        [backup("i-00000000000000001", NOW.replace(hour=3, minute=0) - timedelta(days=1))]
    ).latest
    # When the planner runs at 10:07
    plan = plan_region("eu-west-1", fleet, latest, catalog(), STACK, NOW)
    # Then one work item for today's 03:00 slot, carrying every tag amikeeper writes
    assert [item.instance_id for item in plan.due] == ["i-00000000000000001"]
    item = plan.due[0]
    assert item.slot == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert item.image_name == "amikeeper-i-00000000000000001-schedule-20261129T0300Z"
    assert item.no_reboot is True
    assert item.tags == {
        "Name": "web-1",
        "CostCenter": "42",
        "amikeeper:managed-by": "amikeeper",
        "amikeeper:instance-id": "i-00000000000000001",
        "amikeeper:policy": "default",
        "amikeeper:trigger": "schedule",
        "amikeeper:slot": "2026-11-29T03:00:00Z",
    }


def test_backup_in_the_current_slot_means_not_due_but_a_failed_one_does_not_count() -> None:
    slot = NOW.replace(hour=3, minute=0)
    fleet = [instance("i-00000000000000001", Backup="true"), instance("i-00000000000000002", Backup="true")]
    latest = index_backups(
        [backup("i-00000000000000001", slot), backup("i-00000000000000002", slot, "failed")]
    ).latest
    plan = plan_region("eu-west-1", fleet, latest, catalog(), STACK, NOW)
    assert [item.instance_id for item in plan.due] == ["i-00000000000000002"]
    assert plan.not_due == 1


def test_named_policy_and_schedule_override_pick_their_own_slot() -> None:
    fleet = [
        instance("i-00000000000000001", Backup="gold"),
        instance("i-00000000000000002", Backup="true", **{"Backup:Schedule": "hourly"}),
    ]
    plan = plan_region("eu-west-1", fleet, {}, catalog(), STACK, NOW)
    slots = {item.instance_id: (item.slot, item.policy) for item in plan.due}
    assert slots == {
        "i-00000000000000001": (datetime(2026, 11, 29, 6, 0, tzinfo=UTC), "gold"),
        "i-00000000000000002": (datetime(2026, 11, 29, 10, 0, tzinfo=UTC), "default"),
    }


def test_invalid_tag_skips_only_that_instance() -> None:
    # Given one instance with an unknown policy among valid and opted-out ones
    fleet = [
        instance("i-00000000000000001", Backup="true"),
        instance("i-00000000000000002", Backup="platinum", Name="db"),
        instance("i-00000000000000003", Backup="false"),
    ]
    plan = plan_region("eu-west-1", fleet, {}, catalog(), STACK, NOW)
    # Then the valid one is due, the invalid one is reported with its tag and reason, the opted-out ignored
    assert [item.instance_id for item in plan.due] == ["i-00000000000000001"]
    assert plan.seen == 3
    assert plan.opted_in == 1
    [invalid] = plan.invalid
    assert (invalid.instance_id, invalid.name, invalid.tag, invalid.value) == (
        "i-00000000000000002",
        "db",
        "Backup",
        "platinum",
    )
    assert "unknown policy" in invalid.reason


def test_aws_reserved_tags_are_never_copied_and_amikeeper_tags_cannot_be_overwritten() -> None:
    stack = Stack(
        "amikeeper", TagKeys("Backup"), copy_tags=("aws:cloudformation:stack-name", "amikeeper:policy")
    )
    fleet = [
        instance(
            "i-00000000000000001",
            Backup="true",
            **{"aws:cloudformation:stack-name": "s", "amikeeper:policy": "x"},
        )
    ]
    [item] = plan_region("eu-west-1", fleet, {}, catalog(), stack, NOW).due
    assert "aws:cloudformation:stack-name" not in item.tags
    assert item.tags["amikeeper:policy"] == "default"


def test_run_sends_one_invalid_notice_each_and_one_summary() -> None:
    plan = RegionPlan(region="eu-west-1", seen=3, opted_in=1, enqueued=1)
    plan.invalid.append(
        InvalidInstance("eu-west-1", "i-00000000000000002", "db", "Backup", "platinum", "unknown policy")
    )
    failed = RegionPlan(region="us-east-1", error="EndpointConnectionError: boom")
    notes = planner_notifications([plan, failed], catalog(), NOW)
    assert [(note.event, note.severity) for note in notes] == [
        ("policy.invalid", "warning"),
        ("backup.summary", "error"),
    ]
    assert "i-00000000000000002" in notes[0].subject_line()
    assert notes[1].payload["regions"][1]["error"] == "EndpointConnectionError: boom"


def test_schedule_with_no_slot_yet_is_reported_and_skipped() -> None:
    # Given a cron that only fires in a future year
    fleet = [
        instance("i-00000000000000001", Backup="true", **{"Backup:Schedule": "cron(0 0 1 1 ? 2030)"}),
        instance("i-00000000000000002", Backup="true"),
    ]
    # When the planner runs / Then that instance is reported, the other proceeds
    plan = plan_region("eu-west-1", fleet, {}, catalog(), STACK, NOW)
    assert [item.instance_id for item in plan.due] == ["i-00000000000000002"]
    [invalid] = plan.invalid
    assert (invalid.instance_id, invalid.tag) == ("i-00000000000000001", "Backup:Schedule")


def test_retry_after_a_failed_ami_in_the_current_slot_gets_the_next_name() -> None:
    # Given the 03:00 backup failed (its AMI still holds the slot's first name)
    slot = NOW.replace(hour=3, minute=0)
    index = index_backups([backup("i-00000000000000001", slot, "failed")])
    # When the planner runs again in that slot
    fleet = [instance("i-00000000000000001", Backup="true")]
    plan = plan_region("eu-west-1", fleet, index.latest, catalog(), STACK, NOW, index.failed)
    # Then the instance is still due, under a name EC2 has not seen
    [item] = plan.due
    assert item.image_name == "amikeeper-i-00000000000000001-schedule-20261129T0300Z-r1"
