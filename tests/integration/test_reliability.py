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

import pytest
from botocore.awsrequest import AWSResponse

from amikeeper import planner
from amikeeper.gateways import ec2 as ec2_gateway
from amikeeper.planner import TasksNotQueued
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
    Attempt,
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
    with counting() as counter, simulated_http(*interceptors):
        yield World(stack, stack.deploy(sam_app), counter)


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


def refuse_region_tasks(attempt: Attempt, forward: Forward) -> AWSResponse:
    """SQS refuses every message for the planner's task queue (e.g. the queue was deleted by hand)."""
    body = attempt.request.body
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    if attempt.key != "sqs:SendMessageBatch" or "planner-tasks" not in text:
        return forward()
    error = (
        '{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The specified queue does not exist."}'
    )
    return response(400, error, {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"})


def test_a_tick_planned_in_two_regions_queues_each_due_instance_once(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    regions = (HOME_REGION, OTHER_REGION)
    with world_of(sam_app, regions=regions) as world:
        # Given two regions, 45 instances (one with an invalid tag) and 15
        home = launch_fleet(HOME_REGION, 44)
        broken = run_instances(HOME_REGION, tags={"Backup": "true", "Backup:Retain": "forever"})
        other = launch_fleet(OTHER_REGION, 15)
        # When the tick runs, and the scheduler delivers the same tick twice
        first = world.plan()
        world.plan()
        # Then each region was planned once, by a task of its own, in one invocation each
        assert first["regions"] == list(regions)
        assert [(answer["region"], answer["enqueued"]) for answer in world.stack.task_answers] == [
            (HOME_REGION, 44),
            (OTHER_REGION, 15),
        ]
        # And each due instance was queued exactly once
        messages = world.stack.work_messages()
        queued = Counter(record["body"] for record in messages)
        assert len(messages) == 59 and max(queued.values()) == 1
        # And the one notice is the invalid tag
        notes = world.stack.notifications()
        assert [note.event for note in notes] == ["policy.invalid"]
        assert notes[0].document["instance_id"] == broken[0]
        # And once the workers ran, every instance has its one AMI
        for start in range(0, len(messages), 10):
            world.functions["WorkerFunction"].invoke({"Records": messages[start : start + 10]})
        assert backups_by_instance(HOME_REGION) == {key: [SLOT] for key in home}
        assert backups_by_instance(OTHER_REGION) == {key: [SLOT] for key in other}


def test_a_region_planner_that_dies_after_queueing_is_delivered_again_and_makes_one_ami_each(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    crashes: list[str] = []
    real_enqueue = planner._enqueue

    def enqueue_then_time_out(plan: planner.BackupPlan, queue: Any) -> None:
        real_enqueue(plan, queue)
        if plan.region == OTHER_REGION and not crashes:
            crashes.append(plan.region)
            raise TimeoutError("Task timed out after 600.00 seconds")

    with (
        mock.patch.object(planner, "_enqueue", enqueue_then_time_out),
        world_of(sam_app, regions=(HOME_REGION, OTHER_REGION)) as world,
    ):
        # Given two regions, and a region planner that dies in the other region after queueing its items
        home = launch_fleet(HOME_REGION, 3)
        other = launch_fleet(OTHER_REGION, 3)
        # When the tick runs
        world.plan()
        # Then SQS delivered that region's task again, which queued its items again
        assert [str(failure) for failure in world.stack.task_failures] == [
            "Task timed out after 600.00 seconds"
        ]
        assert [answer["region"] for answer in world.stack.task_answers] == [HOME_REGION, OTHER_REGION]
        # And once the workers ran, every instance has exactly one AMI, and nobody was mailed
        world.source().drain()
        assert backups_by_instance(HOME_REGION) == {key: [SLOT] for key in home}
        assert backups_by_instance(OTHER_REGION) == {key: [SLOT] for key in other}
        assert world.stack.notifications() == []
        assert world.source().dead_letters() == []


def test_a_tick_whose_region_tasks_sqs_refuses_fails_loudly_and_the_next_tick_does_the_work(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    refusing = [True]

    def refuse_while_broken(attempt: Attempt, forward: Forward) -> AWSResponse:
        return refuse_region_tasks(attempt, forward) if refusing[0] else forward()

    with world_of(sam_app, refuse_while_broken) as world:
        # Given a due fleet and a task queue SQS refuses to take messages for
        fleet = launch_fleet(world.region, 3)
        # When the tick runs / Then it fails naming the region: Lambda retries it, then records it in the
        # failed-invocations queue, and the planner's errors alarm fires
        with pytest.raises(TasksNotQueued, match=f"region task\\(s\\) not queued for {world.region}"):
            world.plan()
        assert world.stack.task_answers == []
        # When the queue works again and the next tick runs, every instance is backed up once
        refusing[0] = False
        world.plan(NOW + timedelta(minutes=15))
        world.source().drain()
        assert backups_by_instance(world.region) == {key: [SLOT] for key in fleet}


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
        world.plan(NOW + timedelta(minutes=15))
        later = world.counter.tally() - before
        assert world.stack.task_answers[-1]["enqueued"] == 0
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
