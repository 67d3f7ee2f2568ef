"""Demo chapter 2: weeks of daily backups, then retention with restic's keep rules and its guards.

Time is injected through each tick's ``scheduled_time``; nothing sleeps. The backups carry their slot
(``amikeeper:slot``), which is what retention's calendar rules count, so the history is real dated history.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import boto3

from scripts.demo_world import (
    World,
    handler_output_discarded,
    heading,
    set_launch_time,
    settle_creation_dates,
    show_notifications,
    table,
    tags_of,
)

DAYS = 60
TICK_TIME = timedelta(hours=3)  # the planner's daily tick here: 03:00 UTC, web-1's default slot
RETENTION_TIME = timedelta(hours=4)
HOLD_TAG = "Backup:Hold"


@dataclass(frozen=True)
class Backup:
    image_id: str
    instance: str
    policy: str
    slot: datetime
    snapshot_ids: tuple[str, ...]


@dataclass(frozen=True)
class Protected:
    """An AMI retention must leave alone, and why."""

    image_id: str
    why: str
    made_by: str


def retention_history(world: World, fleet: Mapping[str, str], start: datetime) -> datetime:
    """Chapter 2; returns the day after the last simulated one (00:00 UTC), where chapter 3 goes on."""
    first_day = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    for instance_id in fleet.values():
        set_launch_time(world, instance_id, start - timedelta(hours=1))
    last_day = simulate_days(world, first_day)
    protected = protect_three_amis(world, fleet, first_day)
    run_at = last_day + RETENTION_TIME
    before = backups_by_id(world)
    plan = dry_run(world, run_at)
    real_run(world, run_at, before, protected, plan)
    nothing_left_behind(world, protected, before)
    return last_day + timedelta(days=1)


# --- 2.1 weeks of backups ---------------------------------------------------------------------------
def simulate_days(world: World, first_day: datetime) -> datetime:
    heading(f"2.1 {DAYS} days of backups: a planner tick a day at 03:00, then the worker")
    with handler_output_discarded():
        for offset in range(DAYS):
            day = first_day + timedelta(days=offset)
            world.tick("PlannerFunction", "planner-tick", day + TICK_TIME)
            world.drain_work_queue()
        settle_creation_dates(world)
    world.stack.notifications()  # a policy.invalid for legacy-1 once a day, as in 1.
    last_day = first_day + timedelta(days=DAYS - 1)
    print(
        f"  ticks from {first_day + TICK_TIME:%Y-%m-%d %H:%M}Z to {last_day + TICK_TIME:%Y-%m-%d %H:%M}Z, "
        "one a day, so every opted-in instance gets one backup a day"
    )
    print("  (db-1's every-6h and batch-1's hourly slots are simply the latest slot before each tick)\n")
    rows: list[list[object]] = [
        ["instance", "policy", "retention", "AMIs", "first slot", "last slot", "snapshots"]
    ]
    retention = retention_expressions(world)
    for name, backups in sorted(by_instance(backups_by_id(world).values()).items()):
        policy = backups[0].policy
        rows.append(
            [
                name,
                policy,
                retention.get(policy, "?"),
                len(backups),
                f"{backups[-1].slot:%Y-%m-%d %H:%M}",
                f"{backups[0].slot:%Y-%m-%d %H:%M}",
                sum(len(backup.snapshot_ids) for backup in backups),
            ]
        )
    table(rows)
    return last_day


def protect_three_amis(world: World, fleet: Mapping[str, str], first_day: datetime) -> list[Protected]:
    """A legal hold, a launch template's $Default version and a person's own AMI: none may be deleted."""
    ec2 = boto3.client("ec2", region_name=world.region)
    backups = by_instance(backups_by_id(world).values())
    held = backup_on(backups["web-1"], first_day + timedelta(days=10))
    ec2.create_tags(Resources=[held.image_id], Tags=[{"Key": HOLD_TAG, "Value": "true"}])
    golden = backup_on(backups["db-1"], first_day + timedelta(days=15))
    template = ec2.create_launch_template(
        LaunchTemplateName="db-golden",
        LaunchTemplateData={"ImageId": golden.image_id, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    foreign = ec2.create_image(
        InstanceId=fleet["web-1"],
        Name="web-1 before kernel upgrade",
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "Name", "Value": "web-1 by hand"}]}],
    )["ImageId"]
    print("\n  three AMIs retention must not delete (its rules would expire the first two):\n")
    protected = [
        Protected(
            held.image_id, f"web-1's backup of {held.slot:%Y-%m-%d}, tagged {HOLD_TAG}=true", "amikeeper"
        ),
        Protected(
            golden.image_id,
            f"db-1's backup of {golden.slot:%Y-%m-%d}, in launch template db-golden "
            f"({template['LaunchTemplateId']}) $Default",
            "amikeeper",
        ),
        Protected(foreign, "a person's CreateImage of web-1 ('web-1 before kernel upgrade')", "a person"),
    ]
    table([["AMI", "made by", "what"], *([p.image_id, p.made_by, p.why] for p in protected)])
    return protected


# --- 2.2 dry run ------------------------------------------------------------------------------------
def dry_run(world: World, when: datetime) -> Mapping[str, Any]:
    """The dry run; returns the plan its retention.summary reported."""
    heading('2.2 Retention dry run: events/retention-dry-run.json ({"dry_run": true})')
    images_before, snapshots_before = all_image_ids(world), stack_snapshot_ids(world)
    with handler_output_discarded():
        result = world.tick("RetentionFunction", "retention-dry-run", when)
    [note] = world.stack.notifications()
    counts = result["regions"][0]
    print(f"  at {when:%Y-%m-%d %H:%M}Z, the plan it reported:\n")
    show_notifications([note], full=True)
    print("  and what it changed:\n")
    images_after, snapshots_after = all_image_ids(world), stack_snapshot_ids(world)
    table(
        [
            ["", "planned", "before", "after", "changed"],
            [
                "AMIs (this account)",
                f"{counts['deleted']} to delete",
                len(images_before),
                len(images_after),
                changed(images_before, images_after),
            ],
            [
                "snapshots (this stack)",
                "-",
                len(snapshots_before),
                len(snapshots_after),
                changed(snapshots_before, snapshots_after),
            ],
        ]
    )
    plan: Mapping[str, Any] = note.document["regions"][0]["plan"]
    return plan


# --- 2.3 the real run -------------------------------------------------------------------------------
def real_run(
    world: World,
    when: datetime,
    before: Mapping[str, Backup],
    protected: Sequence[Protected],
    plan: Mapping[str, Any],
) -> None:
    heading("2.3 Retention (events/retention-tick.json): what it kept, by which rule, and deleted")
    with handler_output_discarded():
        world.tick("RetentionFunction", "retention-tick", when)
    notes = world.stack.notifications()
    print(
        f"  notifications: {len(notes)} (deleting what expired is routine: a real run mails only when "
        "something failed; the daily report is the message to read)"
    )
    verdicts = kept_reasons(plan)
    remaining = all_image_ids(world)
    deleted_ids = set(before) - remaining
    for name, backups in sorted(by_instance(before.values()).items()):
        kept = [backup for backup in backups if backup.image_id in verdicts]
        deleted = [backup for backup in backups if backup.image_id in deleted_ids]
        print(f"\n  {name}: {len(backups)} AMIs -> {len(kept)} kept, {len(deleted)} deleted")
        rows: list[list[object]] = [["slot (UTC)", "AMI", "kept by", "still there"]]
        rows += [
            [f"{b.slot:%Y-%m-%d %H:%M}", b.image_id, verdicts[b.image_id], yes(b.image_id in remaining)]
            for b in kept
        ]
        table(rows)
        print(f"    deleted ({len(deleted)}): {day_ranges(sorted(b.slot.date() for b in deleted))}")
    foreign = [p for p in protected if p.made_by != "amikeeper"]
    for p in foreign:
        print(
            f"\n  {p.image_id} ({p.why}): not this stack's, never even listed; still there: {yes(p.image_id in remaining)}"
        )


def kept_reasons(plan: Mapping[str, Any]) -> dict[str, str]:
    """Image id -> why retention kept it, from the plan in the retention.summary document."""
    reasons = {item["image_id"]: ", ".join(item["reasons"]) for item in plan["kept"]["items"]}
    reasons |= dict.fromkeys(plan["held"]["items"], f"held ({HOLD_TAG}=true)")
    reasons |= {
        item["image_id"]: "in use by " + ", ".join(item["used_by"]) for item in plan["kept_in_use"]["items"]
    }
    reasons |= dict.fromkeys(plan["pending"]["items"], "pending")
    return reasons


# --- 2.4 no snapshot left behind ------------------------------------------------------------------
def nothing_left_behind(world: World, protected: Sequence[Protected], before: Mapping[str, Backup]) -> None:
    heading("2.4 No snapshot left behind, every protected AMI intact")
    remaining = backups_by_id(world)
    stack_snapshots = stack_snapshot_ids(world)
    used = {snapshot for backup in remaining.values() for snapshot in backup.snapshot_ids}
    deleted = {snapshot for backup in before.values() for snapshot in backup.snapshot_ids} - stack_snapshots
    images = all_image_ids(world)
    table(
        [
            ["check", "count"],
            ["this stack's AMIs before -> after", f"{len(before)} -> {len(remaining)}"],
            ["snapshots deleted with their AMIs", len(deleted)],
            ["snapshots tagged amikeeper:managed-by=amikeeper", len(stack_snapshots)],
            ["snapshots of this stack's remaining AMIs", len(used)],
            ["left behind (tagged, no AMI uses them)", len(stack_snapshots - used)],
            [
                "protected AMIs still there",
                f"{sum(p.image_id in images for p in protected)} of {len(protected)}",
            ],
        ]
    )


# --- reading the world ------------------------------------------------------------------------------
def backups_by_id(world: World) -> dict[str, Backup]:
    names = world.instance_names()
    found: dict[str, Backup] = {}
    for image in world.images():
        tags = tags_of(image)
        found[image["ImageId"]] = Backup(
            image_id=image["ImageId"],
            instance=names.get(tags["amikeeper:instance-id"], tags["amikeeper:instance-id"]),
            policy=tags["amikeeper:policy"],
            slot=datetime.fromisoformat(tags["amikeeper:slot"].replace("Z", "+00:00")),
            snapshot_ids=tuple(
                mapping["Ebs"]["SnapshotId"]
                for mapping in image.get("BlockDeviceMappings", [])
                if "Ebs" in mapping
            ),
        )
    return found


def by_instance(backups: Iterable[Backup]) -> dict[str, list[Backup]]:
    """Each instance's backups, newest first."""
    grouped: defaultdict[str, list[Backup]] = defaultdict(list)
    for backup in backups:
        grouped[backup.instance].append(backup)
    return {name: sorted(items, key=lambda b: b.slot, reverse=True) for name, items in grouped.items()}


