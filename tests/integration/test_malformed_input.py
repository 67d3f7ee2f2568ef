"""Input that does not fit its model, through the template's handlers: it never acts, and it is never quiet.

- A manual or scheduled invocation (planner, retention, report) with an unknown key or a wrong type fails
  with one line naming the key, before anything is read or changed: ``{"dryRun": true}`` is not a real run.
- An EC2 event that AWS sent in a shape amikeeper does not know is acknowledged (a retry cannot fix it),
  logged at ERROR with its id and reason, and counted in the metric ``MalformedEvents``.
- A work message that can never be a work item goes to the dead-letter queue on its first delivery, with
  the reason and its message id, logged at ERROR and counted in ``MalformedWorkItems``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from amikeeper import clients
from amikeeper.events import InvalidEventError
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.logs import emitted_metrics
from tests.fixtures.stack import MotoStack, instance_event, make_backup, managed_images, run_instances
from tests.sam_local import ResolvedFunction, load_event

ROOT = Path(__file__).resolve().parents[2]
TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "manual"}
TICK_KEYS = "scheduled_time, execution_id, dry_run"


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the handlers logged at ERROR: what an alarm on the log group, or a person, would look for."""
    return [r.getMessage() for r in caplog.records if r.name == "amikeeper" and r.levelno >= logging.ERROR]


def image_ids(stack: MotoStack) -> set[str]:
    return {image["ImageId"] for image in managed_images(stack.region)}


# --- manual and scheduled invocations ---------------------------------------------------------------


@pytest.fixture
def expiring(stack: MotoStack, aws: Ec2Fidelity) -> set[str]:
    """Three daily backups of an instance that keeps one: a real retention run deletes two."""
    [instance_id] = run_instances(stack.region, tags={"Backup": "true", "Backup:Retain": "last=1"})
    return {
        make_backup(stack.region, instance_id, f"2026-11-{day}T03:00:00+00:00") for day in ("27", "28", "29")
    }


@pytest.mark.parametrize(
    ("typo", "message"),
    [
        ({"dryRun": True}, f"unknown key 'dryRun' (allowed: {TICK_KEYS})"),
        ({"dry-run": True}, f"unknown key 'dry-run' (allowed: {TICK_KEYS})"),
        ({"dry_run": "maybe"}, "dry_run: Input should be a valid boolean"),
        ({"scheduled_time": "tomorrow"}, "scheduled_time: Input should be a valid datetime"),
    ],
)
def test_mistyped_retention_event_fails_naming_the_key_and_deletes_nothing(
    functions: dict[str, ResolvedFunction],
    stack: MotoStack,
    expiring: set[str],
    typo: dict[str, Any],
    message: str,
) -> None:
    retention = functions["RetentionFunction"]
    # Given backups a real retention run would delete, and an operator who meant a dry run but mistyped it
    # When the event is invoked by hand
    with pytest.raises(InvalidEventError) as refused:
        retention.invoke(TICK | typo)
    # Then the invocation fails with one line that names the key
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    # And every AMI is still there, and nobody was told anything
    assert image_ids(stack) == expiring
    assert stack.notifications() == []
    # And the same tick, spelt right, is a dry run that also deletes nothing
    preview = retention.invoke(TICK | {"dry_run": True})
    assert preview["dry_run"] is True
    assert image_ids(stack) == expiring
    # While the real run deletes (so the refused event really would have acted)
    retention.invoke(TICK | {"dry_run": False})
    assert len(image_ids(stack)) == 1


