"""AMI state-change events through the template's AmiStateFunction, against moto with real AMI states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from amikeeper import clients
from tests.fixtures.call_counter import counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.logs import emitted_metric_documents, handler_lines
from tests.fixtures.stack import MotoStack, make_backup, run_instances
from tests.sam_local import ResolvedFunction, load_event

# Powertools warns when an invocation records no metric, which is what an ignored event rightly does.

ROOT = Path(__file__).resolve().parents[2]
SLOT = "2026-11-29T03:00:00+00:00"
EC2_REASON = "Snapshot creation failed for volume vol-0123456789abcdef0: the volume was detached"


def ami_event(stack: MotoStack, image_id: str, state: str, **envelope: Any) -> dict[str, Any]:
    """The events/ file for that state (a real EventBridge envelope), about this AMI and region."""
    event = load_event(ROOT / "events" / f"ami-state-{'failed' if state == 'failed' else 'available'}.json")
    event["region"] = stack.region
    event["resources"] = [f"arn:aws:ec2:{stack.region}::image/{image_id}"]
    event["detail"] = event["detail"] | {"ImageId": image_id, "State": state}
    return event | envelope


@pytest.fixture
def ami_state(functions: dict[str, ResolvedFunction]) -> ResolvedFunction:
    return functions["AmiStateFunction"]


@pytest.fixture
def pending_backup(aws: Ec2Fidelity, stack: MotoStack) -> tuple[str, str]:
    """(instance id, AMI id) of a backup still pending, as EC2 leaves it right after CreateImage."""
    [instance_id] = run_instances(stack.region, tags={"Name": "db-1", "Backup": "true"}, data_volumes=1)
    aws.start_pending()
    return instance_id, make_backup(stack.region, instance_id, SLOT)


def test_available_backup_counts_as_completed_with_its_time_from_slot(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    aws: Ec2Fidelity,
    pending_backup: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a pending backup of the 03:00 slot that becomes available at 03:09:26
    instance_id, image_id = pending_backup
    aws.set_image_state(stack.region, image_id, "available")
    # When the AMI State Change event arrives
    result = ami_state.invoke(ami_event(stack, image_id, "available", time="2026-11-29T03:09:26Z"))
    # Then completion and time-to-available (566 s since the slot) are recorded, and nobody is notified
    assert result["action"] == "completed"
    assert result["instance_id"] == instance_id
    assert emitted_metric_documents(capsys) == [{"BackupsCompleted": 1.0, "TimeToAvailableSeconds": 566.0}]
    assert stack.notifications() == []


def test_failed_backup_publishes_backup_failed_with_ec2s_reason(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    aws: Ec2Fidelity,
    pending_backup: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a backup that EC2 moved to failed, with its StateReason
    instance_id, image_id = pending_backup
    aws.set_image_state(stack.region, image_id, "failed", reason=EC2_REASON, code="Client.InternalError")
    # When the failed event arrives
    result = ami_state.invoke(ami_event(stack, image_id, "failed"))
    # Then one backup.failed (error) names the instance, the AMI and EC2's message
    [note] = stack.notifications()
    assert (note.event, note.severity) == ("backup.failed", "error")
    assert note.subject == f"amikeeper: backup of {instance_id} failed in {stack.region} ({image_id})"
    assert len(note.subject) < 100
    document = note.document
    assert document["stage"] == "image"
    assert document["instance_id"] == instance_id
    assert document["instance_name"] == "db-1"
    assert document["image_id"] == image_id
    assert document["slot"] == "2026-11-29T03:00:00Z"
    assert document["reason"] == f"Client.InternalError: {EC2_REASON}"
    assert EC2_REASON in note.text
    assert result["action"] == "failed"
    assert emitted_metric_documents(capsys) == [{"BackupsFailed": 1.0}]


@pytest.mark.parametrize("state", ["available", "failed"])
def test_twice_delivered_ami_event_counts_and_notifies_once(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    aws: Ec2Fidelity,
    pending_backup: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    state: str,
) -> None:
    # Given a final AMI state, and its event delivered twice (the second time to a new container)
    _, image_id = pending_backup
    aws.set_image_state(stack.region, image_id, state)
    event = ami_event(stack, image_id, state)
    # When both deliveries are handled
    first = ami_state.invoke(event)
    second = ami_state.invoke(event, fresh=True)
    # Then the second replays the first answer: one metric set, at most one notification
    assert first == second
    assert len(emitted_metric_documents(capsys)) == 1
    assert [n.event for n in stack.notifications()] == (["backup.failed"] if state == "failed" else [])


def test_ami_of_another_stack_or_tool_is_ignored(
    ami_state: ResolvedFunction, stack: MotoStack, aws: Ec2Fidelity, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a failed AMI made by another amikeeper stack, and one made by hand
    [instance_id] = run_instances(stack.region, tags={"Backup": "true"})
    theirs = make_backup(stack.region, instance_id, SLOT, stack_name="other-stack")
    aws.set_image_state(stack.region, theirs, "failed")
    by_hand = boto3.client("ec2", region_name=stack.region).create_image(
        InstanceId=instance_id, Name="manual"
    )
    # When their events arrive
    results = [
        ami_state.invoke(ami_event(stack, theirs, "failed")),
        ami_state.invoke(ami_event(stack, by_hand["ImageId"], "available")),
    ]
    # Then nothing is counted or sent, and each says whose it is
    assert [r["action"] for r in results] == ["ignored", "ignored"]
    assert handler_lines(caplog) == [
        "AMI is not a backup of this stack (made by stack 'other-stack')",
        "AMI is not a backup of this stack (made by another tool or a person)",
    ]
    assert stack.notifications() == []


def test_already_deregistered_ami_is_logged_once_and_ignored(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    pending_backup: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a failed backup that retention deregistered before the event was handled
    _, image_id = pending_backup
    boto3.client("ec2", region_name=stack.region).deregister_image(ImageId=image_id)
    # When its failed event arrives
    result = ami_state.invoke(ami_event(stack, image_id, "failed"))
    # Then nothing is sent or counted, and one line says why
    assert result["action"] == "ignored"
    assert handler_lines(caplog) == ["AMI no longer exists (already deregistered)"]
    assert stack.notifications() == []
    assert emitted_metric_documents(capsys) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e | {"detail": {"ImageId": "ami-42", "State": "failed"}}, "detail.ImageId: String"),
        (lambda e: e | {"detail": {"ImageId": "ami-0123456789abcdef0"}}, "detail.State: Field required"),
        (lambda e: e | {"source": "aws.imagebuilder"}, "source: Input should be 'aws.ec2'"),
        (lambda e: e | {"time": "yesterday"}, "time: Input should be a valid datetime"),
        ("not an event", "event: Invalid JSON"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_event_failing_its_model_is_logged_once_and_acknowledged(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    caplog: pytest.LogCaptureFixture,
    mutate: Any,
    reason: str,
) -> None:
    # Given an event that does not fit the EC2 AMI State Change model
    event = mutate(ami_event(stack, "ami-0123456789abcdef0", "failed")) if callable(mutate) else mutate
    # When it is delivered
    result = ami_state.invoke(event)
    # Then the invocation succeeds (no EventBridge retry), says why in one line and sends nothing
    assert result["status"] == "ignored"
    [line] = handler_lines(caplog)
    assert line.startswith("ignored malformed event")
    assert reason in line
    assert stack.notifications() == []


@pytest.mark.parametrize("state", ["disabled", "exploded"])
def test_state_amikeeper_does_not_act_on_is_logged_once_and_ignored(
    ami_state: ResolvedFunction,
    stack: MotoStack,
    pending_backup: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    state: str,
) -> None:
    _, image_id = pending_backup
    result = ami_state.invoke(ami_event(stack, image_id, state))
    assert result["action"] == "ignored"
    [line] = handler_lines(caplog)
    assert state in line
    assert stack.notifications() == []


def test_every_ami_state_events_file_is_handled(
    sam_app: Any, ami_state: ResolvedFunction, stack: MotoStack
) -> None:
    # Given the events/ files of this function, untouched (their AMIs do not exist here)
    files = sam_app.events_for("AmiStateFunction")
    assert {path.name for path in files} >= {"ami-state-available.json", "ami-state-failed.json"}
    # When each is invoked / Then each parses and ends cleanly without sending anything
    for path in files:
        assert ami_state.invoke(load_event(path))["action"] == "ignored", path.name
    assert stack.notifications() == []


def test_a_backup_the_worker_made_completes_without_an_ec2_call_and_any_other_ami_is_looked_up(
    functions: dict[str, ResolvedFunction], ami_state: ResolvedFunction, stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given a backup the planner queued and the worker made (it notes the AMI), still pending
    [instance_id] = run_instances(stack.region, tags={"Name": "web-1", "Backup": "true"})
    aws.start_pending()
    functions["PlannerFunction"].invoke({"scheduled_time": "2026-11-29T03:05:00Z", "execution_id": "t"})
    assert stack.drain(functions["WorkerFunction"].invoke) == [{"batchItemFailures": []}]
    [image] = boto3.client("ec2", region_name=stack.region).describe_images(Owners=["self"])["Images"]
    aws.set_image_state(stack.region, image["ImageId"], "available")
    # When its available event arrives (a fresh container, its clients counted)
    clients.reset()
    ami_state.recycle()
    with counting() as counter:
        result = ami_state.invoke(
            ami_event(stack, image["ImageId"], "available", time="2026-11-29T03:09:26Z")
        )
    # Then it completed 566 s after its slot, and EC2 was not asked
    assert (result["action"], result["instance_id"], result["seconds_to_available"]) == (
        "completed",
        instance_id,
        566.0,
    )
    assert [key for key in counter.tally().calls if key.startswith("ec2:")] == []
    # And an AMI nobody noted (a person's) is looked up in EC2 once, and ignored
    foreign = boto3.client("ec2", region_name=stack.region).create_image(
        InstanceId=instance_id, Name="by-hand"
    )
    aws.set_image_state(stack.region, foreign["ImageId"], "available")
    with counting() as counter:
        ignored = ami_state.invoke(ami_event(stack, foreign["ImageId"], "available", id="another-event"))
    assert ignored["action"] == "ignored" and "not a backup of this stack" in ignored["message"]
    assert counter.tally().calls["ec2:DescribeImages"] == 1


def test_a_note_the_worker_could_not_write_costs_one_lookup_and_nothing_else(
    functions: dict[str, ResolvedFunction],
    ami_state: ResolvedFunction,
    stack: MotoStack,
    aws: Ec2Fidelity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given DynamoDB refuses the worker's note of the AMI it creates
    [instance_id] = run_instances(stack.region, tags={"Name": "web-1", "Backup": "true"})
    functions["PlannerFunction"].invoke({"scheduled_time": "2026-11-29T03:05:00Z", "execution_id": "t"})

    def refuse(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"
        )

    dynamodb = clients.dynamodb(stack.region)
    dynamodb.meta.events.register("before-call.dynamodb.PutItem", refuse)
    # When the worker backs the instance up
    answers = stack.drain(functions["WorkerFunction"].invoke)
    dynamodb.meta.events.unregister("before-call.dynamodb.PutItem", refuse)
    # Then the backup exists and counts as made, and the missing note is logged as a warning
    assert answers == [{"batchItemFailures": []}]
    [image] = boto3.client("ec2", region_name=stack.region).describe_images(Owners=["self"])["Images"]
    warnings = [
        r for r in caplog.records if r.name == "amikeeper" and r.getMessage() == "backup note not written"
    ]
    assert [(w.levelname, getattr(w, "image_id", None)) for w in warnings] == [("WARNING", image["ImageId"])]
    # And its available event still completes it, after one DescribeImages (a fresh container, counted)
    clients.reset()
    ami_state.recycle()
    with counting() as counter:
        result = ami_state.invoke(
            ami_event(stack, image["ImageId"], "available", time="2026-11-29T03:09:26Z")
        )
    assert (result["action"], result["instance_id"]) == ("completed", instance_id)
    assert counter.tally().calls["ec2:DescribeImages"] == 1
