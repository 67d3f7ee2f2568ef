"""The planner (SPEC §6): each scheduler tick becomes one task per region, and each task queues one work
item for every opted-in instance of its region that is due.

Two steps, each well inside one Lambda invocation, so that no function ever hands work to itself:

- :func:`fan_out` (the scheduled PlannerFunction) puts one :class:`~amikeeper.model.RegionTask` per
  configured region on the planner's FIFO task queue: message group = region (a region is planned by
  one invocation at a time), deduplication id = region and tick (a tick delivered twice plans each
  region once). It makes no EC2 call.
- :func:`plan_region_task` (RegionPlannerFunction, the queue's consumer) plans one region at the tick's
  time. It makes no mutating EC2 call: it reads paginated, server-filtered listings and decides "due" in
  memory, so its EC2 cost does not grow with one call per instance: the opted-in instances, then only
  the AMIs that can make one of them not due, i.e. this stack's AMIs of the instances' current slots
  and its stop and manual backups (a stop backup after the slot covers it). The AMIs retention keeps
  from earlier slots, about 15 per instance at the default retention, are not read. Due items are
  queued 10 per SendMessageBatch. A region of 10,000 instances is about 20 listing pages and 1,000
  batches: well inside the function's timeout (docs/scale.md), and regions run side by side.

Notifications: a region planned without a problem publishes nothing (the daily report is the message
people read). A ``backup.summary`` goes out only for a region that failed or whose copied tags were
left out, at most once a day while the same condition lasts; ``policy.invalid`` at most once a day for
the same tag and value, and for a malformed policy document while it stays the same.

Nothing is lost when a task fails anywhere: the planner keeps no state of its own, an instance stays
due until its AMI exists, a task that crashes comes back from the queue (then its dead-letter queue,
alarmed), and the worker treats a second work item for the same AMI name as success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from amikeeper.backups import EC2_TAG_LIMIT, build_work_item, tags_of
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import BATCH, EnqueueError, FifoQueue, WorkQueue
from amikeeper.model import Image, Instance, RegionTask, Stack, WorkItem
from amikeeper.naming import MAX_ATTEMPT, format_slot
from amikeeper.notifications import NoticeLedger, Notification, condition_key, error_kind
from amikeeper.policies import InvalidTag, PolicyCatalog, resolve_policy
from amikeeper.schedules import ScheduleError

# The same invalid tag is reported once a day, not on every planner tick (a mail storm otherwise);
# a changed value is reported at once.
INVALID_TAG_MEMORY = timedelta(days=1)
# A persistent condition (a failing region, a malformed policy document, tags left out) is worth one
# message a day while it lasts.
PERSISTENT_NOTICE_MEMORY = timedelta(days=1)


@dataclass(frozen=True)
class InvalidInstance:
    region: str
    instance_id: str
    name: str | None
    tag: str
    value: str
    reason: str


@dataclass
class BackupPlan:
    region: str
    seen: int = 0
    opted_in: int = 0
    not_due: int = 0
    due: list[WorkItem] = field(default_factory=list)
    invalid: list[InvalidInstance] = field(default_factory=list)
    enqueued: int = 0
    error: str | None = None
    # Copied tag keys some AMI had no room for (EC2's 50-tag limit), by instance.
    dropped_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class BackupIndex:
    """What the planner needs to know of a region's AMIs, in one pass over the listing."""

    # Newest backup time per instance; failed AMIs do not count, pending ones do (they are under way).
    latest: dict[str, datetime] = field(default_factory=dict)
    # Failed scheduled AMIs per (instance, slot): each still holds its name until retention removes it,
    # so the retry of that slot needs the next name (see amikeeper.naming).
    failed: dict[tuple[str, datetime], int] = field(default_factory=dict)


def index_backups(images: Iterable[Image]) -> BackupIndex:
    index = BackupIndex()
    for image in images:
        instance_id = image.instance_id
        if instance_id is None:
            continue
        if image.state == "failed":
            if image.trigger == "schedule" and image.slot is not None:
                key = (instance_id, image.slot)
                index.failed[key] = index.failed.get(key, 0) + 1
            continue
        when = image.backup_time
        if instance_id not in index.latest or when > index.latest[instance_id]:
            index.latest[instance_id] = when
    return index


def current_slots(
    instances: Iterable[Instance], catalog: PolicyCatalog, stack: Stack, now: datetime
) -> set[datetime]:
    """Pure: the current slot of every opted-in instance whose tags are valid (the rest is never due)."""
    slots: set[datetime] = set()
    for instance in instances:
        try:
            policy = resolve_policy(instance.tags, stack.tag_keys, catalog)
            if policy is not None:
                slots.add(policy.schedule.slot_at(now))
        except (InvalidTag, ScheduleError):
            continue
    return slots


