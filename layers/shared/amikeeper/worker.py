"""The worker (SPEC §6): one SQS message, one CreateImage.

Retries belong to SQS: a failed item is raised so that only it returns to the queue, and after the
queue's last attempt it lands in the dead-letter queue. People hear about it once, on that last attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.gateways.ec2 import INSTANCE_NOT_FOUND, Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.naming import format_slot
from amikeeper.notifications import Notification
from amikeeper.work import WorkItem

# Must equal the WorkQueue RedrivePolicy maxReceiveCount in template.yaml (a test checks it).
MAX_RECEIVES = 5

Status = Literal["created", "duplicate", "instance-gone"]


@dataclass(frozen=True)
class BackupOutcome:
    instance_id: str
    status: Status
    image_id: str | None = None


@dataclass(frozen=True)
class WorkerDeps:
    ec2: Callable[[str], Ec2Gateway]
    notifier: Notifier


def back_up(item: WorkItem, receive_count: int, deps: WorkerDeps) -> BackupOutcome:
    """Create the AMI of one work item. A duplicate name is success: that backup already exists."""
    try:
        result = deps.ec2(item.region).create_image(item)
    except ClientError as error:
        if error.response["Error"]["Code"] == INSTANCE_NOT_FOUND:
            # Terminated between plan and work: nothing left to back up, and retrying cannot help.
            return BackupOutcome(item.instance_id, "instance-gone")
        _notify_if_final(item, error, receive_count, deps)
        raise
    except BotoCoreError as error:
        _notify_if_final(item, error, receive_count, deps)
        raise
    if result.duplicate:
        return BackupOutcome(item.instance_id, "duplicate")
    return BackupOutcome(item.instance_id, "created", result.image_id)


def _notify_if_final(item: WorkItem, error: Exception, receive_count: int, deps: WorkerDeps) -> None:
    if receive_count >= MAX_RECEIVES:
        deps.notifier.publish(backup_failed(item, str(error), attempts=receive_count))


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
