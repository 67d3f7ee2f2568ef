"""Instance state-change events through the template's InstanceStateFunction, against moto.

A subscriber queue on the topic stands in for people: every assertion on notifications is on what
an SQS subscriber really receives (SNS envelope, message attributes, JSON body).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures.logs import handler_lines
from tests.fixtures.stack import (
    STACK_NAME,
    MotoStack,
    instance_event,
    make_backup,
    managed_images,
    run_instances,
)
from tests.sam_local import ResolvedFunction, load_event

# Powertools warns when an invocation records no metric, which is what an ignored event rightly does.

ROOT = Path(__file__).resolve().parents[2]
STOPPED_AT = "2026-11-29T18:42:07Z"
TERMINATED_AT = "2026-11-29T19:06:12Z"
ON_STOP = {"Name": "build-1", "Backup": "true", "Backup:OnStop": "true"}


def terminate(region: str, instance_id: str) -> None:
    boto3.client("ec2", region_name=region).terminate_instances(InstanceIds=[instance_id])


@pytest.fixture
def instance_state(functions: dict[str, ResolvedFunction]) -> ResolvedFunction:
    return functions["InstanceStateFunction"]


# --- stopped -----------------------------------------------------------------------------------------


def test_stopped_with_on_stop_tag_backs_up_through_the_worker_with_trigger_stop(
    instance_state: ResolvedFunction, functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an opted-in instance with Backup:OnStop=true
    [instance_id] = run_instances(stack.region, tags=ON_STOP, data_volumes=1)
    # When it reaches stopped and the worker drains the queue
    result = instance_state.invoke(instance_event(stack, instance_id, "stopped"))
    assert stack.drain(functions["WorkerFunction"].invoke) == [{"batchItemFailures": []}]
    # Then one AMI exists for it, trigger stop, its slot the event's time, named after both
    [image] = managed_images(stack.region)
    tags = {tag["Key"]: tag["Value"] for tag in image["Tags"]}
    assert tags["amikeeper:instance-id"] == instance_id
    assert tags["amikeeper:trigger"] == "stop"
    assert tags["amikeeper:slot"] == STOPPED_AT
    assert tags["Name"] == "build-1"
    assert image["Name"] == f"{STACK_NAME}-i-{instance_id[2:]}-stop-20261129T184207Z" == result["image_name"]
    assert result["action"] == "backup-queued"
    # And nobody is notified of a backup that went well
    assert stack.notifications() == []


def test_on_stop_from_a_named_policy_is_honoured(instance_state: ResolvedFunction, stack: MotoStack) -> None:
    # Given a named policy with on_stop, and an instance following it without an OnStop tag
    stack.set_policies({"build": {"schedule": "weekly@sun", "on_stop": True}})
    [instance_id] = run_instances(stack.region, tags={"Backup": "build"})
    # When it stops
    result = instance_state.invoke(instance_event(stack, instance_id, "stopped"))
    # Then a stop backup of policy build is queued
    [record] = stack.work_messages()
    assert result["action"] == "backup-queued"
    assert '"trigger":"stop"' in record["body"]
    assert '"policy":"build"' in record["body"]


def test_twice_delivered_stop_event_queues_one_work_item(
    instance_state: ResolvedFunction, stack: MotoStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a stop event delivered twice, the second time to a new container
    [instance_id] = run_instances(stack.region, tags=ON_STOP)
    event = instance_event(stack, instance_id, "stopped")
    first = instance_state.invoke(event)
    caplog.clear()
    second = instance_state.invoke(event, fresh=True)
    # Then one work item was queued, and the repeat answered with the first response and said so
    assert len(stack.work_messages()) == 1
    assert second == first
    assert handler_lines(caplog) == ["ignored repeated delivery of an event that was already handled"]


def test_same_stop_re_emitted_with_a_new_event_id_maps_to_the_same_ami(
    instance_state: ResolvedFunction, functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given the same stop (same time) arriving as two distinct events, e.g. after an archive replay
    [instance_id] = run_instances(stack.region, tags=ON_STOP)
    first = instance_state.invoke(instance_event(stack, instance_id, "stopped"))
    second = instance_state.invoke(instance_event(stack, instance_id, "stopped", id="replayed-1"))
    # When both work items reach the worker
    assert stack.drain(functions["WorkerFunction"].invoke) == [{"batchItemFailures": []}]
    # Then the deterministic name made the second a harmless duplicate: one AMI
    assert first["image_name"] == second["image_name"]
    assert len(list(managed_images(stack.region))) == 1


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"Backup": "true"}, "Backup:OnStop is not true for policy default"),
        ({"Backup": "true", "Backup:OnStop": "false"}, "Backup:OnStop is not true for policy default"),
        ({"Backup": "false", "Backup:OnStop": "true"}, "instance is not opted in"),
        ({"Name": "scratch"}, "instance is not opted in"),
        ({"Backup": "true", "Backup:OnStop": "maybe"}, "no on-stop backup: tag Backup:OnStop='maybe'"),
    ],
)
def test_stopped_without_on_stop_does_nothing(
    instance_state: ResolvedFunction,
    stack: MotoStack,
    caplog: pytest.LogCaptureFixture,
    tags: dict[str, str],
    reason: str,
) -> None:
    # Given an instance that does not ask for on-stop backups (or asks invalidly)
    [instance_id] = run_instances(stack.region, tags=tags)
    # When it stops
    result = instance_state.invoke(instance_event(stack, instance_id, "stopped"))
    # Then nothing is queued or sent, and one line says why
    assert result["action"] == "ignored"
    assert stack.work_messages() == []
    assert stack.notifications() == []
    [line] = handler_lines(caplog)
    assert line.startswith(reason)


def test_stop_event_arriving_after_termination_makes_no_work_item(
    instance_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given an OnStop instance whose late stop event arrives once it is already terminated
    [instance_id] = run_instances(stack.region, tags=ON_STOP)
    terminate(stack.region, instance_id)
    # When the stop event is handled
    result = instance_state.invoke(instance_event(stack, instance_id, "stopped"))
    # Then no work item is queued (CreateImage would only fail five times)
    assert result["action"] == "ignored"
    assert "terminated by now" in result["message"]
    assert stack.work_messages() == []


# --- shutting-down / terminated ------------------------------------------------------------------------


def test_terminated_instance_is_notified_with_its_newest_available_backup(
    instance_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given an instance with two backups, the newer one taken at 03:00 today
    [instance_id] = run_instances(stack.region, tags={"Name": "web-1", "Backup": "true"})
    make_backup(stack.region, instance_id, "2026-11-28T03:00:00+00:00")
    newest = make_backup(stack.region, instance_id, "2026-11-29T03:00:00+00:00")
    terminate(stack.region, instance_id)
    # When its terminated event arrives
    result = instance_state.invoke(instance_event(stack, instance_id, "terminated"))
    # Then one instance.terminated notification names it, its newest backup and how long it is kept
    [note] = stack.notifications()
    assert (note.event, note.severity) == ("instance.terminated", "info")
    assert note.subject == f"amikeeper: {instance_id} terminated ({stack.region}), backup {newest}"
    assert len(note.subject) < 100
    document = note.document
    assert document["instance_id"] == instance_id
    assert document["instance_name"] == "web-1"
    assert document["region"] == stack.region
    assert document["image_id"] == newest
    assert document["backup_time"] == "2026-11-29T03:00:00Z"
    assert document["available_backups"] == 2
    assert document["terminated_at"] == TERMINATED_AT
    assert document["orphan_grace_days"] == 30
    assert document["newest_kept_until"] == "2026-12-29T19:06:12Z"
    assert document["retention"] == "daily=7 weekly=4 monthly=6"
    assert f"Restore it from {newest}" in note.text
    assert document["retention_source"] == f"recorded on {newest}"
    assert "until 2026-12-29T19:06:12Z (OrphanGraceDays=30) its backups follow retention" in note.text
    assert "the newest is never deleted; after that they age out" in note.text
    assert result["action"] == "terminated-notified"


def test_shutting_down_then_terminated_each_delivered_twice_notify_once(
    instance_state: ResolvedFunction, stack: MotoStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a backed-up instance being terminated: EC2 sends shutting-down, then terminated
    [instance_id] = run_instances(stack.region, tags={"Backup": "true"})
    make_backup(stack.region, instance_id, "2026-11-29T03:00:00+00:00")
    shutting_down = instance_event(stack, instance_id, "shutting-down")
    terminated = instance_event(stack, instance_id, "terminated")
    terminate(stack.region, instance_id)
    # When EventBridge delivers each of them twice
    results = [
        instance_state.invoke(event) for event in (shutting_down, shutting_down, terminated, terminated)
    ]
    # Then people get exactly one notice, from the first event
    assert [n.event for n in stack.notifications()] == ["instance.terminated"]
    assert [r["action"] for r in results] == [
        "terminated-notified",
        "terminated-notified",
        "already-notified",
        "already-notified",
    ]
    assert f"termination already notified (event {shutting_down['id']})" in handler_lines(caplog)


def test_terminated_opted_in_instance_without_any_backup_is_a_warning(
    instance_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given an opted-in instance terminated before its first backup
    [instance_id] = run_instances(stack.region, tags={"Name": "new-1", "Backup": "true"})
    terminate(stack.region, instance_id)
    # When its terminated event arrives
    instance_state.invoke(instance_event(stack, instance_id, "terminated"))
    # Then the notice says there is nothing to restore from
    [note] = stack.notifications()
    assert (note.event, note.severity) == ("instance.terminated", "warning")
    assert note.document["image_id"] is None
    assert note.document["newest_kept_until"] is None
    assert "NO available backup" in note.text
    assert note.subject.endswith("NO backup")


def test_terminated_instance_opted_out_later_is_still_notified_for_its_backups(
    instance_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given an instance that has backups but was opted out before it was terminated
    [instance_id] = run_instances(stack.region, tags={"Backup": "true"})
    backup = make_backup(stack.region, instance_id, "2026-11-29T03:00:00+00:00")
    boto3.client("ec2", region_name=stack.region).create_tags(
        Resources=[instance_id], Tags=[{"Key": "Backup", "Value": "false"}]
    )
    terminate(stack.region, instance_id)
    # When it is terminated
    instance_state.invoke(instance_event(stack, instance_id, "terminated"))
    # Then its backups still get the notice (retention keeps them under the recorded policy)
    [note] = stack.notifications()
    assert note.document["image_id"] == backup
    assert note.document["policy"] == "default"


def test_terminated_instance_never_backed_up_nor_opted_in_sends_nothing(
    instance_state: ResolvedFunction, stack: MotoStack, caplog: pytest.LogCaptureFixture
) -> None:
    [instance_id] = run_instances(stack.region, tags={"Name": "scratch"})
    terminate(stack.region, instance_id)
    result = instance_state.invoke(instance_event(stack, instance_id, "terminated"))
    assert result["action"] == "ignored"
    assert stack.notifications() == []
    assert handler_lines(caplog) == ["instance is not opted in and has no backups of this stack"]


# --- malformed and unexpected input -----------------------------------------------------------------


def idempotency_records(stack: MotoStack) -> int:
    table = boto3.client("dynamodb", region_name=stack.region)
    return table.scan(TableName=stack.idempotency_table, Select="COUNT")["Count"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda e: e | {"detail": {"instance-id": "web-1", "state": "stopped"}},
            "detail.instance-id: String",
        ),
        (lambda e: e | {"detail": {"state": "stopped"}}, "detail.instance-id: Field required"),
        (
            lambda e: e | {"detail-type": "EC2 Spot Instance Interruption Warning"},
            "detail-type: Input should be",
        ),
        (lambda e: e | {"time": "2026-11-29T18:42:07"}, "time: Input should have timezone info"),
        (lambda e: {k: v for k, v in e.items() if k != "id"}, "id: Field required"),
    ],
)
def test_event_failing_its_model_is_logged_once_and_acknowledged(
    instance_state: ResolvedFunction,
    stack: MotoStack,
    caplog: pytest.LogCaptureFixture,
    mutate: Any,
    reason: str,
) -> None:
    # Given an event that does not fit the EC2 Instance State-change Notification model
    [instance_id] = run_instances(stack.region, tags=ON_STOP)
    event = mutate(instance_event(stack, instance_id, "stopped"))
    # When it is delivered
    result = instance_state.invoke(event)
    # Then the invocation succeeds (no EventBridge retry), says why in one line and does nothing
    assert result["status"] == "ignored"
    [line] = handler_lines(caplog)
    assert line.startswith("ignored malformed event")
    assert reason in line
    assert stack.work_messages() == []
    assert stack.notifications() == []
    assert idempotency_records(stack) == 0


@pytest.mark.parametrize("state", ["hibernating", "running"])
def test_state_amikeeper_does_not_act_on_is_logged_once_and_ignored(
    instance_state: ResolvedFunction, stack: MotoStack, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    # Given an opted-in OnStop instance and an event with a state that needs no action
    [instance_id] = run_instances(stack.region, tags=ON_STOP)
    # When it is delivered
    result = instance_state.invoke(instance_event(stack, instance_id, state))
    # Then nothing happens and one line names the state
    assert result["action"] == "ignored"
    [line] = handler_lines(caplog)
    assert state in line
    assert stack.work_messages() == []
    assert stack.notifications() == []


@pytest.mark.parametrize("state", ["stopped", "terminated"])
def test_instance_id_that_no_longer_exists_is_logged_once_and_ignored(
    instance_state: ResolvedFunction, stack: MotoStack, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    # Given an event about an instance EC2 does not know (any more)
    event = instance_event(stack, "i-0123456789abcdef0", state)
    # When it is delivered
    result = instance_state.invoke(event)
    # Then nothing happens and one line says the instance is gone
    assert result["action"] == "ignored"
    [line] = handler_lines(caplog)
    assert line.startswith("instance no longer exists")
    assert stack.work_messages() == []
    assert stack.notifications() == []


def test_every_instance_state_events_file_is_handled(
    sam_app: Any, instance_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given the events/ files of this function, untouched (their instances do not exist here)
    files = sam_app.events_for("InstanceStateFunction")
    assert {path.name for path in files} >= {
        "instance-state-stopped.json",
        "instance-state-shutting-down.json",
        "instance-state-terminated.json",
    }
    # When each is invoked / Then each parses and ends cleanly without sending anything
    for path in files:
        result = instance_state.invoke(load_event(path))
        assert result["action"] == "ignored", path.name
    assert stack.notifications() == []
