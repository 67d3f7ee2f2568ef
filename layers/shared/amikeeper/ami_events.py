"""AMI state changes (SPEC §6): the moment a backup becomes usable, or fails, rather than when it was asked for.

Only AMIs whose ``amikeeper:managed-by`` tag names this stack count; EC2 sends these events for every
AMI of the account (other tools', people's, other stacks'). A backup the worker noted (see
amikeeper.gateways.backup_records) completes without an EC2 call; anything else, and every failure (its
reason is in EC2), costs one DescribeImages.

- ``available``: a completed backup; its time to available runs from its slot (or, without one, its
  creation) to the event. Each copy the backup is owed (SPEC §9) is handed to the copier; should that
  fail, retention's hourly catch-up asks for it.
- ``failed``: a failed backup, and one ``backup.failed`` notice (stage ``image``) with EC2's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.copies import CopyQueue
from amikeeper.copy_plan import owed_copies
from amikeeper.ec2_events import AmiStateChange
from amikeeper.gateways.backup_records import BackupNote, BackupNotes
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.model import MANAGED_BY, CopyTask, Image
from amikeeper.naming import format_slot
from amikeeper.notifications import Notification

AVAILABLE = "available"
FAILED = "failed"
# Also EC2 AMI State Change states; the rule does not deliver them and they need nothing.
PASSING_STATES = frozenset({"pending", "deregistered", "disabled"})
NO_REASON = "EC2 gave no reason"

Action = Literal["completed", "failed", "ignored"]


@dataclass(frozen=True)
class AmiEventOutcome:
    action: Action
    image_id: str
    region: str
    state: str
    message: str
    instance_id: str | None = None
    seconds_to_available: float | None = None
    copies_queued: int = 0
    copy_error: str | None = None

    def log_fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "image_id": self.image_id,
            "region": self.region,
            "state": self.state,
            "instance_id": self.instance_id,
            "seconds_to_available": self.seconds_to_available,
            "copies_queued": self.copies_queued,
            "copy_error": self.copy_error,
        }

    def response(self) -> dict[str, Any]:
        return self.log_fields() | {"message": self.message}


@dataclass(frozen=True)
class AmiEventDeps:
    ec2: Callable[[str], Ec2Gateway]
    notifier: Notifier
    stack_name: str
    notes: BackupNotes
    copies: CopyQueue


def handle_ami_state(event: AmiStateChange, deps: AmiEventDeps) -> AmiEventOutcome:
    state = event.detail.state
    if state in PASSING_STATES:
        return _ignored(event, f"AMI state {state} needs no action")
    if state not in (AVAILABLE, FAILED):
        return _ignored(event, f"unknown AMI state {state!r}; amikeeper acts on available and failed only")
    if state == AVAILABLE and (note := _noted(event, deps)) is not None:
        tasks = [
            CopyTask(source_region=event.region, source_image_id=note.image_id, destination=key)
            for key in note.copy_to
            if key != event.region
        ]
        return _with_copies(_completed(event, note.image_id, note.instance_id, note.backup_time), tasks, deps)
    image = deps.ec2(event.region).image(event.detail.image_id)
    if image is None:
        return _ignored(event, "AMI no longer exists (already deregistered)")
    owner = image.tags.get(MANAGED_BY)
    if owner != deps.stack_name:
        made_by = f"stack {owner!r}" if owner else "another tool or a person"
        return _ignored(event, f"AMI is not a backup of this stack (made by {made_by})")
    if state == AVAILABLE:
        completed = _completed(event, image.image_id, image.instance_id, image.backup_time)
        return _with_copies(completed, owed_copies(image, event.region, deps.stack_name), deps)
    reason = image.state_reason or event.detail.error_message.strip() or NO_REASON
    deps.notifier.publish(ami_failed(event.region, image, reason))
    return AmiEventOutcome(
        action="failed",
        image_id=image.image_id,
        region=event.region,
        state=state,
        message=f"backup of {image.instance_id} failed: {reason}",
        instance_id=image.instance_id,
    )


def _with_copies(outcome: AmiEventOutcome, tasks: list[CopyTask], deps: AmiEventDeps) -> AmiEventOutcome:
    if not tasks:
        return outcome
    try:
        refused = deps.copies.send(tasks)
    except (ClientError, BotoCoreError) as error:
        return replace(outcome, copy_error=f"{type(error).__name__}: {error}")
    if refused:
        return replace(
            outcome, copies_queued=len(tasks) - len(refused), copy_error=f"{len(refused)} not queued"
        )
    return replace(outcome, copies_queued=len(tasks))


def _noted(event: AmiStateChange, deps: AmiEventDeps) -> BackupNote | None:
    try:
        return deps.notes.recall(event.region, event.detail.image_id)
    except (ClientError, BotoCoreError):
        return None  # EC2 can still say whose AMI it is


def _completed(
    event: AmiStateChange, image_id: str, instance_id: str | None, backup_time: datetime
) -> AmiEventOutcome:
    seconds = max(0.0, (event.time - backup_time).total_seconds())
    return AmiEventOutcome(
        action="completed",
        image_id=image_id,
        region=event.region,
        state=event.detail.state,
        message=f"backup of {instance_id} available {seconds:.0f}s after its slot",
        instance_id=instance_id,
        seconds_to_available=seconds,
    )


def _ignored(event: AmiStateChange, message: str) -> AmiEventOutcome:
    return AmiEventOutcome(
        action="ignored",
        image_id=event.detail.image_id,
        region=event.region,
        state=event.detail.state,
        message=message,
    )


def ami_failed(region: str, image: Image, reason: str) -> Notification:
    """``backup.failed`` at stage ``image``: EC2 accepted CreateImage, then the AMI ended ``failed``."""
    name = image.tags.get("Name")
    instance = image.instance_id or "unknown instance"
    label = f"{instance} ({name})" if name else instance
    slot = image.slot
    return Notification(
        event="backup.failed",
        severity="error",
        subject=f"amikeeper: backup of {instance} failed in {region} ({image.image_id})",
        summary=f"The {image.trigger or 'unknown'} backup {image.image_id} of instance {label} in {region} "
        f"ended in state failed: {reason}. Until a later backup succeeds, an older backup is the "
        "newest one this instance can be restored from.",
        table=[
            ["instance", "region", "AMI", "slot", "AMI name"],
            [instance, region, image.image_id, format_slot(slot) if slot else "-", image.name],
        ],
        payload={
            "stage": "image",
            "region": region,
            "instance_id": image.instance_id,
            "instance_name": name,
            "image_id": image.image_id,
            "image_name": image.name,
            "trigger": image.trigger,
            "slot": format_slot(slot) if slot else None,
            "reason": reason,
            "attempts": None,
        },
    )
