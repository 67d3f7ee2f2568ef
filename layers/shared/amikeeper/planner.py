"""The planner tick (SPEC §6): find opted-in, due instances in every region and queue one work item each.

The planner makes no mutating EC2 call. Per region it reads two paginated, server-filtered listings
(opted-in instances; this stack's AMIs) and decides "due" in memory, so its EC2 cost does not grow
with one call per instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.gateways.ec2 import Ec2Gateway, Image, Instance
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import EnqueueError, WorkQueue
from amikeeper.naming import Trigger, ami_description, ami_name, format_slot
from amikeeper.notifications import Notification
from amikeeper.policies import InvalidTag, Policy, PolicyCatalog, resolve_policy
from amikeeper.schedules import ScheduleError
from amikeeper.tagkeys import TagKeys
from amikeeper.work import INSTANCE_ID, MANAGED_BY, POLICY, SLOT, TRIGGER, WorkItem


@dataclass(frozen=True)
class InvalidInstance:
    region: str
    instance_id: str
    name: str | None
    tag: str
    value: str
    reason: str


@dataclass
class RegionPlan:
    region: str
    seen: int = 0
    opted_in: int = 0
    not_due: int = 0
    due: list[WorkItem] = field(default_factory=list)
    invalid: list[InvalidInstance] = field(default_factory=list)
    enqueued: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Stack:
    """What every work item needs to know about the deployment."""

    name: str
    tag_keys: TagKeys
    copy_tags: tuple[str, ...] = ()


def build_work_item(
    instance: Instance, policy: Policy, *, region: str, stack: Stack, trigger: Trigger, slot: datetime
) -> WorkItem:
    return WorkItem(
        region=region,
        instance_id=instance.instance_id,
        image_name=ami_name(stack.name, instance.instance_id, trigger, slot),
        description=ami_description(instance.name, instance.instance_id, trigger, slot),
        no_reboot=policy.no_reboot,
        trigger=trigger,
        slot=slot,
        policy=policy.name,
        tags=backup_tags(instance, policy, stack=stack, trigger=trigger, slot=slot),
    )


def backup_tags(
    instance: Instance, policy: Policy, *, stack: Stack, trigger: Trigger, slot: datetime
) -> dict[str, str]:
    """SPEC §5: the instance's Name and CopyTags, then amikeeper's own keys, which always win."""
    copied = {
        key: value
        for key, value in instance.tags.items()
        if (key == "Name" or key in stack.copy_tags) and not key.lower().startswith("aws:")
    }
    return copied | {
        MANAGED_BY: stack.name,
        INSTANCE_ID: instance.instance_id,
        POLICY: policy.name,
        TRIGGER: trigger,
        SLOT: format_slot(slot),
    }


def latest_backups(images: Iterable[Image]) -> dict[str, datetime]:
    """Newest backup time per instance; failed AMIs do not count, pending ones do (they are under way)."""
    latest: dict[str, datetime] = {}
    for image in images:
        instance_id = image.instance_id
        if instance_id is None or image.state == "failed":
            continue
        when = image.backup_time
        if instance_id not in latest or when > latest[instance_id]:
            latest[instance_id] = when
    return latest


def plan_region(
    region: str,
    instances: Iterable[Instance],
    latest: Mapping[str, datetime],
    catalog: PolicyCatalog,
    stack: Stack,
    now: datetime,
) -> RegionPlan:
    """Pure: which instances are due in their current slot (SPEC §3), and which tags are invalid."""
    plan = RegionPlan(region=region)
    for instance in instances:
        plan.seen += 1
        try:
            policy = resolve_policy(instance.tags, stack.tag_keys, catalog)
        except InvalidTag as invalid:
            plan.invalid.append(
                InvalidInstance(
                    region, instance.instance_id, instance.name, invalid.tag, invalid.value, invalid.reason
                )
            )
            continue
        if policy is None:
            continue
        plan.opted_in += 1
        try:
            slot = policy.schedule.slot_at(now)
        except ScheduleError as never_fired:
            # e.g. a cron limited to future years: valid, but there is no slot to back up yet.
            plan.invalid.append(
                InvalidInstance(
                    region,
                    instance.instance_id,
                    instance.name,
                    stack.tag_keys.schedule,
                    policy.schedule.expression,
                    never_fired.reason,
                )
            )
            continue
        newest = latest.get(instance.instance_id)
        if newest is not None and newest >= slot:
            plan.not_due += 1
            continue
        plan.due.append(
            build_work_item(instance, policy, region=region, stack=stack, trigger="schedule", slot=slot)
        )
    return plan


@dataclass(frozen=True)
class PlannerDeps:
    ec2: Callable[[str], Ec2Gateway]
    queue: WorkQueue
    notifier: Notifier


def run_planner(
    now: datetime, regions: Sequence[str], catalog: PolicyCatalog, stack: Stack, deps: PlannerDeps
) -> list[RegionPlan]:
    """One planner tick over every region; a failing region is reported and never stops the others."""
    plans = [_plan_and_enqueue(region, now, catalog, stack, deps) for region in regions]
    for notification in planner_notifications(plans, catalog, now):
        deps.notifier.publish(notification)
    return plans


def _plan_and_enqueue(
    region: str, now: datetime, catalog: PolicyCatalog, stack: Stack, deps: PlannerDeps
) -> RegionPlan:
    try:
        ec2 = deps.ec2(region)
        latest = latest_backups(ec2.managed_images(stack.name))
        plan = plan_region(region, ec2.opted_in_instances(stack.tag_keys.opt_in), latest, catalog, stack, now)
    except (ClientError, BotoCoreError) as error:
        return RegionPlan(region=region, error=f"{type(error).__name__}: {error}")
    try:
        plan.enqueued = deps.queue.send(plan.due)
    except EnqueueError as error:
        plan.enqueued = len(plan.due) - len(error.failed)
        plan.error = str(error)
    except (ClientError, BotoCoreError) as error:
        plan.error = f"work queue: {type(error).__name__}: {error}"
    return plan


def planner_notifications(
    plans: Sequence[RegionPlan], catalog: PolicyCatalog, now: datetime
) -> list[Notification]:
    """One policy.invalid per invalid instance, the malformed document once, one backup.summary."""
    notes = [_invalid_tag_notification(invalid) for plan in plans for invalid in plan.invalid]
    if catalog.document_error is not None:
        notes.append(
            Notification(
                event="policy.invalid",
                severity="error",
                subject="amikeeper: named-policies document is malformed and was not applied",
                summary=f"The named-policies document could not be applied: {catalog.document_error}. "
                "Instances that name a policy are skipped until it is fixed.",
                payload={"scope": "document", "reason": catalog.document_error},
            )
        )
    notes.append(_summary(plans, now))
    return notes


def _invalid_tag_notification(invalid: InvalidInstance) -> Notification:
    label = f"{invalid.instance_id} ({invalid.name})" if invalid.name else invalid.instance_id
    return Notification(
        event="policy.invalid",
        severity="warning",
        subject=f"amikeeper: invalid tag {invalid.tag} on {invalid.instance_id} in {invalid.region}",
        summary=f"Instance {label} in {invalid.region} was not backed up: tag {invalid.tag}="
        f"{invalid.value!r} is invalid: {invalid.reason}. Other instances were not affected.",
        payload={
            "scope": "instance",
            "region": invalid.region,
            "instance_id": invalid.instance_id,
            "instance_name": invalid.name,
            "tag": invalid.tag,
            "value": invalid.value,
            "reason": invalid.reason,
        },
    )


def _summary(plans: Sequence[RegionPlan], now: datetime) -> Notification:
    rows = [["region", "seen", "opted in", "due", "queued", "not due", "invalid", "error"]]
    for plan in plans:
        rows.append(
            [
                plan.region,
                str(plan.seen),
                str(plan.opted_in),
                str(len(plan.due)),
                str(plan.enqueued),
                str(plan.not_due),
                str(len(plan.invalid)),
                plan.error or "",
            ]
        )
    failed = [plan for plan in plans if plan.error]
    queued = sum(plan.enqueued for plan in plans)
    where = ", ".join(plan.region for plan in plans)
    return Notification(
        event="backup.summary",
        severity="error" if failed else "info",
        subject=f"amikeeper: {queued} backup(s) queued in {where}"
        + (f", {len(failed)} region(s) failed" if failed else ""),
        summary=f"Planner run at {format_slot(now)}: {queued} backup(s) queued.",
        table=rows,
        payload={
            "time": format_slot(now),
            "regions": [
                {
                    "region": plan.region,
                    "seen": plan.seen,
                    "opted_in": plan.opted_in,
                    "due": len(plan.due),
                    "enqueued": plan.enqueued,
                    "not_due": plan.not_due,
                    "invalid": len(plan.invalid),
                    "error": plan.error,
                }
                for plan in plans
            ],
        },
    )