def test_mistyped_planner_event_fails_naming_the_key_and_queues_nothing(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an opted-in instance that is due
    run_instances(stack.region, tags={"Backup": "true"})
    # When the planner is invoked by hand with a misspelt time
    with pytest.raises(InvalidEventError) as refused:
        functions["PlannerFunction"].invoke({"scheduledTime": "2026-11-29T10:00:00Z"})
    # Then it fails naming the key and every key it knows, and nothing was queued or sent
    assert str(refused.value) == (
        "unknown key 'scheduledTime' (allowed: scheduled_time, execution_id, dry_run)"
    )
    assert stack.work_messages() == []
    assert stack.notifications() == []


def test_region_task_with_an_unknown_key_is_refused_and_ends_in_the_task_dead_letter_queue(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given a due instance, and a region task someone put on the task queue by hand, with a misspelt key
    run_instances(stack.region, tags={"Backup": "true"})
    body = {"version": 1, "region": stack.region, "scheduledTime": "2026-11-29T10:00:00Z"}
    sqs = boto3.client("sqs", region_name=stack.region)
    sqs.send_message(
        QueueUrl=stack.planner_task_queue_url,
        MessageBody=json.dumps(body),
        MessageGroupId=stack.region,
        MessageDeduplicationId="by-hand",
    )
    # When the queue delivers it (after any invocation of the stack)
    functions["ReportFunction"].invoke({"scheduled_time": "2026-11-29T07:00:00Z"})
    stack.notifications()
    # Then every delivery failed naming the key, nothing was queued, and after three it is dead-lettered
    assert [str(failure) for failure in stack.task_failures] == 3 * [
        "unknown key 'Records.0.body.scheduledTime' (allowed: version, region, scheduled_time, execution_id); "
        "Records.0.body.scheduled_time: Field required"
    ]
    assert stack.work_messages() == []
    dead = sqs.receive_message(QueueUrl=stack.planner_task_dead_letter_queue_url)["Messages"]
    assert [json.loads(message["Body"]) for message in dead] == [body]


def test_mistyped_report_event_fails_naming_the_key_and_sends_nothing(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an opted-in instance with no backup (a report would flag it)
    run_instances(stack.region, tags={"Backup": "true"})
    # When the report is invoked by hand with a key it does not have
    with pytest.raises(InvalidEventError) as refused:
        functions["ReportFunction"].invoke(TICK | {"region": "eu-west-1"})
    # Then it fails naming the key, and no report went out
    assert str(refused.value) == f"unknown key 'region' (allowed: {TICK_KEYS})"
    assert stack.notifications() == []


# --- EC2 events AWS sends -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda e: e | {"detail": e["detail"] | {"state-reason": "user"}},
            "unknown key 'detail.state-reason'",
        ),
        (lambda e: e | {"ingestion-time": "2026-11-29T18:42:08Z"}, "unknown key 'ingestion-time'"),
        (lambda e: e | {"detail": {"state": "stopped"}}, "detail.instance-id: Field required"),
    ],
)
def test_instance_event_in_an_unknown_shape_is_acknowledged_logged_at_error_and_counted(
    functions: dict[str, ResolvedFunction],
    stack: MotoStack,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    reason: str,
) -> None:
    # Given an instance that backs up on stop, and a stop event whose shape AWS changed
    [instance_id] = run_instances(stack.region, tags={"Backup": "true", "Backup:OnStop": "true"})
    event = change(instance_event(stack, instance_id, "stopped"))
    capsys.readouterr()
    # When it is delivered
    result = functions["InstanceStateFunction"].invoke(event)
    # Then the invocation succeeds (EventBridge must not retry it) and nothing was queued or sent
    assert result["status"] == "ignored"
    assert stack.work_messages() == []
    assert stack.notifications() == []
    # And one ERROR line names the event and what is wrong, and the MalformedEvents metric counts it
    [line] = error_lines(caplog)
    assert event["id"] in line
    assert reason in line
    assert emitted_metrics(capsys) == {"MalformedEvents": 1}


