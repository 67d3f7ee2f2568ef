"""Exactly-once effects under at-least-once delivery, crashes, lost answers and deadlines.

Each test runs the template's handlers on moto and checks what a user would: the AMIs that exist
(one per instance and slot), the snapshots that exist, and the notifications a subscriber received.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from botocore.awsrequest import AWSResponse

from amikeeper.gateways import ec2 as ec2_gateway
from tests.fixtures.call_counter import CallCounter, counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import (
    backups_by_instance,
    managed_snapshot_ids,
    snapshots_of_existing_images,
    tick,
)
from tests.fixtures.event_source import EventSource
from tests.fixtures.stack import HOME_REGION, MotoStack, create_stack, run_instances
from tests.fixtures.throttling import (
    AsyncInvokes,
    Attempt,
    Clock,
    Forward,
    Interceptor,
    LostResponse,
    response,
    simulated_http,
)
from tests.sam_local import ResolvedFunction, SamApp

NOW = datetime(2026, 11, 29, 3, 5, tzinfo=UTC)
SLOT = "2026-11-29T03:00:00Z"
OTHER_REGION = "us-east-1"


@dataclass
class World:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]
    counter: CallCounter
    invokes: AsyncInvokes

    @property
    def region(self) -> str:
        return self.stack.region

    def plan(self, when: datetime = NOW, context: Any = None, event: dict[str, Any] | None = None) -> Any:
        return self.functions["PlannerFunction"].invoke(event or tick(when), context)

    def source(self) -> EventSource:
        return EventSource(self.stack, self.functions["WorkerFunction"].invoke)


@contextmanager
def world_of(sam_app: SamApp, *interceptors: Interceptor, **stack_options: Any) -> Iterator[World]:
    stack = create_stack(**stack_options)
    stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
    invokes = AsyncInvokes()
    with counting() as counter, simulated_http(*interceptors, invokes):
        yield World(stack, stack.deploy(sam_app), counter, invokes)


def launch_fleet(region: str, count: int) -> list[str]:
    """``count`` opted-in instances, half of them with one data volume (so two snapshots per AMI)."""
    with_data = run_instances(region, tags={"Backup": "true"}, count=count // 2, data_volumes=1)
    return with_data + run_instances(region, tags={"Backup": "true"}, count=count - count // 2)


def snapshot_count(count: int) -> int:
    return 2 * (count // 2) + (count - count // 2)


def test_every_message_delivered_twice_still_makes_one_ami_each(aws: Ec2Fidelity, sam_app: SamApp) -> None:
    with world_of(sam_app) as world:
        # Given a planned tick
        fleet = launch_fleet(world.region, 6)
        world.plan()
        # When SQS delivers every batch twice
        delivery = world.source().drain(duplicate=True)
        # Then each instance has one AMI for its slot, with its snapshots once
        assert delivery.invocations == 2
        assert backups_by_instance(world.region) == {key: [SLOT] for key in fleet}
        assert managed_snapshot_ids(world.region) == snapshots_of_existing_images(world.region)
        assert len(managed_snapshot_ids(world.region)) == snapshot_count(6)
        # And the second delivery called CreateImage again but made nothing: no failure, nobody mailed
        assert world.counter.tally().calls["ec2:CreateImage"] == 12
        assert world.stack.notifications() == []
        assert world.source().dead_letters() == []


def test_worker_that_dies_after_create_image_before_answering_makes_no_second_ami(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    with world_of(sam_app) as world:
        # Given a planned tick of 15 instances (two SQS batches)
        fleet = launch_fleet(world.region, 15)
        world.plan()
        # When the first worker invocation creates its AMIs and then dies before acknowledging
        delivery = world.source().drain(crash_after=1)
        # Then SQS redelivers that batch, and still each instance has exactly one AMI
        assert delivery.crashes == 1 and delivery.invocations == 3
        assert len(delivery.records) == 25
        assert backups_by_instance(world.region) == {key: [SLOT] for key in fleet}
        assert managed_snapshot_ids(world.region) == snapshots_of_existing_images(world.region)
        assert world.stack.notifications() == []
        assert world.source().dead_letters() == []


def test_throttled_create_image_that_succeeded_on_the_server_is_one_ami(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given EC2 creates the first three AMIs but answers each with RequestLimitExceeded
    lost = LostResponse("CreateImage", times=3)
    with world_of(sam_app, lost) as world:
        fleet = launch_fleet(world.region, 6)
        world.plan()
        # When the workers run, botocore retries those calls and EC2 answers InvalidAMIName.Duplicate
        delivery = world.source().drain()
        # Then that counts as success: one AMI each, no snapshot left over, no failure anywhere
        assert lost.lost == 3
        tally = world.counter.tally()
        assert tally.attempts["ec2:CreateImage"] == tally.calls["ec2:CreateImage"] + 3 == 9
        assert delivery.failures_reported == 0
        assert backups_by_instance(world.region) == {key: [SLOT] for key in fleet}
        assert managed_snapshot_ids(world.region) == snapshots_of_existing_images(world.region)
        assert len(managed_snapshot_ids(world.region)) == snapshot_count(6)
        assert world.stack.notifications() == []


def run_with_hand_offs(world: World, budget_ms: int, clock: Clock) -> list[Any]:
    """Invoke the planner, then every continuation it queued, each with a fresh (short) budget."""
    planner = world.functions["PlannerFunction"]
    results = [world.plan(context=planner.context(budget_ms=budget_ms, clock=clock.read))]
    while queued := world.invokes.take():
        [continuation] = queued
        assert continuation.function.endswith(f":function:{planner.function_name}")
        results.append(world.plan(event=continuation.payload, context=planner.context(budget_ms, clock.read)))
    return results


def test_planner_short_of_time_hands_the_rest_on_and_nothing_is_lost_or_queued_twice(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given two regions, 45 instances (one with an invalid tag) and 15, and a planner invocation that
    # has 20 s: each SendMessageBatch takes 2 s, and it keeps 15 s in hand
    clock = Clock(seconds_per_attempt=2.0, operations=frozenset({"sqs:SendMessageBatch"}))
    regions = (HOME_REGION, OTHER_REGION)
    with world_of(sam_app, clock, regions=regions) as world:
        home = launch_fleet(HOME_REGION, 44)
        broken = run_instances(HOME_REGION, tags={"Backup": "true", "Backup:Retain": "forever"})
        other = launch_fleet(OTHER_REGION, 15)
        # When the tick runs, and every continuation it hands on runs too
        results = run_with_hand_offs(world, budget_ms=20_000, clock=clock)
        # Then it took three invocations: 30 items, then the other 14 of home, then the other region
        assert [r["continued"] for r in results] == [True, True, False]
        assert [[region["enqueued"] for region in r["regions"]] for r in results] == [[30], [14], [15]]
        # And each due instance was queued exactly once
        messages = world.stack.work_messages()
        queued = Counter(record["body"] for record in messages)
        assert len(messages) == 59 and max(queued.values()) == 1
        # And the one notice is the invalid tag: handing on is routine, nobody is mailed for it
        notes = world.stack.notifications()
        assert [note.event for note in notes] == ["policy.invalid"]
        assert notes[0].document["instance_id"] == broken[0]
        # And once the workers ran, every instance has its one AMI
        for start in range(0, len(messages), 10):
            world.functions["WorkerFunction"].invoke({"Records": messages[start : start + 10]})
        assert backups_by_instance(HOME_REGION) == {key: [SLOT] for key in home}
        assert backups_by_instance(OTHER_REGION) == {key: [SLOT] for key in other}


def test_planner_with_no_time_at_all_still_moves_on_one_batch_per_invocation(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    clock = Clock(seconds_per_attempt=0.0, operations=frozenset())
    with world_of(sam_app, clock) as world:
        # Given 12 due instances and invocations that are already past their reserve
        launch_fleet(world.region, 12)
        # When the tick runs with every continuation
        results = run_with_hand_offs(world, budget_ms=0, clock=clock)
        # Then each invocation queued one batch and handed on, and all 12 were queued once, quietly
        assert [r["regions"][0]["enqueued"] for r in results] == [10, 2]
        assert len(world.stack.work_messages()) == 12
        assert world.stack.notifications() == []


def refuse_invoke(attempt: Attempt, forward: Forward) -> AWSResponse:
    """Lambda refuses the Invoke, e.g. because the role lacks lambda:InvokeFunction on the function."""
    if attempt.key != "lambda:Invoke":
        return forward()
    body = '{"Type": "User", "Message": "not authorized to perform: lambda:InvokeFunction"}'
    return response(403, body, {"x-amzn-ErrorType": "AccessDeniedException"})


def test_refused_hand_off_is_reported_and_the_next_tick_finishes_the_work(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    clock = Clock(seconds_per_attempt=0.0, operations=frozenset())
    with world_of(sam_app, clock, refuse_invoke, regions=(HOME_REGION, OTHER_REGION)) as world:
        # Given two regions and a planner whose asynchronous Invoke of itself is refused
        home = launch_fleet(HOME_REGION, 3)
        other = launch_fleet(OTHER_REGION, 3)
        planner = world.functions["PlannerFunction"]
        first = world.plan(context=planner.context(budget_ms=0, clock=clock.read))
        # Then the summary says which region was not planned, and why
        assert first["continued"] is False and "could not continue" in first["hand_off_error"]
        [summary] = world.stack.notifications()
        assert summary.severity == "error"
        rows = {row["region"]: row for row in summary.document["regions"]}
        assert rows[HOME_REGION]["enqueued"] == 3
        assert rows[OTHER_REGION]["error"].startswith("not planned: could not continue")
        # When the next tick runs with time to spare, everything is backed up once
        world.plan(NOW + timedelta(minutes=15))
        world.source().drain()
        assert backups_by_instance(HOME_REGION) == {key: [SLOT] for key in home}
        assert backups_by_instance(OTHER_REGION) == {key: [SLOT] for key in other}


def test_listings_longer_than_one_page_are_read_to_the_end(aws: Ec2Fidelity, sam_app: SamApp) -> None:
    # Given pages of 5 items (EC2's smallest) for instances, images and snapshots, and 12 instances
    with (
        mock.patch.object(ec2_gateway, "PAGE_SIZE", 5),
        world_of(sam_app, overrides={"DefaultRetention": "daily=2"}) as world,
    ):
        # (one reservation each: EC2 pages DescribeInstances by reservation)
        fleet = [
            run_instances(world.region, tags={"Backup": "true"}, data_volumes=index % 2)[0]
            for index in range(12)
        ]
        # When three daily cycles run: planner, workers, retention keeping two days
        for day in (2, 1, 0):
            when = NOW - timedelta(days=day)
            before = world.counter.tally()
            world.plan(when)
            planner = world.counter.tally() - before
            world.source().drain()
            before = world.counter.tally()
            world.functions["RetentionFunction"].invoke(tick(when + timedelta(hours=1), dry_run=False))
            retention = world.counter.tally() - before
        # Then every instance has exactly the last two days' backups, and no snapshot beyond theirs
        assert backups_by_instance(world.region) == {key: ["2026-11-28T03:00:00Z", SLOT] for key in fleet}
        assert managed_snapshot_ids(world.region) == snapshots_of_existing_images(world.region)
        assert len(managed_snapshot_ids(world.region)) == 2 * snapshot_count(12)
        # And the last planner run read 12 instances page by page, and no AMI of earlier slots
        assert (planner.items["ec2:DescribeInstances"], planner.calls["ec2:DescribeInstances"]) == (12, 3)
        assert planner.items.get("ec2:DescribeImages", 0) == 0
        # And a tick later in the slot reads the slot's 12 AMIs page by page (and the stop/manual ones)
        before = world.counter.tally()
        again = world.plan(NOW + timedelta(minutes=15))
        later = world.counter.tally() - before
        assert again["regions"][0]["enqueued"] == 0
        assert (later.items["ec2:DescribeImages"], later.calls["ec2:DescribeImages"]) == (12, 3 + 1)
        # And the last retention run read 12 instances, 36 AMIs and 54 snapshots page by page
        assert (
            retention.items["ec2:DescribeInstances"] >= 12 and retention.calls["ec2:DescribeInstances"] >= 3
        )
        assert retention.items["ec2:DescribeImages"] >= 36 and retention.calls["ec2:DescribeImages"] >= 8
        assert (
            retention.items["ec2:DescribeSnapshots"] >= 54 and retention.calls["ec2:DescribeSnapshots"] >= 11
        )
        assert retention.calls["ec2:DeregisterImage"] == 12