def plan_region(
    region: str,
    instances: Iterable[Instance],
    latest: Mapping[str, datetime],
    catalog: PolicyCatalog,
    stack: Stack,
    now: datetime,
    failed: Mapping[tuple[str, datetime], int] | None = None,
) -> BackupPlan:
    """Pure: which instances are due in their current slot (SPEC §3), and which tags are invalid."""
    plan = BackupPlan(region=region)
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
        attempt = min((failed or {}).get((instance.instance_id, slot), 0), MAX_ATTEMPT)
        tags = tags_of(instance, policy, stack, "schedule", slot)
        plan.due.append(
            build_work_item(
                instance,
                policy,
                region=region,
                stack=stack,
                trigger="schedule",
                slot=slot,
                attempt=attempt,
                tags=tags,
            )
        )
        if tags.dropped:
            plan.dropped_tags[instance.instance_id] = tags.dropped
    return plan


@dataclass(frozen=True)
class PlannerDeps:
    ec2: Callable[[str], Ec2Gateway]
    queue: WorkQueue
    notifier: Notifier
    ledger: NoticeLedger


class RegionCounts(BaseModel):
    """One row of the backup.summary table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = Field(min_length=1)
    seen: int = Field(default=0, ge=0)
    opted_in: int = Field(default=0, ge=0)
    due: int = Field(default=0, ge=0)
    enqueued: int = Field(default=0, ge=0)
    not_due: int = Field(default=0, ge=0)
    invalid: int = Field(default=0, ge=0)
    error: str | None = None
    dropped_tags: tuple[str, ...] = ()

    @classmethod
    def of(cls, plan: BackupPlan) -> RegionCounts:
        return cls(
            region=plan.region,
            seen=plan.seen,
            opted_in=plan.opted_in,
            due=len(plan.due),
            enqueued=plan.enqueued,
            not_due=plan.not_due,
            invalid=len(plan.invalid),
            error=plan.error,
            dropped_tags=tuple(sorted({key for keys in plan.dropped_tags.values() for key in keys})),
        )


# --- the tick: one task per region --------------------------------------------------------------------
class TasksNotQueued(RuntimeError):
    """SQS refused some region tasks even after retries: the tick fails, so that Lambda retries it (the
    deduplication id keeps the regions already queued from being planned twice) and, failing that,
    leaves it in the failed-invocations queue, which is alarmed."""

    def __init__(self, regions: Sequence[str], reason: str) -> None:
        super().__init__(
            f"region task(s) not queued for {', '.join(regions)} ({reason}); the tick is retried"
        )
        self.regions = tuple(regions)


def fan_out(now: datetime, execution_id: str, regions: Sequence[str], tasks: FifoQueue) -> list[RegionTask]:
    """Queue one task per region for the tick at ``now``; raises TasksNotQueued naming what SQS refused."""
    queued = [RegionTask(region=region, scheduled_time=now, execution_id=execution_id) for region in regions]
    try:
        refused = tasks.send(queued)
    except (ClientError, BotoCoreError) as error:
        raise TasksNotQueued(regions, f"{type(error).__name__}: {error}") from error
    if refused:
        raise TasksNotQueued([task.region for task in refused], "refused by SQS after retries")
    return queued


# --- one region -------------------------------------------------------------------------------------
def plan_region_task(task: RegionTask, catalog: PolicyCatalog, stack: Stack, deps: PlannerDeps) -> BackupPlan:
    """Plan one region at the tick's time and queue its due items; a failure is reported, never raised."""
    now = task.scheduled_time
    plan = _read_and_plan(task.region, now, catalog, stack, deps)
    notes = [
        invalid_tag(invalid)
        for invalid in plan.invalid
        if deps.ledger.first_time(_invalid_key(invalid), now, INVALID_TAG_MEMORY)
    ]
    _enqueue(plan, deps.queue)
    if catalog.document_error is not None:
        key = condition_key("policy.invalid#document", [catalog.document_error])
        if deps.ledger.first_time(key, now, PERSISTENT_NOTICE_MEMORY):
            notes.append(document_invalid(catalog.document_error))
    row = RegionCounts.of(plan)
    noteworthy = _noteworthy([row])
    if noteworthy and deps.ledger.first_time(noteworthy, now, PERSISTENT_NOTICE_MEMORY):
        notes.append(backup_summary([row], now))
    for notification in notes:
        deps.notifier.publish(notification)
    return plan


