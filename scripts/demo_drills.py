"""Demo chapter 6: restore drills (SPEC §10). The stack is updated with an isolated drill subnet, a group
with no inbound rules and a weekly verify schedule; on Sunday the drill tick boots each instance's newest
backup there, one at a time (MaxConcurrentDrills=1), the checker follows each drill on the drill queue
until its status checks pass or fail, terminates it and records it on the backup. One backup does not
boot cleanly: restore.failed goes out at once. The daily report and `amikeeper status` show the outcome.

Everything is the deployed path: DrillFunction on its schedule, DrillCheckerFunction on its queue (delays
treated as passed). moto stamps a launch with the wall clock and the checker reads the wall clock: both
are given the demo's simulated time, and EC2's status checks come from the fidelity fixture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3

from amikeeper.model import DRILL, INSTANCE_ID, RESTORE_DRILL
from scripts.demo_restore import amikeeper, simulated_now
from scripts.demo_world import (
    ROOT,
    World,
    handler_output_discarded,
    heading,
    set_launch_time,
    show_notifications,
    simulated_clock,
    table,
    tags_of,
)
from tests.sam_local import SamApp

VERIFY = "weekly@sun 05:00"
# The instance whose newest backup will not come up cleanly (its instance status check fails).
BROKEN = "batch-1"
LOOK_SECONDS = 75


@dataclass
class SimulatedClock:
    now: datetime


def restore_drills(world: World, fleet: Mapping[str, str], after: datetime) -> None:
    heading("6. Restore drills: each backup booted in an isolated subnet every Sunday, then terminated")
    network = _drill_network(world)
    world.stack.parameter_overrides |= {
        "VerifySchedule": VERIFY,
        "DrillSubnetIds": network[0],
        "DrillSecurityGroupIds": network[1],
        "MaxConcurrentDrills": "1",
    }
    world.functions = world.stack.deploy(SamApp.load(ROOT / "template.yaml"))
    print(f"  stack updated: VerifySchedule={VERIFY!r}, DrillSubnetIds={network[0]},")
    print(f"                 DrillSecurityGroupIds={network[1]} (no inbound rules), MaxConcurrentDrills=1")
    sunday = _next_sunday_0500(after)
    clock = SimulatedClock(sunday)
    names = {instance_id: name for name, instance_id in fleet.items()} | world.instance_names()
    outcomes: list[list[object]] = [
        ["instance", "backup", "drill instance", "type", "subnet", "outcome", "recorded on the backup"]
    ]
    for tick in (sunday, sunday + timedelta(minutes=30)):
        clock.now = tick
        with handler_output_discarded():
            answer = world.tick("DrillFunction", "drills-tick", tick)
        started = [names.get(i, i) for i in answer["started"]]
        waiting = [names.get(i, i) for i in answer["waiting"]]
        print(
            f"\n  drill tick {tick:%a %Y-%m-%d %H:%M}Z: started {started or 'none'}, waiting {waiting or 'none'}"
        )
        launched = _drills_running(world)
        for drill in launched:
            set_launch_time(world, drill["InstanceId"], tick)
        with handler_output_discarded(), _checker_sees(world, clock):
            world.stack.deliver_drills(
                world.functions["DrillCheckerFunction"].invoke,
                between=lambda: _ec2_reports_checks(world, clock, names),
            )
        for drill in launched:
            outcomes.append(_outcome(world, drill, names))
    print()
    table(outcomes)
    left = _drills_running(world)
    print(f"  drill instances left running: {len(left) or 'none'}")
    print("  notifications:")
    show_notifications(world.stack.notifications(), full=True)

    report_time = sunday.replace(hour=7, minute=0)
    with handler_output_discarded():
        world.tick("ReportFunction", "report-tick", report_time)
    [report] = [note for note in world.stack.notifications() if note.event == "report.daily"]
    text = str(report.document["text"])
    print(f"\n  the daily report at {report_time:%H:%M}Z ({report.severity}): {report.subject}")
    section = text[text.index("Restore drills") :].split("\n\n", maxsplit=1)[0]
    for line in section.splitlines():
        print(f"    {line}")
    with simulated_now(sunday.replace(hour=7, minute=30)):
        amikeeper(world, "status")


def _drill_network(world: World) -> tuple[str, str]:
    ec2 = boto3.client("ec2", region_name=world.region)
    vpc = ec2.create_vpc(CidrBlock="10.200.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.200.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="amikeeper-drills", Description="no ingress", VpcId=vpc)
    return subnet, group["GroupId"]


def _next_sunday_0500(after: datetime) -> datetime:
    day = after.replace(hour=5, minute=0, second=0, microsecond=0)
    while day.weekday() != 6 or day <= after:
        day += timedelta(days=1)
    return day


def _drills_running(world: World) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name=world.region)
    found = ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{DRILL}", "Values": [world.stack.parameter_overrides["AWS::StackName"]]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [dict(instance) for r in found["Reservations"] for instance in r["Instances"]]


def _ec2_reports_checks(world: World, clock: SimulatedClock, names: Mapping[str, str]) -> None:
    """Between two looks: time passes, and EC2 reports each running drill's status checks."""
    clock.now += timedelta(seconds=LOOK_SECONDS)
    for drill in _drills_running(world):
        broken = names.get(tags_of(drill).get(INSTANCE_ID, "")) == BROKEN
        world.ec2fid.set_instance_status(world.region, drill["InstanceId"], "impaired" if broken else "ok")


@contextmanager
def _checker_sees(world: World, clock: SimulatedClock) -> Iterator[None]:
    """The checker's "now" (datetime.now in its handler) is the simulated clock, in its warm container."""
    with simulated_clock(world.functions["DrillCheckerFunction"].warm_module(), lambda: clock.now):
        yield


def _outcome(world: World, drill: Mapping[str, Any], names: Mapping[str, str]) -> list[object]:
    ec2 = boto3.client("ec2", region_name=world.region)
    [reservation] = ec2.describe_instances(InstanceIds=[drill["InstanceId"]])["Reservations"]
    now = reservation["Instances"][0]
    [image] = ec2.describe_images(ImageIds=[drill["ImageId"]])["Images"]
    record = tags_of(image).get(RESTORE_DRILL, "-")
    return [
        names.get(tags_of(drill).get(INSTANCE_ID, ""), "?"),
        drill["ImageId"],
        drill["InstanceId"],
        drill["InstanceType"],
        drill["SubnetId"],
        now["State"]["Name"],
        record if len(record) <= 60 else record[:57] + "...",
    ]
