"""The stack parameter TimeZone end to end: schedule slots and retention's days, weeks and months.

Every test deploys the template with a non-UTC ``TimeZone`` (``--parameter-overrides``) and drives the
real handlers, so the zone has to travel the whole way: parameter, function environment, settings,
policy catalog (default policy, named policies, ``Backup:Schedule`` tags) and retention's calendar.
What a user sees is checked: the AMI's ``amikeeper:slot`` tag (UTC) and name, and which AMIs survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from amikeeper.config import load_settings
from amikeeper.model import tag_map
from amikeeper.runtime import Runtime
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.retention_fleet import Fleet
from tests.fixtures.stack import MotoStack, create_stack, managed_images, run_instances
from tests.sam_local import ResolvedFunction, SamApp

MONTHLY_POLICY = {"monthly": {"schedule": "monthly@1"}}


@pytest.fixture(autouse=True)
def without_public_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's public AMIs only slow these tests down; instances launch from a made-up image."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@dataclass
class Deployment:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]

    def invoke(self, function_id: str, event: Mapping[str, Any]) -> Any:
        return self.functions[function_id].invoke(event)

    def slots_by_instance(self) -> dict[str, str]:
        return {
            tags["amikeeper:instance-id"]: tags["amikeeper:slot"]
            for tags in (tag_map(image.get("Tags")) for image in managed_images(self.stack.region))
        }

    def names_by_instance(self) -> dict[str, str]:
        return {
            tag_map(image.get("Tags"))["amikeeper:instance-id"]: image["Name"]
            for image in managed_images(self.stack.region)
        }


def deploy(sam_app: SamApp, time_zone: str) -> Deployment:
    """The stack as `sam deploy --parameter-overrides TimeZone=<zone>` would make it."""
    stack = create_stack(overrides={"TimeZone": time_zone})
    return Deployment(stack, stack.deploy(sam_app))


def utc_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def compact(slot: str) -> str:
    """'2026-11-28T21:30:00Z' as it appears in an AMI name: '20261128T2130Z'."""
    return slot[:4] + slot[5:7] + slot[8:10] + "T" + slot[11:13] + slot[14:16] + "Z"


# --- schedules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_zone", "tick", "expected"),
    [
        pytest.param(
            "Asia/Kolkata",  # UTC+05:30 all year
            "2026-11-28T22:00:00Z",  # 03:30 on Sunday 29 November in Kolkata
            {
                "default": "2026-11-28T21:30:00Z",  # daily@03:00: 03:00 IST on the 29th
                "tagged": "2026-11-28T19:30:00Z",  # weekly@sun 01:00: 01:00 IST on Sunday the 29th
                "named": "2026-10-31T18:30:00Z",  # monthly@1: 00:00 IST on 1 November
            },
            id="Asia/Kolkata",
        ),
        pytest.param(
            "America/New_York",  # EDT (UTC-4) until 1 November 2026, then EST (UTC-5)
            "2026-11-29T10:00:00Z",  # 05:00 EST on Sunday 29 November
            {
                "default": "2026-11-29T08:00:00Z",  # daily@03:00: 03:00 EST
                "tagged": "2026-11-29T06:00:00Z",  # weekly@sun 01:00: 01:00 EST
                "named": "2026-11-01T04:00:00Z",  # monthly@1: 00:00 EDT on 1 November, before the change
            },
            id="America/New_York",
        ),
    ],
)
def test_scheduled_backups_take_their_slot_in_the_stacks_time_zone(
    aws: Ec2Fidelity, sam_app: SamApp, time_zone: str, tick: str, expected: dict[str, str]
) -> None:
    # Given a stack deployed with a non-UTC TimeZone, and instances on the default policy (daily@03:00),
    # on a Backup:Schedule tag and on a named policy
    deployment = deploy(sam_app, time_zone)
    deployment.stack.set_policies(MONTHLY_POLICY)
    region = deployment.stack.region
    instances = {
        "default": run_instances(region, tags={"Backup": "true"})[0],
        "tagged": run_instances(region, tags={"Backup": "true", "Backup:Schedule": "weekly@sun 01:00"})[0],
        "named": run_instances(region, tags={"Backup": "monthly"})[0],
    }
    # When the planner ticks and the worker drains the queue
    deployment.invoke("PlannerFunction", {"scheduled_time": tick, "execution_id": "zone-tick"})
    for answer in deployment.stack.drain(deployment.functions["WorkerFunction"].invoke):
        assert answer == {"batchItemFailures": []}
    # Then each AMI belongs to the slot at that wall time in the stack's zone, written in UTC
    assert deployment.slots_by_instance() == {instances[kind]: slot for kind, slot in expected.items()}
    # And the AMI name carries the same UTC slot
    assert deployment.names_by_instance() == {
        instances[kind]: f"amikeeper-{instances[kind]}-schedule-{compact(slot)}"
        for kind, slot in expected.items()
    }


# --- retention --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_zone", "retain", "slots", "kept"),
    [
        # Three backups on 28 November UTC; in Kolkata the last one is already on the 29th.
        pytest.param(
            "Asia/Kolkata",
            "daily=2",
            ["2026-11-28T10:00:00Z", "2026-11-28T17:00:00Z", "2026-11-28T20:00:00Z"],
            # 29th IST: 20:00Z; 28th IST: the newest of 10:00Z and 17:00Z
            ["2026-11-28T17:00:00Z", "2026-11-28T20:00:00Z"],
            id="daily-Asia/Kolkata",
        ),
        pytest.param(
            "UTC",
            "daily=2",
            ["2026-11-28T10:00:00Z", "2026-11-28T17:00:00Z", "2026-11-28T20:00:00Z"],
            # one UTC day: only its newest backup
            ["2026-11-28T20:00:00Z"],
            id="daily-UTC",
        ),
        # Backups on 30 November and 1 December UTC; in New York the 03:00Z one is still 30 November.
        pytest.param(
            "America/New_York",
            "monthly=2",
            ["2026-11-30T12:00:00Z", "2026-12-01T03:00:00Z", "2026-12-01T12:00:00Z"],
            # December EST: 1 Dec 12:00Z; November: the newest, 1 Dec 03:00Z (22:00 EST on the 30th)
            ["2026-12-01T03:00:00Z", "2026-12-01T12:00:00Z"],
            id="monthly-America/New_York",
        ),
        pytest.param(
            "UTC",
            "monthly=2",
            ["2026-11-30T12:00:00Z", "2026-12-01T03:00:00Z", "2026-12-01T12:00:00Z"],
            ["2026-11-30T12:00:00Z", "2026-12-01T12:00:00Z"],
            id="monthly-UTC",
        ),
        # Weeks start on Monday: Sunday 29 November 20:00 UTC is already Monday 30th in Kolkata.
        pytest.param(
            "Asia/Kolkata",
            "weekly=2",
            ["2026-11-29T10:00:00Z", "2026-11-29T20:00:00Z", "2026-11-30T10:00:00Z"],
            # week of 30 Nov (IST): newest is 30 Nov 10:00Z; week of 23 Nov: 29 Nov 10:00Z
            ["2026-11-29T10:00:00Z", "2026-11-30T10:00:00Z"],
            id="weekly-Asia/Kolkata",
        ),
        pytest.param(
            "UTC",
            "weekly=2",
            ["2026-11-29T10:00:00Z", "2026-11-29T20:00:00Z", "2026-11-30T10:00:00Z"],
            ["2026-11-29T20:00:00Z", "2026-11-30T10:00:00Z"],
            id="weekly-UTC",
        ),
    ],
)
def test_retention_counts_days_weeks_and_months_in_the_stacks_time_zone(
    aws: Ec2Fidelity, sam_app: SamApp, time_zone: str, retain: str, slots: list[str], kept: list[str]
) -> None:
    # Given a stack in `time_zone` and an instance with three backups around a local day/week/month boundary
    deployment = deploy(sam_app, time_zone)
    retention = deployment.functions["RetentionFunction"]
    runtime = Runtime(load_settings(retention.runtime_environment()))
    fleet = Fleet(deployment.stack.region, runtime.stack, runtime.catalog(), aws)
    instance = fleet.launch({"Backup:Retain": retain})
    for slot in slots:
        fleet.back_up(instance, utc_iso(slot))
    # When the retention function runs a day later
    answer = retention.invoke(
        {"scheduled_time": "2026-12-02T04:00:00Z", "execution_id": "zone-retention", "dry_run": False}
    )
    # Then the newest backup of each local period survives, and the other one is deleted (by the deleter)
    assert answer["regions"][0]["queued"] == len(slots) - len(kept)
    assert [done["regions"][0]["deleted"] for done in deployment.stack.deletion_answers] == [
        len(slots) - len(kept)
    ]
    remaining = sorted(
        tag_map(image.get("Tags"))["amikeeper:slot"] for image in managed_images(deployment.stack.region)
    )
    assert remaining == kept