def test_ami_event_in_an_unknown_shape_is_acknowledged_logged_at_error_and_counted(
    functions: dict[str, ResolvedFunction],
    stack: MotoStack,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an AMI failure event with a detail field amikeeper does not know
    event = load_event(ROOT / "events" / "ami-state-failed.json")
    event["detail"] = event["detail"] | {"FailureCode": "Server.InternalError"}
    capsys.readouterr()
    # When it is delivered
    result = functions["AmiStateFunction"].invoke(event)
    # Then it is acknowledged without a notice, logged at ERROR with its id and reason, and counted
    assert result["status"] == "ignored"
    assert stack.notifications() == []
    [line] = error_lines(caplog)
    assert event["id"] in line
    assert "unknown key 'detail.FailureCode' (allowed: ImageId, State, ErrorMessage, RequestId)" in line
    assert emitted_metrics(capsys) == {"MalformedEvents": 1}


# --- work messages ----------------------------------------------------------------------------------


def dead_letters(stack: MotoStack) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=stack.region)
    response = sqs.receive_message(
        QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return [dict(message) for message in response.get("Messages", [])]


@pytest.fixture
def queued(functions: dict[str, ResolvedFunction], stack: MotoStack) -> list[dict[str, Any]]:
    """The work queue's records after a planner tick for two due instances."""
    run_instances(stack.region, tags={"Backup": "true"}, count=2)
    functions["PlannerFunction"].invoke(TICK)
    records = stack.work_messages()
    assert len(records) == 2
    return records


def with_body(record: dict[str, Any], message_id: str, body: str) -> dict[str, Any]:
    return dict(record, messageId=message_id, body=body)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda body: "not json {", "body: Invalid JSON"),
        (lambda body: json.dumps({k: v for k, v in json.loads(body).items() if k != "slot"}), "body.slot"),
        (lambda body: json.dumps(json.loads(body) | {"no_reboot": "sometimes"}), "body.no_reboot"),
        (lambda body: json.dumps(json.loads(body) | {"version": 2}), "body.version"),
        (lambda body: json.dumps(json.loads(body) | {"retries": 3}), "unknown key 'body.retries'"),
    ],
)
def test_malformed_work_message_is_dead_lettered_on_its_first_delivery(
    functions: dict[str, ResolvedFunction],
    stack: MotoStack,
    queued: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    reason: str,
) -> None:
    # Given a batch with one message that can never be a work item, among two good ones
    good_first, good_second = queued
    broken = with_body(good_first, "broken-1", change(good_first["body"]))
    capsys.readouterr()
    caplog.clear()
    # When the worker receives the batch, for the first time
    response = functions["WorkerFunction"].invoke({"Records": [good_first, broken, good_second]})
    # Then no record goes back for a retry: the good ones are backed up, the bad one is acknowledged
    assert response == {"batchItemFailures": []}
    assert len(image_ids(stack)) == 2
    # And it is in the dead-letter queue as it was sent, with why and which message it was
    [dead] = dead_letters(stack)
    assert dead["Body"] == broken["body"]
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["amikeeper-original-message-id"] == "broken-1"
    assert reason in attributes["amikeeper-reason"]
    # And one ERROR line names the message and the reason, and MalformedWorkItems counts it
    [line] = error_lines(caplog)
    assert "broken-1" in line
    assert reason in line
    metrics = emitted_metrics(capsys)
    assert (metrics["MalformedWorkItems"], metrics["BackupsStarted"]) == (1, 2)


def test_malformed_work_message_that_cannot_be_dead_lettered_is_left_to_sqs(
    functions: dict[str, ResolvedFunction],
    stack: MotoStack,
    queued: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given SendMessage to the dead-letter queue is refused
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "SendMessage")

    clients.sqs(stack.region).meta.events.register("before-call.sqs.SendMessage", refuse)
    good, _ = queued
    broken = with_body(good, "broken-1", "not json {")
    caplog.clear()
    # When the worker receives it with a good item
    response = functions["WorkerFunction"].invoke({"Records": [broken, good]})
    # Then the bad record fails normally (SQS delivers it again, its redrive policy still applies)
    assert response == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    assert len(image_ids(stack)) == 1
    assert dead_letters(stack) == []
    # And the ERROR line says it could not be dead-lettered, and why the message is malformed
    [line] = error_lines(caplog)
    assert "broken-1" in line
    assert "AccessDenied" in line
    assert "body: Invalid JSON" in line
