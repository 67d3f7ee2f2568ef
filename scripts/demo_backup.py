"""Demo chapter 1: scheduled backups of a small fleet, exactly as the deployed planner and worker do them."""

from __future__ import annotations

from datetime import datetime

from scripts.demo_world import World, heading, show_notifications, table, tags_of
from tests.fixtures.stack import run_instances

POLICIES = {"gold": {"schedule": "every 6h", "retain": "hourly=24 daily=14 monthly=12", "no_reboot": True}}


def launch_fleet(world: World) -> dict[str, str]:
    region = world.region
    fleet = {
        "web-1": run_instances(region, tags={"Name": "web-1", "Backup": "true"}),
        "db-1": run_instances(region, tags={"Name": "db-1", "Backup": "gold"}, data_volumes=2),
        "batch-1": run_instances(
            region, tags={"Name": "batch-1", "Backup": "yes", "Backup:Schedule": "hourly"}
        ),
        "dev-1": run_instances(region, tags={"Name": "dev-1", "Backup": "false"}),
        "legacy-1": run_instances(region, tags={"Name": "legacy-1", "Backup": "platinum"}),
    }
    return {name: ids[0] for name, ids in fleet.items()}


def scheduled_backups(world: World, now: datetime) -> dict[str, str]:
    heading("1. Scheduled backups: planner tick -> SQS -> worker -> CreateImage")
    fleet = launch_fleet(world)
    print(
        "  fleet: web-1 Backup=true · db-1 Backup=gold (2 data volumes) · batch-1 Backup=yes + Backup:Schedule=hourly"
    )
    print("         dev-1 Backup=false · legacy-1 Backup=platinum (no such policy)")
    print(f"  named policies (SSM): {POLICIES}")
    result = world.plan(now)
    print(f"\n  planner at {now:%Y-%m-%d %H:%M}Z, one task per region: {result}")
    failures = world.drain_work_queue()
    print(f"  worker drained the queue: {failures} failed item(s)\n")
    names = world.instance_names()
    rows: list[list[object]] = [["instance", "AMI name", "policy", "slot (UTC)", "snapshots", "state"]]
    for image in sorted(world.images(), key=lambda i: names.get(tags_of(i)["amikeeper:instance-id"], "")):
        tags = tags_of(image)
        snapshots = [m for m in image.get("BlockDeviceMappings", []) if "Ebs" in m]
        rows.append(
            [
                names.get(tags["amikeeper:instance-id"], "?"),
                image["Name"],
                tags["amikeeper:policy"],
                tags["amikeeper:slot"],
                len(snapshots),
                image["State"],
            ]
        )
    table(rows)
    print("\n  notifications a subscriber received:")
    show_notifications(world.stack.notifications(), full=True)

    later = now.replace(minute=now.minute + 14)
    again = world.plan(later)
    world.drain_work_queue()
    print(
        f"\n  planner again at {later:%H:%M}Z, same slots: {again[0]['enqueued']} queued, "
        f"{len(world.images())} AMIs in total (no second AMI)"
    )
    world.stack.notifications()
    return fleet