def retention_expressions(world: World) -> dict[str, str]:
    """Policy name -> retention: the deployed DefaultRetention and the named policies' document."""
    environment = world.functions["RetentionFunction"].runtime_environment()
    document = boto3.client("ssm", region_name=world.region).get_parameter(
        Name=world.stack.policies_parameter
    )["Parameter"]["Value"]
    named: dict[str, dict[str, Any]] = json.loads(document)
    return {"default": environment["AMIKEEPER_DEFAULT_RETENTION"]} | {
        name: str(policy["retain"]) for name, policy in named.items()
    }


def backup_on(backups: Sequence[Backup], day: datetime) -> Backup:
    return next(backup for backup in backups if backup.slot.date() == day.date())


def all_image_ids(world: World) -> set[str]:
    ec2 = boto3.client("ec2", region_name=world.region)
    return {
        image["ImageId"]
        for page in ec2.get_paginator("describe_images").paginate(Owners=["self"])
        for image in page["Images"]
    }


def stack_snapshot_ids(world: World) -> set[str]:
    ec2 = boto3.client("ec2", region_name=world.region)
    stack_name = world.stack.parameter_overrides["AWS::StackName"]
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:amikeeper:managed-by", "Values": [stack_name]}]
    )
    return {snapshot["SnapshotId"] for page in pages for snapshot in page["Snapshots"]}


# --- printing ---------------------------------------------------------------------------------------
def changed(before: set[str], after: set[str]) -> str:
    return "no" if before == after else f"yes: -{len(before - after)} +{len(after - before)}"


def yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def day_ranges(days: Sequence[date]) -> str:
    """12-01..12-05, 12-07, ... : consecutive days folded into ranges."""
    if not days:
        return "none"
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day - runs[-1][1] <= timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return ", ".join(
        f"{first:%Y-%m-%d}" if first == last else f"{first:%Y-%m-%d}..{last:%m-%d}" for first, last in runs
    )
