"""The demo's world: an in-process AWS (moto with real EC2 semantics), the stack's resources, and the
template's functions resolved as `sam local invoke` would. Nothing here needs an AWS account.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.ec2.models import ec2_backends

from amikeeper import clients
from tests.fixtures.ec2_fidelity import Ec2Fidelity, real_ec2_semantics
from tests.fixtures.stack import MotoStack, ReceivedNotification, create_stack, managed_images
from tests.sam_local import ResolvedFunction, SamApp

ROOT = Path(__file__).resolve().parent.parent
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_SESSION_TOKEN": "demo",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class World:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]
    ec2fid: Ec2Fidelity

    @property
    def region(self) -> str:
        return self.stack.region

    def event(self, name: str, **overrides: Any) -> dict[str, Any]:
        """An events/ file, as `sam local invoke -e events/<name>.json` would send it, with overrides."""
        document: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
        return document | overrides

    def tick(self, function: str, event_file: str, when: datetime, **extra: Any) -> Any:
        scheduled = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.functions[function].invoke(self.event(event_file, scheduled_time=scheduled, **extra))

    def plan(self, when: datetime) -> list[Any]:
        """A planner tick; what the region planner answered for each region task the tick handed out."""
        before = len(self.stack.task_answers)
        self.tick("PlannerFunction", "planner-tick", when)
        return self.stack.task_answers[before:]

    def drain_work_queue(self) -> int:
        failures = 0
        for response in self.stack.drain(self.functions["WorkerFunction"].invoke):
            failures += len(response["batchItemFailures"])
        return failures

    def images(self) -> list[Mapping[str, Any]]:
        return list(managed_images(self.region, self.stack.parameter_overrides["AWS::StackName"]))

    def instance_names(self) -> dict[str, str]:
        ec2 = boto3.client("ec2", region_name=self.region)
        names: dict[str, str] = {}
        for page in ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    names[instance["InstanceId"]] = tags_of(instance).get("Name", "")
        return names


@contextmanager
def demo_world(policies: dict[str, Any]) -> Iterator[World]:
    saved = {name: os.environ.get(name) for name in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with mock_aws(), real_ec2_semantics() as ec2fid:
            clients.reset()
            # Handlers log JSON lines and metrics for CloudWatch; the demo prints results instead.
            stack = create_stack(policies=policies, overrides={"LogLevel": "WARNING"})
            stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
            yield World(
                stack=stack, functions=stack.deploy(SamApp.load(ROOT / "template.yaml")), ec2fid=ec2fid
            )
    finally:
        clients.reset()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def heading(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 96 - len(title)))


def table(rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[col]) for row in cells) for col in range(len(cells[0]))]
    for index, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def show_notifications(notes: Sequence[ReceivedNotification], *, full: bool = False) -> None:
    """What a subscriber of the topic received: attributes and subject, and the email text when asked."""
    if not notes:
        print("  (no notification)")
        return
    for note in notes:
        print(f"  [{note.event} / {note.severity}] {note.subject}")
        if full:
            for line in str(note.document.get("text", "")).splitlines():
                print(f"      {line}")


# --- shared by the later chapters: the simulated clock, where moto reads the wall clock ------------------
@contextmanager
def handler_output_discarded() -> Iterator[None]:
    """What handlers print goes to CloudWatch Logs in AWS; the reader of the demo gets tables instead.

    With POWERTOOLS_METRICS_DISABLED, Powertools keeps adding metrics up across invocations and still
    prints the whole set once one metric holds 100 values, which a simulation of weeks reaches.
    """
    logging.disable(logging.CRITICAL)  # a handler's logger may hold the real stdout from an earlier import
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def settle_creation_dates(world: World, after_slot: timedelta = timedelta(minutes=4)) -> None:
    """moto stamps CreationDate with the wall clock: give each of the stack's AMIs its simulated one."""
    for image in world.images():
        slot = tags_of(image).get("amikeeper:slot")
        if slot:
            created = datetime.fromisoformat(slot.replace("Z", "+00:00")) + after_slot
            world.ec2fid.set_creation_date(world.region, image["ImageId"], created)


@contextmanager
def simulated_clock(module: ModuleType, now: Callable[[], datetime]) -> Iterator[None]:
    """``datetime.now`` in that one module reads the demo's simulated time (moto keeps the wall clock)."""

    class Simulated(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Simulated:
            return cls.fromtimestamp(now().timestamp(), tz)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "datetime", Simulated)
        yield


def set_launch_time(world: World, instance_id: str, when: datetime) -> None:
    """moto stamps LaunchTime with the wall clock; the daily report reads it (a new instance is no violation)."""
    instance = ec2_backends[world.ec2fid.account_id][world.region].get_instance(instance_id)
    instance.launch_time = when.astimezone(UTC).replace(tzinfo=None)
