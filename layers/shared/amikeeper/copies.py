"""Disaster-recovery copies (SPEC §9): start each copy once its source is available, follow it until it is
available or failed, and say so once when it fails.

One :class:`~amikeeper.model.CopyTask` is one backup and one destination. The copier (CopierFunction, fed
by the copy queue) handles each task in one short step and, when there is more to do, sends the task back
to the queue with a delay: waiting for a pending source, backing off from EC2's cap on concurrent copies,
and looking at a started copy until it is done. Completion is polled this way rather than heard as an
event because an AMI-state event stays in the copy's region (and account), where this stack has no rule.

Exactly one copy per source and destination: the copy has the source's name and a client token derived
from source and destination, so a repeated task (a retry, a duplicate event, retention's catch-up) gets
the first copy back from EC2, or its name refused, and goes on following that copy.

A copy to a vault account is made by the vault's role, so the vault owns it. The source is shared with the
vault (launch permission and its snapshots' create-volume permission) just before the copy is asked for,
and unshared once no copy to that account is left running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from amikeeper.copy_destinations import CopyDestination, split_key
from amikeeper.copy_plan import client_token, copy_description, copy_tags, destination_of, owed_copies
from amikeeper.gateways.ec2 import IMAGE_NOT_FOUND, CopyRequest, Ec2Gateway, error_code
from amikeeper.gateways.kms import KeyInspector
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.vault import VaultUnavailable
from amikeeper.model import COPIED_PREFIX, MANAGED_BY, CopyTask, Image
from amikeeper.notifications import NoticeLedger, Notification
from amikeeper.policies import PolicyCatalog

# EC2 refusing for now: its cap on concurrent copies into a region, or its request rate after the
# client's own retries. The task waits and asks again; it is never dropped.
LIMITED = frozenset({"ResourceLimitExceeded", "RequestLimitExceeded", "Throttling", "ThrottlingException"})
# EC2 failing for now: the message is delivered again (and dead-lettered after the queue's attempts).
TRANSIENT = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
SETTLED_FAILED = frozenset({"failed", "error", "invalid", "deregistered"})
# Copies take minutes to hours: look soon, then every 15 minutes (the longest SQS delay).
CHECK_DELAYS = (120, 300, 600, 900)
WAIT_DELAYS = (60, 300, 600, 900)
FAILURE_MEMORY = timedelta(days=1)

Action = Literal["started", "waiting", "limited", "completed", "failed", "skipped"]


class CopyQueue(Protocol):
    def send(self, tasks: Sequence[CopyTask], delay_seconds: int = 0) -> list[CopyTask]:
        """Queue the tasks, each delivered after the delay; those SQS refused."""
        ...


@dataclass(frozen=True)
class CopyDeps:
    ec2: Callable[[str], Ec2Gateway]  # this account, by region: where the sources are
    destination: Callable[[str], Ec2Gateway]  # by destination key, the vault's through its role
    kms: Callable[[str], KeyInspector]  # this account's keys, by region (the sources')
    destination_kms: Callable[[str], KeyInspector]  # by destination key, the vault's through its role
    queue: CopyQueue
    notifier: Notifier
    ledger: NoticeLedger
    catalog: Callable[[], PolicyCatalog]
    stack_name: str
    pending_timeout: timedelta


@dataclass(frozen=True)
class CopyOutcome:
    action: Action
    task: CopyTask
    message: str
    copy_image_id: str | None = None
    seconds: float | None = None

    def log_fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "source_region": self.task.source_region,
            "source_image_id": self.task.source_image_id,
            "destination": self.task.destination,
            "copy_image_id": self.copy_image_id,
            "seconds": self.seconds,
            "detail": self.message,
        }


def queue_owed_copies(
    images: Sequence[tuple[str, Image]], stack_name: str, queue: CopyQueue
) -> list[CopyTask]:
    """Queue the copies these backups (with their regions) are owed; the tasks queued."""
    tasks = [task for region, image in images for task in owed_copies(image, region, stack_name)]
    if tasks:
        refused = queue.send(tasks)
        if refused:
            raise RuntimeError(f"{len(refused)} copy task(s) not queued")
    return tasks


def handle_copy_task(task: CopyTask, deps: CopyDeps, now: datetime) -> CopyOutcome:
    if task.stage == "start":
        return _start(task, deps, now)
    return _check(task, deps, now)


# --- start ----------------------------------------------------------------------------------------------
def _start(task: CopyTask, deps: CopyDeps, now: datetime) -> CopyOutcome:
    source_ec2 = deps.ec2(task.source_region)
    source = source_ec2.image(task.source_image_id)
    if source is None:
        return CopyOutcome("skipped", task, "the source no longer exists; nothing to copy")
    if source.tags.get(MANAGED_BY) != deps.stack_name:
        return CopyOutcome("skipped", task, "the source is not a backup of this stack")
    if task.destination in source.copies:
        return CopyOutcome("skipped", task, "already copied", copy_image_id=source.copies[task.destination])
    if source.state == "pending":
        return _wait(task, deps, WAIT_DELAYS, "waiting", "the source is still pending")
    if source.state != "available":
        return CopyOutcome(
            "skipped", task, f"the source is {source.state}; only available backups are copied"
        )
    destination = destination_of(source, task.destination, deps.catalog())
    try:
        target = deps.destination(task.destination)
        key_problem = _destination_key_problem(destination, deps)
    except VaultUnavailable as error:
        return _failed(task, source, None, str(error), deps, now)
    if key_problem is not None:
        return _failed(task, source, None, key_problem, deps, now)
    if destination.account is not None:
        problem = _unshareable(source, task.source_region, destination.account, source_ec2, deps)
        if problem is not None:
            return _failed(task, source, destination, problem, deps, now)
        source_ec2.share(source, destination.account, add=True)
    request = CopyRequest(
        source_region=task.source_region,
        source_image_id=source.image_id,
        name=source.name,
        description=copy_description(source, task.source_region),
        encrypted=destination.encrypt,
        kms_key_id=destination.kms_key,
        tags=copy_tags(source, task.source_region, destination),
        client_token=client_token(source.image_id, task.destination),
    )
    try:
        started = target.copy_image(request)
    except ClientError as error:
        code = error_code(error)
        if code in LIMITED:
            return _wait(
                task, deps, WAIT_DELAYS, "limited", f"EC2 refused for now ({code}); asking again later"
            )
        if code in TRANSIENT:
            raise
        return _failed(task, source, destination, _refusal(error, destination), deps, now)
    copy_id = started.image_id
    if copy_id is None:  # made before, by an earlier delivery of this task: follow that copy
        existing = target.copy_of(deps.stack_name, source.image_id)
        if existing is None:
            reason = f"an AMI named {source.name!r} that is not this backup's copy is in the way"
            return _failed(task, source, destination, reason, deps, now)
        copy_id = existing.image_id
    # The first look is already waited for below: the next one waits CHECK_DELAYS[1].
    follow = task.model_copy(
        update={"stage": "check", "copy_image_id": copy_id, "started_at": now, "waits": 1}
    )
    _send(deps.queue, follow, CHECK_DELAYS[0])
    return CopyOutcome(
        "started", task, f"copy {copy_id} started in {task.destination}", copy_image_id=copy_id
    )


def _destination_key_problem(destination: CopyDestination, deps: CopyDeps) -> str | None:
    """Why the destination's key cannot encrypt the copy, if it cannot: asked before the copy, so that the
    answer names the key instead of a copy that fails later for a reason EC2 words vaguely."""
    if destination.kms_key is None:
        return None
    try:
        facts = deps.destination_kms(destination.key).facts(destination.kms_key, with_policy=False)
    except ClientError as error:
        detail = error.response.get("Error", {})
        return (
            f"the destination key {destination.kms_key} cannot be used in {destination.key}: "
            f"{detail.get('Code', '?')}: {detail.get('Message', '')} (it must exist there, and the copying "
            "role needs kms:DescribeKey, kms:CreateGrant, kms:GenerateDataKey* and kms:ReEncrypt* on it)"
        )
    if not facts.enabled:
        return f"the destination key {facts.key_id} in {destination.key} is not enabled"
    return None


def _unshareable(
    source: Image, region: str, account: str, source_ec2: Ec2Gateway, deps: CopyDeps
) -> str | None:
    """Why the vault could not read this source's snapshots, if it could not: only a customer-managed key
    can be shared, and only one whose key policy names the vault account."""
    for snapshot_id, key_id in sorted(source_ec2.snapshot_keys(source.snapshot_ids).items()):
        if key_id is None:
            continue
        try:
            facts = deps.kms(region).facts(key_id)
        except ClientError as error:
            return f"snapshot {snapshot_id} is encrypted with {key_id}, which cannot be read: {error}"
        if facts.aws_managed:
            return (
                f"snapshot {snapshot_id} is encrypted with the AWS managed key {facts.key_id} (aws/ebs), which "
                f"cannot be shared with account {account}: encrypt the instance's volumes with a "
                "customer-managed key whose key policy lets the vault account use it (docs/vault.md)"
            )
        if not facts.enabled:
            return f"snapshot {snapshot_id} is encrypted with {facts.key_id}, which is not enabled"
        if not facts.grants_account(account):
            return (
                f"the key policy of {facts.key_id} (snapshot {snapshot_id}) does not let account {account} "
                "use the key: add the statement in docs/vault.md"
            )
    return None


def _refusal(error: ClientError, destination: CopyDestination) -> str:
    detail = error.response.get("Error", {})
    text = f"CopyImage to {destination.key} refused ({detail.get('Code', '?')}): {detail.get('Message', '')}"
    if destination.kms_key and "kms" in text.lower():
        text += (
            f"; the destination key {destination.kms_key} must exist in {destination.region} and be usable"
        )
        text += " by the copying role (kms:CreateGrant, kms:GenerateDataKey*, kms:ReEncrypt*, kms:Decrypt)"
    return text


# --- check ----------------------------------------------------------------------------------------------
def _check(task: CopyTask, deps: CopyDeps, now: datetime) -> CopyOutcome:
    assert task.copy_image_id is not None and task.started_at is not None, "a check task carries its copy"
    try:
        target = deps.destination(task.destination)
    except VaultUnavailable as error:
        return _failed(task, None, None, str(error), deps, now)
    copy = target.image(task.copy_image_id)
    source_ec2 = deps.ec2(task.source_region)
    seconds = (now - task.started_at).total_seconds()
    if copy is not None and copy.state == "available":
        try:
            source_ec2.tag_image(task.source_image_id, COPIED_PREFIX + task.destination, copy.image_id)
        except ClientError as error:
            if error_code(error) not in IMAGE_NOT_FOUND:
                raise  # the copy stays owed until its source says it is done: deliver again
        _unshare_when_done(task, source_ec2)
        return CopyOutcome(
            "completed", task, f"copy {copy.image_id} available in {task.destination}", copy.image_id, seconds
        )
    if copy is None or copy.state in SETTLED_FAILED:
        state = "gone" if copy is None else copy.state
        reason = f"copy {task.copy_image_id} in {task.destination} ended {state}"
        if copy is not None and copy.state_reason:
            reason += f": {copy.state_reason}"
        _unshare_when_done(task, source_ec2)
        return _failed(task, None, None, reason, deps, now)
    if now - task.started_at >= deps.pending_timeout:
        _unshare_when_done(task, source_ec2)
        hours = deps.pending_timeout.total_seconds() / 3600
        reason = f"copy {task.copy_image_id} in {task.destination} still {copy.state} after {hours:g} h"
        return _failed(task, None, None, reason, deps, now)
    return _wait(task, deps, CHECK_DELAYS, "waiting", f"copy {task.copy_image_id} is {copy.state}")


def _unshare_when_done(task: CopyTask, source_ec2: Ec2Gateway) -> None:
    """Unshare the source from a vault account once no other copy to that account is still owed."""
    _, account = split_key(task.destination)
    if account is None:
        return
    source = source_ec2.image(task.source_image_id)
    if source is None:
        return
    others = [
        owed
        for owed in owed_copies(source, task.source_region, source.tags.get(MANAGED_BY, ""))
        if owed.destination != task.destination and split_key(owed.destination)[1] == account
    ]
    if not others:
        source_ec2.share(source, account, add=False)


# --- waiting, failing -----------------------------------------------------------------------------------
def _wait(task: CopyTask, deps: CopyDeps, delays: Sequence[int], action: Action, message: str) -> CopyOutcome:
    delay = delays[min(task.waits, len(delays) - 1)]
    _send(deps.queue, task.model_copy(update={"waits": task.waits + 1}), delay)
    return CopyOutcome(action, task, f"{message}; next look in {delay}s", copy_image_id=task.copy_image_id)


def _send(queue: CopyQueue, task: CopyTask, delay: int) -> None:
    if queue.send([task], delay):
        raise RuntimeError(f"copy task for {task.source_image_id} to {task.destination} not queued")


def _failed(
    task: CopyTask,
    source: Image | None,
    destination: CopyDestination | None,
    reason: str,
    deps: CopyDeps,
    now: datetime,
) -> CopyOutcome:
    if source is not None and destination is not None and destination.account is not None:
        _unshare_when_done(task, deps.ec2(task.source_region))
    key = f"copy.failed#{task.source_image_id}#{task.destination}"
    if deps.ledger.first_time(key, now, FAILURE_MEMORY):
        deps.notifier.publish(copy_failed(task, reason))
    return CopyOutcome("failed", task, reason, copy_image_id=task.copy_image_id)


def copy_failed(task: CopyTask, reason: str) -> Notification:
    region, account = split_key(task.destination)
    where = f"{region} of account {account}" if account else region
    return Notification(
        event="copy.failed",
        severity="error",
        subject=f"amikeeper: copy of {task.source_image_id} ({task.source_region}) to {task.destination} failed",
        summary=f"The disaster-recovery copy of backup {task.source_image_id} ({task.source_region}) to "
        f"{where} failed: {reason}. Until a copy succeeds, this backup has no copy there; the next "
        "retention run asks for it again.",
        table=[
            ["source AMI", "source region", "destination", "copy"],
            [task.source_image_id, task.source_region, task.destination, task.copy_image_id or "-"],
        ],
        payload={
            "source_image_id": task.source_image_id,
            "source_region": task.source_region,
            "destination": task.destination,
            "destination_region": region,
            "destination_account": account,
            "copy_image_id": task.copy_image_id,
            "reason": reason,
        },
    )
