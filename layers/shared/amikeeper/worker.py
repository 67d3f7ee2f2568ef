"""The worker (SPEC §6): one SQS message, one CreateImage.

Retries belong to SQS: a failed item is raised so that only it returns to the queue, and after the
queue's last attempt it lands in the dead-letter queue. People hear about it on that last attempt, at
most once a day for the same instance and error: the planner queues a persistently failing instance
again on every tick, and a mail every 15 minutes is a storm, not a notice.

A message that can never become a work item (not JSON, a field missing or of the wrong type, an unknown
``version``) is not retried: :func:`receive` sends it to the dead-letter queue at once, with the reason
and its message id as attributes, so it costs one delivery instead of five and trips the queue's alarm.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from amikeeper.copy_destinations import decode_keys
from amikeeper.ec2_events import describe_validation_error
from amikeeper.events import WorkRecord
from amikeeper.gateways.backup_records import BackupNote, BackupNotes
from amikeeper.gateways.ec2 import INSTANCE_NOT_FOUND, Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import DeadLetterQueue
from amikeeper.model import COPY_TO, WorkItem
from amikeeper.naming import format_slot
from amikeeper.notifications import NoticeLedger, Notification

# Must equal the WorkQueue RedrivePolicy maxReceiveCount in template.yaml (a test checks it).
MAX_RECEIVES = 5
# backup.failed is sent at most once in this time for the same (region, instance, error code).
FAILURE_NOTICE_MEMORY = timedelta(days=1)

Status = Literal["created", "duplicate", "instance-gone"]


@dataclass(frozen=True)
class BackupOutcome:
    instance_id: str
    status: Status
    image_id: str | None = None
    # Why the AMI-state handler will have to look this AMI up in EC2 (see gateways.backup_records).
    note_error: str | None = None


@dataclass(frozen=True)
class WorkerDeps:
    ec2: Callable[[str], Ec2Gateway]
    notifier: Notifier
    ledger: NoticeLedger
    dead_letters: DeadLetterQueue
    notes: BackupNotes


class DeadLetterError(RuntimeError):
    """A malformed work item could not be sent to the dead-letter queue; its record fails, SQS retries it."""


@dataclass(frozen=True)
class MalformedWorkItem:
    """A message that is not a valid work record; ``send_error`` says why it could not be dead-lettered."""

    message_id: str
    reason: str
    send_error: str | None = None

    @property
    def dead_lettered(self) -> bool:
        return self.send_error is None

    @property
    def message(self) -> str:
        if self.dead_lettered:
            return f"malformed work item {self.message_id} sent to the dead-letter queue: {self.reason}"
        return (
            f"malformed work item {self.message_id} could not be sent to the dead-letter queue "
            f"({self.send_error}); SQS will deliver it again: {self.reason}"
        )

    def log_fields(self) -> dict[str, str | None]:
        return {"message_id": self.message_id, "reason": self.reason, "send_error": self.send_error}


def receive(record: Mapping[str, Any], deps: WorkerDeps) -> WorkRecord | MalformedWorkItem:
    """The work record of an SQS record; one that can never be a work item is dead-lettered at once.

    The caller acknowledges a dead-lettered one and fails one whose SendMessage failed, so that SQS
    delivers it again (and its own redrive policy still catches it in the end).
    """
    try:
        return WorkRecord.model_validate(record)
    except ValidationError as error:
        reason = describe_validation_error(error, WorkRecord)
    message_id = str(record.get("messageId") or "(no message id)")
    body = record.get("body")
    try:
        deps.dead_letters.send(
            body if isinstance(body, str) and body else json.dumps(record, default=str),
            reason=reason,
            original_message_id=message_id,
        )
    except (ClientError, BotoCoreError) as error:
        return MalformedWorkItem(message_id, reason, send_error=str(error))
    return MalformedWorkItem(message_id, reason)


def back_up(item: WorkItem, receive_count: int, deps: WorkerDeps, now: datetime) -> BackupOutcome:
    """Create the AMI of one work item. A duplicate name is success: that backup already exists."""
    try:
        result = deps.ec2(item.region).create_image(item)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == INSTANCE_NOT_FOUND:
            # Terminated between plan and work: nothing left to back up, and retrying cannot help.
            return BackupOutcome(item.instance_id, "instance-gone")
        _notify_if_final(item, error, code, receive_count, deps, now)
        raise
    except BotoCoreError as error:
        _notify_if_final(item, error, type(error).__name__, receive_count, deps, now)
        raise
    if result.duplicate or result.image_id is None:
        return BackupOutcome(item.instance_id, "duplicate")
    note = BackupNote(result.image_id, item.instance_id, item.slot, decode_keys(item.tags.get(COPY_TO)))
    try:
        deps.notes.remember(item.region, note, now)
    except (ClientError, BotoCoreError) as error:
        # The backup exists; without its note its AMI event costs one DescribeImages, nothing else.
        return BackupOutcome(item.instance_id, "created", result.image_id, f"{type(error).__name__}: {error}")
    return BackupOutcome(item.instance_id, "created", result.image_id)


def _notify_if_final(
    item: WorkItem, error: Exception, code: str, receive_count: int, deps: WorkerDeps, now: datetime
) -> None:
    if receive_count < MAX_RECEIVES:
        return
    if deps.ledger.first_time(failure_key(item, code), now, FAILURE_NOTICE_MEMORY):
        deps.notifier.publish(backup_failed(item, str(error), attempts=receive_count))


def failure_key(item: WorkItem, code: str) -> str:
    """The notice ledger's key of "this instance's backup fails with this error"."""
    return f"backup.failed#{item.region}#{item.instance_id}#{code}"


def backup_failed(item: WorkItem, reason: str, *, attempts: int) -> Notification:
    name = item.tags.get("Name")
    label = f"{item.instance_id} ({name})" if name else item.instance_id
    return Notification(
        event="backup.failed",
        severity="error",
        subject=f"amikeeper: backup of {item.instance_id} failed in {item.region}",
        summary=f"The {item.trigger} backup of instance {label} in {item.region} for slot "
        f"{format_slot(item.slot)} failed after {attempts} attempt(s): {reason}. "
        "The work item is in the dead-letter queue.",
        table=[
            ["instance", "region", "slot", "AMI name"],
            [item.instance_id, item.region, format_slot(item.slot), item.image_name],
        ],
        payload={
            "stage": "create",
            "region": item.region,
            "instance_id": item.instance_id,
            "instance_name": name,
            "image_id": None,
            "image_name": item.image_name,
            "trigger": item.trigger,
            "slot": format_slot(item.slot),
            "reason": reason,
            "attempts": attempts,
        },
    )
