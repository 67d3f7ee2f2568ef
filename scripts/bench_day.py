"""A whole day at the default schedules and retention: every function's EC2 calls, and every message sent.

The fleet starts in the steady state of the default retention (``daily=7 weekly=4 monthly=6``): each
instance already holds exactly the backups that retention keeps after half a year of daily backups
(about 15), made the way the worker makes them and dated with the fidelity extension. Then one whole
day runs through the template's handlers, as deployed:

- 96 planner ticks (PlannerRate 15), each followed by the workers draining the queue;
- an ``EC2 AMI State Change`` event for every AMI that became available, to the AMI-state handler (the
  rule delivers one for every AMI of the account: the benchmark sends those of this stack's backups);
- 24 retention runs (hourly) and the daily report;
- optionally, EC2 fails one instance's 03:00 AMI (the failure event goes to the AMI-state handler, and
  the next planner tick retries the slot).

Reported: EC2 calls per instance per day by function and operation (the target is at most 2.2 in all),
and the messages the topic delivered with the e-mails the default filter lets through. How many AMIs
expire on the day depends on the calendar (weekly and monthly boundaries): one per instance a day on
average, from zero to two on a given day; the DeregisterImage row says how many did.

    PYTHONPATH=layers/shared:. .venv/bin/python -m scripts.bench_day --sizes 1,1000
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3

from amikeeper.backups import build_work_item
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.model import Instance, Stack, TagKeys, tag_map
from amikeeper.policies import build_catalog
from amikeeper.retention_rules import Backup, parse_retention, select
from scripts.bench_world import ROOT, World, _quietly, bench_world
from tests.fixtures.call_counter import Tally
from tests.fixtures.end_state import tick
from tests.fixtures.stack import managed_images
from tests.sam_local import SamApp, load_event

DAY = datetime(2026, 11, 29, tzinfo=UTC)
HISTORY_DAYS = 200
CREATION_DELAY = timedelta(minutes=4)
TARGET = 2.2
# The default subscription filter (NotificationEmailSeverity=warning): warning, error, and no severity.
EMAILED = {"warning", "error", ""}


@dataclass
class DayResult:
    size: int
    fail_one: bool
    calls: dict[str, Tally] = field(default_factory=dict)  # by function id
    received: Counter[tuple[str, str]] = field(default_factory=Counter)
    ami_events: int = 0

    def ec2_calls(self, function_id: str | None = None) -> int:
        tallies = [self.calls[function_id]] if function_id else list(self.calls.values())
        return sum(tally.total("ec2") for tally in tallies if tally is not None)

    def per_instance(self, function_id: str | None = None) -> float:
        return self.ec2_calls(function_id) / self.size

    @property
    def emails(self) -> int:
        return sum(count for (_, severity), count in self.received.items() if severity in EMAILED)


def steady_state_slots() -> list[datetime]:
    """The 03:00 slots the default retention keeps of half a year of daily backups, before DAY."""
    defaults = SamApp.load(ROOT / "template.yaml").parameters
    rules = parse_retention(str(defaults["DefaultRetention"]["Default"]))
    slots = [DAY.replace(hour=3) - timedelta(days=offset) for offset in range(1, HISTORY_DAYS)]
    backups = [Backup(str(index), slot, "available") for index, slot in enumerate(slots)]
    decisions = select(backups, rules, UTC)
    return [slot for slot, decision in zip(slots, decisions, strict=True) if decision.keep]


def make_history(world: World, slots: Sequence[datetime]) -> None:
    """Each instance's kept backups, made as the worker makes them, then dated to their slot."""
    ec2 = boto3.client("ec2", region_name=world.region)
    gateway = Ec2Gateway(ec2)
    stack = world.stack
    settings = SamApp.load(ROOT / "template.yaml").parameters
    catalog = build_catalog(
        str(settings["DefaultSchedule"]["Default"]),
        str(settings["DefaultRetention"]["Default"]),
        ZoneInfo("UTC"),
        None,
    )
    backup_stack = Stack(stack.parameter_overrides["AWS::StackName"], TagKeys("Backup"))
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for data in reservation["Instances"]:
                instance = Instance(data["InstanceId"], data["State"]["Name"], tag_map(data.get("Tags")))
                for slot in slots:
                    item = build_work_item(
                        instance,
                        catalog.default,
                        region=world.region,
                        stack=backup_stack,
                        trigger="schedule",
                        slot=slot,
                    )
                    image_id = gateway.create_image(item).image_id
                    assert image_id is not None
                    world.fidelity.set_creation_date(world.region, image_id, slot + CREATION_DELAY)


