"""Demo chapter 3: the day after chapter 2, hour by hour: EC2's events and the daily RPO report.

The planner ticks every hour in the background (as its schedule would, coarser); EC2's events are the
events/ files with this fleet's ids and times, delivered to the template's functions as EventBridge would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

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
from tests.fixtures.stack import ACCOUNT, ReceivedNotification, run_instances

PLANNER_EVENTS = frozenset({"backup.summary", "policy.invalid"})
FAILURE_REASON = "Snapshot creation failed for volume: the volume was detached during the snapshot"


@dataclass
class Day:
    """The planner's hourly ticks through one simulated day, with what each made and what it sent."""

    world: World
    start: datetime
    next_tick: datetime = field(init=False)
    planner_notes: list[ReceivedNotification] = field(default_factory=list)
    after_tick: dict[datetime, Callable[[], None]] = field(default_factory=dict)  # what EC2 does then
    _unshown: list[ReceivedNotification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_tick = self.start

    def run_until(self, until: datetime) -> None:
        """Every hourly planner tick up to and including `until`; prints one line about them."""
        names = self.world.instance_names()
        ticks: list[datetime] = []
        made: list[str] = []
        while self.next_tick <= until:
            before = {image["ImageId"] for image in self.world.images()}
            with handler_output_discarded():
                self.world.tick("PlannerFunction", "planner-tick", self.next_tick)
                self.world.drain_work_queue()
            settle_creation_dates(self.world)
            if self.next_tick in self.after_tick:
                self.after_tick[self.next_tick]()
            for image in self.world.images():
                if image["ImageId"] not in before:
                    made.append(names.get(tags_of(image)["amikeeper:instance-id"], "?"))
            ticks.append(self.next_tick)
            self.next_tick += timedelta(hours=1)
        self._unshown += self.notifications()  # anything but the planner's own is shown by the next step
        if ticks:
            counted = ", ".join(f"{name} x{made.count(name)}" for name in sorted(set(made))) or "none"
            span = f"{ticks[0]:%H:%M}" + (f"-{ticks[-1]:%H:%M}" if len(ticks) > 1 else "")
            print(f"  (planner ticks at {span}Z, hourly: {len(made)} backup(s): {counted})")

    def notifications(self) -> list[ReceivedNotification]:
        """What the topic sent since the last call, the planner's own summaries set aside."""
        notes = self.world.stack.notifications()
        self.planner_notes += [n for n in notes if n.event in PLANNER_EVENTS]
        shown, self._unshown = self._unshown, []
        return shown + [n for n in notes if n.event not in PLANNER_EVENTS]


def events_and_report(world: World, fleet: Mapping[str, str], day: datetime) -> None:
    """Chapter 3, on `day` (00:00 UTC): a stop, a failed AMI, a termination, and the 07:00 report."""
    [app] = run_instances(
        world.region, tags={"Name": "app-1", "Backup": "true", "Backup:OnStop": "true"}, data_volumes=1
    )
    set_launch_time(world, app, day - timedelta(minutes=20))
    hours = Day(world, day)
    stuck_slot = day + timedelta(hours=3)
    hours.after_tick[stuck_slot] = lambda: stay_pending(world, fleet["web-1"], stuck_slot)
    on_stop_backup(world, hours, app, day + timedelta(hours=2, minutes=42, seconds=7))
    failed_backup(world, hours, fleet["batch-1"], day + timedelta(hours=4))
    terminated(world, hours, fleet["db-1"], day + timedelta(hours=5, minutes=6))
    daily_report(world, hours, fleet["web-1"], stuck_slot, day + timedelta(hours=7))
    print(
        f"\n  meanwhile the planner sent {len(hours.planner_notes)} notification(s) of its own: "
        + ", ".join(
            f"{event} x{sum(n.event == event for n in hours.planner_notes)}"
            for event in sorted({n.event for n in hours.planner_notes})
        )
        + " (legacy-1's invalid tag, once a day; a run that just queued its backups sends nothing)"
    )


# --- 3.1 -------------------------------------------------------------------------------------------
def on_stop_backup(world: World, hours: Day, instance_id: str, when: datetime) -> None:
    heading(f"3.1 {when:%H:%M}Z app-1 (Backup:OnStop=true) stops: an on-stop backup")
    print("  app-1 is launched just before midnight with Backup=true, Backup:OnStop=true")
    hours.run_until(when)
    boto3.client("ec2", region_name=world.region).stop_instances(InstanceIds=[instance_id])
    event = ec2_event(
        world, "instance-state-stopped", when, instance_arn(world, instance_id), {"instance-id": instance_id}
    )
    with handler_output_discarded():
        answer = world.functions["InstanceStateFunction"].invoke(event)
        world.drain_work_queue()
    settle_creation_dates(world)
    print(f"  instance-state handler: {answer['action']}: {answer['message']}\n")
    rows: list[list[object]] = [["app-1's AMIs", "trigger", "slot (UTC)", "snapshots", "state"]]
    for image in sorted(images_of(world, instance_id), key=lambda i: tags_of(i)["amikeeper:slot"]):
        tags = tags_of(image)
        rows.append(
            [
                image["Name"],
                tags["amikeeper:trigger"],
                tags["amikeeper:slot"],
                sum("Ebs" in m for m in image.get("BlockDeviceMappings", [])),
                image["State"],
            ]
        )
    table(rows)
    print("\n  notifications:")
    show_notifications(hours.notifications())


# --- 3.2 -------------------------------------------------------------------------------------------
def failed_backup(world: World, hours: Day, instance_id: str, slot: datetime) -> None:
    when = slot + timedelta(minutes=21, seconds=58)
    heading(f"3.2 {when:%H:%M}Z batch-1's {slot:%H:%M} backup fails; EventBridge delivers the event twice")
    hours.run_until(slot)
    [image] = [i for i in images_of(world, instance_id) if tags_of(i)["amikeeper:slot"] == iso(slot)]
    image_id = image["ImageId"]
    world.ec2fid.set_image_state(world.region, image_id, "failed", reason=FAILURE_REASON)
    print(f"  EC2 moves {image_id} ({image['Name']}) to failed\n")
    event = ec2_event(
        world,
        "ami-state-failed",
        when,
        f"arn:aws:ec2:{world.region}::image/{image_id}",
        {"ImageId": image_id, "State": "failed", "ErrorMessage": FAILURE_REASON},
    )
    rows: list[list[object]] = [["delivery", "event id", "AMI-state handler", "notifications sent"]]
    sent: list[ReceivedNotification] = []
    for number in (1, 2):
        with handler_output_discarded():
            answer = world.functions["AmiStateFunction"].invoke(event)
        notes = hours.notifications()
        sent += notes
        rows.append([number, event["id"], answer["action"], len(notes)])
    table(rows)
    print("\n  the one notification:")
    show_notifications(sent, full=True)


# --- 3.3 -------------------------------------------------------------------------------------------
def terminated(world: World, hours: Day, instance_id: str, when: datetime) -> None:
    heading(f"3.3 {when:%H:%M}Z db-1 is terminated: EC2 sends shutting-down, then terminated")
    hours.run_until(when)
    boto3.client("ec2", region_name=world.region).terminate_instances(InstanceIds=[instance_id])
    rows: list[list[object]] = [["event", "instance-state handler answered"]]
    for offset, (name, state) in enumerate(
        [("instance-state-shutting-down", "shutting-down"), ("instance-state-terminated", "terminated")]
    ):
        event = ec2_event(
            world,
            name,
            when + timedelta(seconds=41 * offset),
            instance_arn(world, instance_id),
            {"instance-id": instance_id, "state": state},
        )
        with handler_output_discarded():
            answer = world.functions["InstanceStateFunction"].invoke(event)
        rows.append([state, f"{answer['action']}: {answer['message']}"])
    table(rows)
    print("\n  notifications (one per instance, whichever event comes first):")
    show_notifications(hours.notifications(), full=True)


# --- 3.4 -------------------------------------------------------------------------------------------
def stay_pending(world: World, instance_id: str, slot: datetime) -> None:
    """EC2 never finishes this backup: it stays pending, and no AMI State Change event ever comes."""
    [image] = [i for i in images_of(world, instance_id) if tags_of(i)["amikeeper:slot"] == iso(slot)]
    world.ec2fid.set_image_state(world.region, image["ImageId"], "pending")


def daily_report(world: World, hours: Day, stuck_instance: str, slot: datetime, when: datetime) -> None:
    heading(f"3.4 {when:%H:%M}Z the daily report (events/report-tick.json): one RPO violation")
    hours.run_until(when)
    [stuck] = [i for i in images_of(world, stuck_instance) if tags_of(i)["amikeeper:slot"] == iso(slot)]
    print(
        f"  web-1's {slot:%H:%M} backup {stuck['ImageId']} is still {stuck['State']}: EC2 never finished it. The"
        "\n  planner counts it as under way and starts no other, so web-1's newest usable backup is yesterday's."
    )
    with handler_output_discarded():
        answer = world.tick("ReportFunction", "report-tick", when)
    print()
    table(
        [
            ["region", "opted in", "ok", "violations", "new", "invalid", "stale pending"],
            *(
                [
                    r["region"],
                    r["opted_in"],
                    r["ok"],
                    r["violations"],
                    r["new"],
                    r["invalid"],
                    r["stale_pending"],
                ]
                for r in answer["regions"]
            ),
        ]
    )
    print("\n  notifications:")
    show_notifications(hours.notifications(), full=True)


# --- events and lookups -----------------------------------------------------------------------------
def ec2_event(
    world: World, name: str, when: datetime, resource: str, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """An events/ file with this fleet's region, resource, time and detail, and an id of its own."""
    event = world.event(name)
    event_id = str(uuid5(NAMESPACE_URL, f"{name}/{resource}/{iso(when)}"))
    return event | {
        "id": event_id,
        "time": iso(when),
        "region": world.region,
        "resources": [resource],
        "detail": event["detail"] | dict(detail),
    }


def instance_arn(world: World, instance_id: str) -> str:
    return f"arn:aws:ec2:{world.region}:{ACCOUNT}:instance/{instance_id}"


def images_of(world: World, instance_id: str) -> Sequence[Mapping[str, Any]]:
    return [image for image in world.images() if tags_of(image).get("amikeeper:instance-id") == instance_id]


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