def _noteworthy(rows: Sequence[RegionCounts]) -> str:
    """What makes a region's run worth a message, as a key that stays the same while the condition does.

    A run that queued its due backups and met no problem publishes nothing: the daily report is what a
    person reads. A failing region or copied tags left out are worth one message a day while they last.
    """
    parts = [f"{row.region}:error:{error_kind(row.error)}" for row in rows if row.error]
    parts += [f"{row.region}:dropped:{','.join(row.dropped_tags)}" for row in rows if row.dropped_tags]
    return condition_key("backup.summary", parts) if parts else ""


def _read_and_plan(
    region: str, now: datetime, catalog: PolicyCatalog, stack: Stack, deps: PlannerDeps
) -> BackupPlan:
    """The region's plan, due items in instance-id order."""
    try:
        ec2 = deps.ec2(region)
        instances = list(ec2.opted_in_instances(stack.tag_keys.opt_in))
        slots = {format_slot(slot) for slot in current_slots(instances, catalog, stack, now)}
        backups = index_backups(ec2.backups_for_slots(stack.name, slots))
        plan = plan_region(region, instances, backups.latest, catalog, stack, now, backups.failed)
    except (ClientError, BotoCoreError) as error:
        return BackupPlan(region=region, error=f"{type(error).__name__}: {error}")
    plan.due.sort(key=lambda item: item.instance_id)
    return plan


def _enqueue(plan: BackupPlan, queue: WorkQueue) -> None:
    """Queue the plan's items 10 at a time.

    A batch SQS partly refuses is counted and reported and the rest goes on; SQS unreachable ends the
    region with an error. Either way those instances are still due, so the next tick queues them.
    """
    refused: list[str] = []
    reason = ""
    items = iter(plan.due)
    while chunk := list(islice(items, BATCH)):
        try:
            plan.enqueued += queue.send(chunk)
        except EnqueueError as error:
            plan.enqueued += len(chunk) - len(error.failed)
            refused.extend(error.failed)
            reason = str(error)
        except (ClientError, BotoCoreError) as error:
            _record_refused(plan, refused, reason)
            plan.error = f"work queue: {type(error).__name__}: {error}"
            return
    _record_refused(plan, refused, reason)


def _record_refused(plan: BackupPlan, refused: Sequence[str], reason: str) -> None:
    if refused:
        plan.error = f"{len(refused)} work item(s) not queued, the next run retries them: {reason}"


# --- notifications ----------------------------------------------------------------------------------
def document_invalid(reason: str) -> Notification:
    return Notification(
        event="policy.invalid",
        severity="error",
        subject="amikeeper: named-policies document is malformed and was not applied",
        summary=f"The named-policies document could not be applied: {reason}. "
        "Instances that name a policy are skipped until it is fixed.",
        payload={"scope": "document", "reason": reason},
    )


def _invalid_key(invalid: InvalidInstance) -> str:
    return f"policy.invalid#{invalid.region}#{invalid.instance_id}#{invalid.tag}#{invalid.value}"


def invalid_tag(invalid: InvalidInstance) -> Notification:
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


def backup_summary(rows: Sequence[RegionCounts], now: datetime) -> Notification:
    table = [["region", "seen", "opted in", "due", "queued", "not due", "invalid", "error"]]
    for row in rows:
        table.append(
            [
                row.region,
                str(row.seen),
                str(row.opted_in),
                str(row.due),
                str(row.enqueued),
                str(row.not_due),
                str(row.invalid),
                row.error or "",
            ]
        )
    failed = [row for row in rows if row.error]
    dropped = sorted({key for row in rows for key in row.dropped_tags})
    queued = sum(row.enqueued for row in rows)
    where = ", ".join(row.region for row in rows)
    left_out = (
        f" These instance tags named in CopyTags were not copied onto some backups, because an AMI "
        f"holds at most {EC2_TAG_LIMIT} tags and amikeeper's own always fit: {', '.join(dropped)}."
        if dropped
        else ""
    )
    return Notification(
        event="backup.summary",
        severity="error" if failed else "warning",
        subject=f"amikeeper: {queued} backup(s) queued in {where}"
        + (f", {len(failed)} region(s) failed" if failed else ", some tags not copied"),
        summary=f"Planner run at {format_slot(now)}: {queued} backup(s) queued.{left_out}"
        " The same condition is reported again tomorrow if it lasts.",
        table=table,
        payload={
            "time": format_slot(now),
            "regions": [row.model_dump(include=_SUMMARY_FIELDS) for row in rows],
            "tags_not_copied": dropped,
        },
    )


_SUMMARY_FIELDS = {"region", "seen", "opted_in", "due", "enqueued", "not_due", "invalid", "error"}