def ami_event(world: World, image_id: str, state: str) -> dict[str, Any]:
    event = load_event(ROOT / "events" / f"ami-state-{state}.json")
    event["id"] = f"bench-{image_id}-{state}"
    event["region"] = world.region
    event["resources"] = [f"arn:aws:ec2:{world.region}::image/{image_id}"]
    event["detail"] = event["detail"] | {"ImageId": image_id, "State": state}
    return event


def whole_day(world: World, size: int, *, fail_one: bool) -> DayResult:
    result = DayResult(size, fail_one)
    functions = world.functions

    def invoke(function_id: str, event: dict[str, Any]) -> None:
        before = world.counter.tally()
        function = functions[function_id]
        _quietly(function.invoke, event, function.context(clock=world.clock.monotonic))
        spent = world.counter.tally() - before
        result.calls[function_id] = (
            result.calls[function_id] + spent if function_id in result.calls else spent
        )

    def drain() -> None:
        before = world.counter.tally()
        world._drain()
        spent = world.counter.tally() - before
        known = result.calls.get("WorkerFunction")
        result.calls["WorkerFunction"] = known + spent if known is not None else spent

    known_available = {i["ImageId"] for i in managed_images(world.region) if i["State"] == "available"}
    for quarter in range(96):
        now = DAY + timedelta(minutes=15 * quarter + 1)
        busy = quarter == 12  # the 03:01 tick, the first of the 03:00 slot
        world.fidelity.start_pending(fail_one and busy)
        invoke("PlannerFunction", tick(now))
        for record in world.stack.task_messages():  # what the task queue's event source delivers
            invoke("RegionPlannerFunction", {"Records": [record]})
        drain()
        images = list(managed_images(world.region))
        if fail_one and busy:
            pending = sorted(image["ImageId"] for image in images if image["State"] == "pending")
            world.fidelity.set_image_state(world.region, pending[0], "failed", reason="volume went away")
            for image_id in pending[1:]:
                world.fidelity.set_image_state(world.region, image_id, "available")
            invoke("AmiStateFunction", ami_event(world, pending[0], "failed"))
            images = list(managed_images(world.region))
        for image in images:
            if image["State"] == "available" and image["ImageId"] not in known_available:
                known_available.add(image["ImageId"])
                result.ami_events += 1
                invoke("AmiStateFunction", ami_event(world, image["ImageId"], "available"))
        if quarter % 4 == 0:
            invoke("RetentionFunction", tick(now + timedelta(minutes=4), dry_run=False))
            for record in world.stack.deletion_messages():  # what the deletion queue's event source delivers
                invoke("DeleterFunction", {"Records": [record]})
        if quarter == 28:
            invoke("ReportFunction", tick(now.replace(minute=0)))
        result.received.update((note.event, note.severity) for note in world.stack.notifications())
    return result


def measure(size: int, *, fail_one: bool = False) -> DayResult:
    with bench_world(default_retention="daily=7 weekly=4 monthly=6") as world:
        world.launch(size)
        make_history(world, steady_state_slots())
        world.stack.notifications()
        return whole_day(world, size, fail_one=fail_one)


def render(results: Sequence[DayResult]) -> list[str]:
    lines = ["A WHOLE DAY AT THE DEFAULTS (96 planner ticks, 24 retention runs, the report, every AMI event)"]
    for result in results:
        day = "one failed backup" if result.fail_one else "quiet"
        mark = "✓" if result.per_instance() <= TARGET else "✗"
        lines.append(
            f"  {result.size:,} instances, {day} day: {result.per_instance():.3f} EC2 calls per instance "
            f"{mark} (target ≤ {TARGET}); {sum(result.received.values())} message(s), "
            f"{result.emails} e-mail(s) with the default filter"
        )
        for function_id in sorted(result.calls):
            operations = {
                key.split(":", 1)[1]: count / result.size
                for key, count in sorted(result.calls[function_id].calls.items())
                if key.startswith("ec2:")
            }
            listed = ", ".join(f"{name} {value:.4f}" for name, value in operations.items()) or "none"
            lines.append(f"    {function_id:<22} {result.per_instance(function_id):.4f}  ({listed})")
        lines.append(
            f"    messages: {json.dumps({f'{e}/{s}': c for (e, s), c in sorted(result.received.items())})}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="1,1000", help="comma-separated fleet sizes")
    parser.add_argument("--days", default="quiet,failed", help="which days: quiet, failed or both")
    args = parser.parse_args(argv)
    results = [
        measure(int(size), fail_one=day == "failed")
        for size in args.sizes.split(",")
        for day in args.days.split(",")
    ]
    print("\n".join(render(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
