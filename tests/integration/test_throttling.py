"""EC2 throttling storms: 30% of EC2 attempts answered RequestLimitExceeded at the HTTP layer.

botocore's own adaptive retries run (the sleeps they take are recorded, not slept); SQS redelivers
what still failed. Whatever the storm, the end state is exact: one AMI per instance and slot, and
retention deletes exactly what its rules say.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.call_counter import CallCounter, counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import (
    backups_by_instance,
    managed_snapshot_ids,
    snapshots_of_existing_images,
    tick,
)
from tests.fixtures.event_source import EventSource
from tests.fixtures.stack import MotoStack, create_stack, run_instances
from tests.fixtures.throttling import Throttle, VirtualTime, simulated_http
from tests.sam_local import ResolvedFunction, SamApp

FIRST_DAY = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
RATE = 0.3


@dataclass
class Storm:
    """A stack, its functions and a 30% EC2 throttle in front of moto."""

    stack: MotoStack
    functions: dict[str, ResolvedFunction]
    clock: VirtualTime
    counter: CallCounter
    throttle: Throttle

    def day(self, when: datetime) -> None:
        """The planner tick of the day, the worker drained, then the retention tick an hour later."""
        self.functions["PlannerFunction"].invoke(tick(when))
        assert self.stack.task_failures == []
        EventSource(self.stack, self.functions["WorkerFunction"].invoke).drain()
        retention = self.functions["RetentionFunction"].invoke(
            tick(when + timedelta(hours=1)) | {"dry_run": False}
        )
        assert retention["regions"][0]["error"] is None
        assert self.stack.task_failures == [] and self.stack.deletion_failures == []


@pytest.fixture
def storm(aws: Ec2Fidelity, sam_app: SamApp) -> Iterator[Storm]:
    stack = create_stack(overrides={"DefaultRetention": "daily=2"})
    stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
    throttle = Throttle(RATE, seed=7)
    with counting() as counter, simulated_http(throttle) as clock:
        yield Storm(stack, stack.deploy(sam_app), clock, counter, throttle)


def test_every_instance_is_backed_up_once_per_slot_and_retention_stays_exact(
    storm: Storm,
) -> None:
    world = storm
    # Given 12 opted-in instances, half with a data volume, and 30% of EC2 attempts throttled
    region = world.stack.region
    fleet = run_instances(region, tags={"Backup": "true"}, count=6, data_volumes=1)
    fleet += run_instances(region, tags={"Backup": "true"}, count=6)
    # When three daily cycles run (planner, workers, retention keeping daily=2)
    for day in range(3):
        world.day(FIRST_DAY + timedelta(days=day))
    # Then every instance has exactly the backups of the last two days, one per slot
    kept = ["2026-11-28T03:00:00Z", "2026-11-29T03:00:00Z"]
    assert backups_by_instance(region) == dict.fromkeys(fleet, kept)
    # And the snapshots that exist are exactly those of the AMIs that exist: none lost, none left behind
    assert managed_snapshot_ids(region) == snapshots_of_existing_images(region)
    assert len(managed_snapshot_ids(region)) == 2 * (6 * 2 + 6)
    # And the storm really happened: throttled attempts, retried by botocore, with back-off recorded
    tally = world.counter.tally()
    assert sum(world.throttle.injected.values()) > 20
    assert tally.attempts["ec2:CreateImage"] > tally.calls["ec2:CreateImage"]
    assert world.clock.slept > 0
    # And nobody was mailed: throttling that the retries absorbed is no failure
    events = Counter(note.event for note in world.stack.notifications())
    assert events == {}
