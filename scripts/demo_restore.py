"""Demo chapter 5: the operator's side. The `amikeeper` CLI (cli/amikeeper_cli) finds the demo stack,
shows the fleet, and brings a terminated instance back from its newest backup.

The CLI runs through its real click entry point with the operator's environment; it discovers the stack
as it would in AWS (CloudFormation names the PlannerFunction, Lambda gives its environment), registered
here by tests/fixtures/deployed.py, as the CLI tests do. It reads the demo's simulated time instead of the
wall clock, and its waits run on a virtual clock: the demo does not sleep.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper_cli import deployment, wait
from amikeeper_cli.main import cli
from scripts.demo_world import World, heading, simulated_clock, table, tags_of
from tests.fixtures.deployed import register

# What the demo's terminal is as wide as: the CLI's tables fit, identifiers are not folded.
COLUMNS = "180"
# EC2 takes a little while before a new instance's status checks pass: this many polls, here.
POLLS_UNTIL_OK = 3


@dataclass
class VirtualClock:
    """Stands in for wait.CLOCK: a sleep advances it at once, and the world moves on meanwhile."""

    now: float = 0.0
    sleeps: int = 0
    launched: list[str] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1

    def monotonic(self) -> float:
        return self.now


@contextmanager
def simulated_now(now: datetime) -> Iterator[None]:
    """The CLI's "now" (Deployment.now, from datetime.now) is the demo's simulated time."""
    with simulated_clock(deployment, lambda: now):
        yield


@contextmanager
def virtual_waits(world: World) -> Iterator[VirtualClock]:
    """The CLI's waits on a virtual clock; an instance the restore launches reports its status checks
    `initializing` until POLLS_UNTIL_OK polls have waited (the fidelity fixture says `ok` at once)."""
    clock = VirtualClock()
    original_run = Ec2Gateway.run_from_backup

    def run_then_initializing(self: Ec2Gateway, *args: Any, **kwargs: Any) -> str | None:
        instance_id = original_run(self, *args, **kwargs)
        if instance_id is not None:
            clock.launched.append(instance_id)
            world.ec2fid.set_instance_status(world.region, instance_id, "initializing")
        return instance_id

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps >= POLLS_UNTIL_OK:
            for instance_id in clock.launched:
                world.ec2fid.set_instance_status(world.region, instance_id, "ok")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wait, "CLOCK", wait.Clock(sleep=sleep, monotonic=clock.monotonic))
        patch.setattr(Ec2Gateway, "run_from_backup", run_then_initializing)
        yield clock


def amikeeper(world: World, *args: str) -> int:
    """`$ amikeeper ARGS`, as the operator types it; prints what they see (stdout and stderr)."""
    print(f"\n  $ amikeeper {' '.join(args)}")
    environment = {"AWS_REGION": world.region, "COLUMNS": COLUMNS}
    result = CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)
    for line in result.output.rstrip().splitlines():
        print(f"    {line}".rstrip())
    if result.exit_code != 0:
        print(f"    (exit code {result.exit_code})")
    return result.exit_code


def describe(world: World, instance_id: str) -> Mapping[str, Any]:
    ec2 = boto3.client("ec2", region_name=world.region)
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance: Mapping[str, Any] = reservation["Instances"][0]
    return instance


def launch_settings(instance: Mapping[str, Any]) -> list[str]:
    return [
        instance["SubnetId"],
        ", ".join(sorted(group["GroupId"] for group in instance.get("SecurityGroups", []))) or "default",
        instance.get("IamInstanceProfile", {}).get("Arn", "none"),
        instance.get("KeyName") or "none",
        ", ".join(f"{key}={value}" for key, value in sorted(tags_of(instance).items())),
    ]


def operator_restore(world: World, fleet: Mapping[str, str], now: datetime, name: str = "web-1") -> None:
    heading(f"5. {now:%H:%M}Z the operator CLI: `amikeeper status`; {name} is terminated and restored")
    stack_name = world.stack.parameter_overrides["AWS::StackName"]
    register(world.stack, world.functions, stack_name)
    print(
        f"  stack {stack_name!r} registered in CloudFormation and Lambda as deployed: the CLI finds it there"
    )
    with simulated_now(now):
        _status_then_restore(world, fleet, name)


def _status_then_restore(world: World, fleet: Mapping[str, str], name: str) -> None:
    amikeeper(world, "status")

    instance_id = fleet[name]
    before = describe(world, instance_id)
    boto3.client("ec2", region_name=world.region).terminate_instances(InstanceIds=[instance_id])
    print(f"\n  {name} ({instance_id}) is terminated by mistake.")
    with virtual_waits(world) as clock:
        amikeeper(world, "restore", instance_id, "--dry-run")
        code = amikeeper(world, "restore", instance_id, "--yes")
    if code != 0 or len(clock.launched) != 1:
        raise SystemExit(f"demo: the restore of {name} failed (exit code {code})")
    [restored] = clock.launched
    after = describe(world, restored)
    print(f"\n  the original and the restored {name}, as EC2 describes them:")
    rows: list[list[object]] = [["instance", "state", "subnet", "security groups", "profile", "key", "tags"]]
    rows.append([instance_id, "terminated", *launch_settings(before)])
    rows.append([restored, after["State"]["Name"], *launch_settings(after)])
    table(rows)
    print(
        "  Backup=true is not among them: the AMI records Name and the policy's CopyTags; tag it to opt in."
    )
    print(
        f"  waited {clock.sleeps} polls of {wait.POLL_SECONDS:.0f}s for the status checks "
        "(virtual time: the demo did not sleep)"
    )
