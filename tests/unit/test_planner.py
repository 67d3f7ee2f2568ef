"""Planner decisions (SPEC §3, §5, §6) without AWS: who is due, what the work item carries, who is invalid."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from amikeeper.model import Image, Instance, Stack, TagKeys
from amikeeper.planner import (
    BackupPlan,
    InvalidInstance,
    RegionCounts,
    backup_summary,
    index_backups,
    invalid_tag,
    plan_region,
)
from amikeeper.policies import PolicyCatalog, build_catalog

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
        "amikeeper:retain": "last=7",
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


def test_invalid_tag_notice_names_the_instance_and_a_failing_region_makes_an_error_summary() -> None:
    invalid = InvalidInstance(
        "eu-west-1", "i-00000000000000002", "db", "Backup", "platinum", "unknown policy"
    )
    plan = BackupPlan(region="eu-west-1", seen=3, opted_in=1, enqueued=1)
    failed = BackupPlan(region="us-east-1", error="EndpointConnectionError: boom")
    notice = invalid_tag(invalid)
    summary = backup_summary([RegionCounts.of(plan), RegionCounts.of(failed)], NOW)
    assert (notice.event, notice.severity) == ("policy.invalid", "warning")
    assert "i-00000000000000002" in notice.subject_line()
    assert (summary.event, summary.severity) == ("backup.summary", "error")
    assert summary.payload["regions"][1]["error"] == "EndpointConnectionError: boom"


def test_copy_tags_beyond_the_ami_tag_limit_are_left_out_and_named() -> None:
    # Given CopyTags naming 48 keys the instance carries (EC2 allows 50 tags on an AMI)
    keys = tuple(f"Cost{index:02d}" for index in range(48))
    stack = Stack("amikeeper", TagKeys("Backup"), keys)
    fleet = [instance("i-00000000000000001", Backup="true", Name="web", **dict.fromkeys(keys, "x" * 300))]
    # When the planner plans the instance
    plan = plan_region("eu-west-1", fleet, {}, catalog(), stack, NOW)
    # Then the AMI's tags fit EC2's limit with room to spare, amikeeper's own are all there,
    [item] = plan.due
    assert len(item.tags) <= 50 - 10
    assert {"amikeeper:managed-by", "amikeeper:retain", "amikeeper:slot", "Name"} <= set(item.tags)
    # copied values are cut to EC2's 256 characters, and the keys left out are named for the summary
    assert {len(value) for key, value in item.tags.items() if key.startswith("Cost")} == {256}
    dropped = plan.dropped_tags["i-00000000000000001"]
    assert len(dropped) + sum(key.startswith("Cost") for key in item.tags) == 48
    summary = backup_summary([RegionCounts.of(plan)], NOW)
    assert summary.severity == "warning"
    assert summary.payload["tags_not_copied"] == sorted(dropped)
    assert dropped[0] in summary.text()


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
