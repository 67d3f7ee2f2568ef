"""Instance state changes (SPEC §6): an on-stop backup, or a termination notice people can restore from.

- ``stopped``, with ``Backup:OnStop`` true (tag or policy): one work item through the worker queue, the
  same path as a scheduled backup, with trigger ``stop`` and the event's time as its slot. The AMI name
  derives from (stack, instance, trigger, slot), so a repeated or late delivery of the same event can
  only ever name the same AMI, and EC2 refuses a second one.
- ``shutting-down`` or ``terminated``, for an instance that is opted in or has backups of this stack:
  one ``instance.terminated`` notice naming its newest available backup. A termination sends both
  events; the notice is keyed on the instance, so people get it once.
- anything else: nothing. The opt-in tag is checked before the policies document is read: a stopped
  instance that is not opted in costs one DescribeInstances, a terminated one also a DescribeImages
  filtered on it (it may have been opted out after its last backups).

Every outcome is one value with a one-line ``message`` for the log; nothing here raises for an event
that cannot be acted on (only AWS failures propagate, so EventBridge retries them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from amikeeper.backups import build_work_item, newest_available, recorded_retention
from amikeeper.ec2_events import InstanceStateChange
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import WorkQueue
from amikeeper.idempotency import OncePerKey
from amikeeper.model import Image, Instance, Stack
from amikeeper.naming import format_slot
from amikeeper.notifications import Notification
from amikeeper.policies import FALSE_WORDS, InvalidTag, PolicyCatalog, resolve_policy

STOPPED = "stopped"
TERMINATING = frozenset({"shutting-down", "terminated"})
# The other states EC2 documents for this event; the rule does not deliver them, but a hand-made or
# widened rule may, and they are not errors.
PASSING_STATES = frozenset({"pending", "running", "stopping"})
NOTICE_PURPOSE = "instance.terminated"

Action = Literal["backup-queued", "terminated-notified", "already-notified", "ignored"]


@dataclass(frozen=True)
class InstanceEventOutcome:
    action: Action
    instance_id: str
    region: str
    state: str
    message: str
    image_name: str | None = None
    image_id: str | None = None

    def log_fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "instance_id": self.instance_id,
            "region": self.region,
            "state": self.state,
            "image_name": self.image_name,
            "image_id": self.image_id,
        }

    def response(self) -> dict[str, Any]:
        return self.log_fields() | {"message": self.message}


@dataclass(frozen=True)
class InstanceEventDeps:
    ec2: Callable[[str], Ec2Gateway]
    queue: WorkQueue
    notifier: Notifier
    catalog: Callable[[], PolicyCatalog]  # read only once an instance turns out to be opted in
    stack: Stack
    orphan_grace_days: int
    once_per_instance: OncePerKey


def handle_instance_state(event: InstanceStateChange, deps: InstanceEventDeps) -> InstanceEventOutcome:
    state = event.detail.state
    if state == STOPPED:
        return _on_stopped(event, deps)
    if state in TERMINATING:
        return _on_terminating(event, deps)
    if state in PASSING_STATES:
        return _ignored(event, f"state {state} needs no action")
    return _ignored(event, f"unknown instance state {state!r}; amikeeper acts on stopped and terminated only")


def _on_stopped(event: InstanceStateChange, deps: InstanceEventDeps) -> InstanceEventOutcome:
    instance = deps.ec2(event.region).instance(event.detail.instance_id)
    if instance is None:
        return _ignored(event, "instance no longer exists; nothing to back up")
    if not opted_in(instance, deps.stack):
        return _ignored(event, "instance is not opted in")
    try:
        policy = resolve_policy(instance.tags, deps.stack.tag_keys, deps.catalog())
    except InvalidTag as invalid:
        # The planner reports invalid tags (policy.invalid) on every run; one report is enough.
        return _ignored(event, f"no on-stop backup: {invalid}")
    if policy is None:
        return _ignored(event, "instance is not opted in")
    if not policy.on_stop:
        return _ignored(event, f"{deps.stack.tag_keys.on_stop} is not true for policy {policy.name}")
    if instance.state in TERMINATING:
        return _ignored(event, f"instance is {instance.state} by now; an image can no longer be made")
    item = build_work_item(
        instance, policy, region=event.region, stack=deps.stack, trigger="stop", slot=event.time
    )
    deps.queue.send([item])
    return InstanceEventOutcome(
        action="backup-queued",
        instance_id=instance.instance_id,
        region=event.region,
        state=event.detail.state,
        message=f"on-stop backup queued as {item.image_name}",
        image_name=item.image_name,
    )


def _on_terminating(event: InstanceStateChange, deps: InstanceEventDeps) -> InstanceEventOutcome:
    ec2 = deps.ec2(event.region)
    instance = ec2.instance(event.detail.instance_id)
    if instance is None:
        return _ignored(event, "instance no longer exists; EC2 has forgotten it, so its tags are unknown")
    backups = list(ec2.backups_of(deps.stack.name, instance.instance_id))
    if not backups and not opted_in(instance, deps.stack):
        return _ignored(event, "instance is not opted in and has no backups of this stack")
    recorded = recorded_retention(backups, deps.catalog()) if backups else None
    notice = instance_terminated(
        TerminatedInstance(
            region=event.region,
            instance_id=instance.instance_id,
            name=instance.name,
            state=event.detail.state,
            terminated_at=event.time,
            newest=newest_available(backups),
            available_backups=sum(1 for image in backups if image.state == "available"),
            policy=recorded.policy if recorded else None,
            retention=str(recorded.rules) if recorded and recorded.rules else None,
            retention_source=recorded.source if recorded else None,
            orphan_grace_days=deps.orphan_grace_days,
        )
    )
    sent = deps.once_per_instance(
        f"{event.region}/{instance.instance_id}",
        lambda: {"event_id": event.id, "message_id": deps.notifier.publish(notice)},
    )
    newest_id = notice.payload["image_id"]
    if sent.get("event_id") != event.id:
        return InstanceEventOutcome(
            action="already-notified",
            instance_id=instance.instance_id,
            region=event.region,
            state=event.detail.state,
            message=f"termination already notified (event {sent.get('event_id')})",
            image_id=newest_id,
        )
    return InstanceEventOutcome(
        action="terminated-notified",
        instance_id=instance.instance_id,
        region=event.region,
        state=event.detail.state,
        message=f"termination notified with newest backup {newest_id or 'none'}",
        image_id=newest_id,
    )


def opted_in(instance: Instance, stack: Stack) -> bool:
    """The opt-in tag is present and not a 'no' word (its value is validated later, with the policies)."""
    value = instance.tags.get(stack.tag_keys.opt_in)
    return value is not None and value.strip().lower() not in FALSE_WORDS


def _ignored(event: InstanceStateChange, message: str) -> InstanceEventOutcome:
    return InstanceEventOutcome(
        action="ignored",
        instance_id=event.detail.instance_id,
        region=event.region,
        state=event.detail.state,
        message=message,
    )


@dataclass(frozen=True)
class TerminatedInstance:
    region: str
    instance_id: str
    name: str | None
    state: str
    terminated_at: datetime
    newest: Image | None
    available_backups: int
    policy: str | None
    retention: str | None
    orphan_grace_days: int
    retention_source: str | None = None

    @property
    def newest_kept_until(self) -> datetime:
        return self.terminated_at + timedelta(days=self.orphan_grace_days)


def instance_terminated(facts: TerminatedInstance) -> Notification:
    label = f"{facts.instance_id} ({facts.name})" if facts.name else facts.instance_id
    kept_until = format_slot(facts.newest_kept_until)
    newest = facts.newest
    if newest is None:
        summary = (
            f"Instance {label} in {facts.region} is {facts.state} "
            f"({format_slot(facts.terminated_at)}). It has NO available backup to restore from."
        )
    else:
        summary = (
            f"Instance {label} in {facts.region} is {facts.state} ({format_slot(facts.terminated_at)}). "
            f"Restore it from {newest.image_id}, its newest backup, taken {format_slot(newest.backup_time)}."
        )
    if newest is None:
        keeping = "nothing to keep"
    else:
        rule = (
            f"retention {facts.retention!r} ({facts.retention_source})"
            if facts.retention
            else "no readable retention, so they are left alone"
        )
        keeping = (
            f"until {kept_until} (OrphanGraceDays={facts.orphan_grace_days}) its backups follow {rule} and the "
            f"newest is never deleted; after that they age out under the same rules, counted back from "
            f"then, so all are deleted in time unless held or in use"
        )
    rows = [
        ["field", "value"],
        ["instance", facts.instance_id],
        ["name", facts.name or "-"],
        ["region", facts.region],
        ["state", f"{facts.state} at {format_slot(facts.terminated_at)}"],
        ["newest backup", newest.image_id if newest else "none"],
        ["taken", format_slot(newest.backup_time) if newest else "-"],
        ["AMI name", newest.name if newest else "-"],
        ["backups", f"{facts.available_backups} available"],
        ["kept", keeping],
    ]
    return Notification(
        event="instance.terminated",
        severity="info" if newest is not None else "warning",
        subject=f"amikeeper: {facts.instance_id} terminated ({facts.region}), "
        + (f"backup {newest.image_id}" if newest else "NO backup"),
        summary=summary,
        table=rows,
        payload={
            "region": facts.region,
            "instance_id": facts.instance_id,
            "instance_name": facts.name,
            "state": facts.state,
            "terminated_at": format_slot(facts.terminated_at),
            "image_id": newest.image_id if newest else None,
            "image_name": newest.name if newest else None,
            "backup_time": format_slot(newest.backup_time) if newest else None,
            "available_backups": facts.available_backups,
            "policy": facts.policy,
            "retention": facts.retention,
            "retention_source": facts.retention_source,
            "orphan_grace_days": facts.orphan_grace_days,
            "newest_kept_until": kept_until if newest else None,
        },
    )
