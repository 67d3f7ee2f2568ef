"""backup.failed without a storm: at most one a day for the same instance, region and error.

The planner queues an instance again on every tick until its AMI exists, so an instance whose backup
keeps failing reaches the worker's last attempt every 15 minutes. People must hear about it once a day,
not 96 times; a different error, or another instance, is news and is sent at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from amikeeper import clients
from amikeeper.config import load_settings
from amikeeper.model import WorkItem
from amikeeper.runtime import Runtime
from amikeeper.worker import MAX_RECEIVES, WorkerDeps, back_up
from tests.fixtures.stack import MotoStack, ReceivedNotification, run_instances
from tests.sam_local import ResolvedFunction

TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "tick"}


class CreateImageRefusal:
    """Makes every CreateImage of the stack's EC2 client fail with ``code`` (changeable mid-test)."""

    def __init__(self, region: str, code: str) -> None:
        self.code = code
        clients.ec2(region).meta.events.register("before-call.ec2.CreateImage", self)

    def __call__(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": self.code, "Message": "refused"}}, "CreateImage")


def failure_notices(stack: MotoStack) -> list[ReceivedNotification]:
    return [note for note in stack.notifications() if note.event == "backup.failed"]


def tick_until_dead_lettered(functions: dict[str, ResolvedFunction], stack: MotoStack, at: str) -> int:
    """One planner tick, then every queued item delivered until its last attempt, as SQS would."""
    functions["PlannerFunction"].invoke(TICK | {"scheduled_time": at})
    records = stack.work_messages()
    for attempt in range(1, MAX_RECEIVES + 1):
        for record in records:
            record["attributes"]["ApproximateReceiveCount"] = str(attempt)
        response = functions["WorkerFunction"].invoke({"Records": records})
        assert len(response["batchItemFailures"]) == len(records)
    return len(records)


def test_a_persistently_failing_backup_is_notified_once_a_day_per_instance_and_error(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given two opted-in instances whose CreateImage is refused on every call
    web, db = run_instances(stack.region, tags={"Backup": "true", "Backup:Schedule": "hourly"}, count=2)
    refusal = CreateImageRefusal(stack.region, "UnauthorizedOperation")
    # When a tick queues them and both fail their last attempt
    assert tick_until_dead_lettered(functions, stack, "2026-11-29T10:00:00Z") == 2
    # Then each instance's failure is notified once
    first = failure_notices(stack)
    assert sorted(note.document["instance_id"] for note in first) == sorted([web, db])
    assert all("UnauthorizedOperation" in note.document["reason"] for note in first)
    # When the next ticks queue them again and they fail the same way
    for at in ("2026-11-29T10:15:00Z", "2026-11-29T11:00:00Z"):
        assert tick_until_dead_lettered(functions, stack, at) == 2
    # Then nobody is told again the same day
    assert failure_notices(stack) == []
    # When the failure changes to another error
    refusal.code = "InsufficientInstanceCapacity"
    assert tick_until_dead_lettered(functions, stack, "2026-11-29T12:00:00Z") == 2
    # Then that is news: one notice per instance, naming the new error
    changed = failure_notices(stack)
    assert len(changed) == 2
    assert all("InsufficientInstanceCapacity" in note.document["reason"] for note in changed)


@pytest.fixture
def worker_deps(functions: dict[str, ResolvedFunction]) -> WorkerDeps:
    """The worker's dependencies exactly as its handler builds them at cold start."""
    runtime = Runtime(load_settings(functions["WorkerFunction"].runtime_environment()))
    return WorkerDeps(
        ec2=runtime.ec2,
        notifier=runtime.notifier,
        ledger=runtime.ledger,
        dead_letters=runtime.dead_letters,
        notes=runtime.backup_notes,
    )


def test_the_same_failure_is_notified_again_a_day_later(
    functions: dict[str, ResolvedFunction], stack: MotoStack, worker_deps: WorkerDeps
) -> None:
    # Given a work item whose CreateImage keeps failing
    [instance_id] = run_instances(stack.region, tags={"Backup": "true"})
    functions["PlannerFunction"].invoke(TICK)
    [record] = stack.work_messages()
    item = WorkItem.model_validate_json(record["body"])
    CreateImageRefusal(stack.region, "UnauthorizedOperation")
    morning = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

    def last_attempt_at(now: datetime) -> None:
        with pytest.raises(ClientError):
            back_up(item, MAX_RECEIVES, worker_deps, now)

    # When its last attempt fails in the morning, again that evening, and again the next morning
    last_attempt_at(morning)
    notified_first = failure_notices(stack)
    last_attempt_at(morning + timedelta(hours=13))
    notified_same_day = failure_notices(stack)
    last_attempt_at(morning + timedelta(days=1, minutes=1))
    # Then it was notified the first time and the next day (UTC), not in between
    assert [note.document["instance_id"] for note in notified_first] == [instance_id]
    assert notified_same_day == []
    assert [note.document["instance_id"] for note in failure_notices(stack)] == [instance_id]


def test_an_attempt_before_the_last_notifies_nobody_and_leaves_the_ledger_alone(
    functions: dict[str, ResolvedFunction], stack: MotoStack, worker_deps: WorkerDeps
) -> None:
    # Given a failing work item whose earlier attempts failed too
    run_instances(stack.region, tags={"Backup": "true"})
    functions["PlannerFunction"].invoke(TICK)
    [record] = stack.work_messages()
    item = WorkItem.model_validate_json(record["body"])
    CreateImageRefusal(stack.region, "UnauthorizedOperation")
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    # When attempts 1..4 fail, nobody hears of it; the last attempt is still the first notice
    for attempt in range(1, MAX_RECEIVES):
        with pytest.raises(ClientError):
            back_up(item, attempt, worker_deps, now)
    assert failure_notices(stack) == []
    with pytest.raises(ClientError):
        back_up(item, MAX_RECEIVES, worker_deps, now)
    assert len(failure_notices(stack)) == 1
