"""The planner tick (SPEC §6): find opted-in, due instances in every region and queue one work item each.

The planner makes no mutating EC2 call. Per region it reads paginated, server-filtered listings and
decides "due" in memory, so its EC2 cost does not grow with one call per instance: the opted-in
instances, then only the AMIs that can make one of them not due, i.e. this stack's AMIs of the
instances' current slots and its stop and manual backups (a stop backup after the slot covers it). The
AMIs retention keeps from earlier slots, about 15 per instance at the default retention, are not read.

Time budget. An invocation has a deadline (``TimeBudget.remaining_ms``, the Lambda context's
``get_remaining_time_in_millis``). The planner hands what is left to a fresh invocation of itself
before it runs out, so that many regions, or one very large region, finish in one tick:

- Regions are planned in order. The first region of an invocation always starts; any later one only
  when at least ``region_reserve_ms`` remain, and at least twice as long as the slowest region read so
  far in this invocation took.
- A region's due work items are queued in instance-id order, 10 per SendMessageBatch. Sending stops
  when fewer than ``send_reserve_ms`` remain (after at least one batch, so every invocation moves on).
- What is left goes into a :class:`Continuation`: the regions still to do and, for a region stopped
  half-way, the last instance id queued. The handler re-invokes itself asynchronously with the same
  tick (scheduled time, execution id) and that continuation. The next invocation reads the region
  again, plans it at the same tick time and queues only the instances after that id: every due
  instance is queued once, none is skipped. (One launched meanwhile with a smaller id is not due in
  this continuation; the next tick, at most ``PlannerRate`` minutes later, queues it.)
- The finished regions' counts travel with the continuation, so the invocation that finishes sees the
  whole tick. ``policy.invalid`` notices go out from the invocation that planned the region, at most once
  a day for the same tag and value (the notice ledger); a malformed policy document is reported by the
  first, at most once a day while it stays the same.
- An invocation that made no progress does not hand off (it would loop): the regions left undone count
  as failed, and the next tick plans them again. So does a hand-off that Lambda refuses.

Notifications: a tick that queued its due backups without a problem publishes nothing (the daily report
is the message people read). A ``backup.summary`` goes out only for a failing region or for copied tags
left out, at most once a day while the same condition lasts.

Nothing is lost when the planner stops anywhere: it keeps no state of its own, an instance stays due
until its AMI exists, and the worker treats a second work item for the same AMI name as success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from amikeeper.backups import EC2_TAG_LIMIT, build_work_item, tags_of
from amikeeper.events import ScheduledTick
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import BATCH, EnqueueError, WorkQueue
from amikeeper.model import Image, Instance, Stack, WorkItem
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
# Reading a region of 10,000 instances and their AMIs takes tens of seconds against EC2.
REGION_RESERVE_MS = 60_000
# Enough to publish the notices and make the asynchronous Invoke that hands the rest on.
SEND_RESERVE_MS = 15_000


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


# --- time budget and continuation -------------------------------------------------------------------
@dataclass(frozen=True)
class TimeBudget:
    """The invocation's remaining time, and how much of it the planner keeps in hand."""

    remaining_ms: Callable[[], int]
    region_reserve_ms: int = REGION_RESERVE_MS
    send_reserve_ms: int = SEND_RESERVE_MS

    def may_start_region(self, slowest_read_ms: int) -> bool:
        return self.remaining_ms() >= max(self.region_reserve_ms, 2 * slowest_read_ms)

    def may_send(self) -> bool:
        return self.remaining_ms() >= self.send_reserve_ms


def unlimited_time() -> int:
    """The remaining time of a caller outside Lambda (a script): never short."""
    return 2**31


class RegionCounts(BaseModel):
    """One row of the backup.summary; the rows of finished regions travel with a continuation."""

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


class Resume(BaseModel):
    """A region stopped half-way: its counts so far and the last instance id queued ("" for none yet)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    counts: RegionCounts
    after_instance_id: str = ""


class Continuation(BaseModel):
    """What an invocation short of time hands to the next one, inside the planner's own event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: tuple[str, ...] = Field(min_length=1)  # still to do, in order; a resumed one comes first
    resume: Resume | None = None
    finished: tuple[RegionCounts, ...] = ()
    hand_offs: int = Field(default=1, ge=1)


class PlannerTick(ScheduledTick):
    """The planner's event: a Scheduler tick, or the planner's own continuation of one."""

    continuation: Continuation | None = None

    def continued(self, now: datetime, continuation: Continuation) -> dict[str, object]:
        """The event of the invocation that carries on this tick: same time, same execution id."""
        return {
            "scheduled_time": now.isoformat(),
            "execution_id": self.execution_id,
            "continuation": continuation.model_dump(mode="json"),
        }


@dataclass
class PlannerRun:
    """What this invocation did (``plans``) and the tick's summary rows so far (``rows``)."""

    plans: list[BackupPlan]
    rows: list[RegionCounts]
    handed_off: Continuation | None = None
    hand_off_error: str | None = None

    def response(self) -> dict[str, object]:
        return {
            "regions": [
                {
                    "region": plan.region,
                    "due": len(plan.due),
                    "enqueued": plan.enqueued,
                    "invalid": len(plan.invalid),
                    "error": plan.error,
                }
                for plan in self.plans
            ],
            "continued": self.handed_off is not None,
            "hand_off_error": self.hand_off_error,
        }


@dataclass
class _Stop:
    """Where an invocation stopped: the regions left and, for one stopped half-way, how far it got."""

    regions: list[str]
    resume: Resume | None = None


# --- the run ----------------------------------------------------------------------------------------
def run_planner(
    now: datetime,
    regions: Sequence[str],
    catalog: PolicyCatalog,
    stack: Stack,
    deps: PlannerDeps,
    *,
    budget: TimeBudget | None = None,
    continuation: Continuation | None = None,
    hand_off: Callable[[Continuation], None] | None = None,
) -> PlannerRun:
    """One planner invocation; a failing region is reported and never stops the others.

    Without a budget the whole tick is done here. With one, see the module docstring: what does not fit
    goes to ``hand_off``, and the summary is left to the invocation that finishes the tick.
    """
    budget = budget or TimeBudget(unlimited_time)
    wanted = set(regions)
    to_do = [region for region in continuation.regions if region in wanted] if continuation else list(regions)
    resume = continuation.resume if continuation and to_do and to_do[0] == continuation.regions[0] else None
    run = PlannerRun(plans=[], rows=list(continuation.finished) if continuation else [])
    notes: list[Notification] = []
    stop = _plan_regions(to_do, resume, now, catalog, stack, deps, budget, run, notes)
    if continuation is None and catalog.document_error is not None:
        key = condition_key("policy.invalid#document", [catalog.document_error])
        if deps.ledger.first_time(key, now, PERSISTENT_NOTICE_MEMORY):
            notes.append(document_invalid(catalog.document_error))
    if stop is not None:
        following = Continuation(
            regions=tuple(stop.regions),
            resume=stop.resume,
            finished=tuple(run.rows),
            hand_offs=(continuation.hand_offs if continuation else 0) + 1,
        )
        run.hand_off_error = _hand_off(following, hand_off, progressed=_progressed(run, continuation))
        if run.hand_off_error is None:
            run.handed_off = following
            _publish(deps.notifier, notes)
            return run
        run.rows.extend(_undone_rows(stop, run.hand_off_error))
    hand_offs = continuation.hand_offs if continuation else 0
    noteworthy = _noteworthy(run.rows)
    if noteworthy and deps.ledger.first_time(noteworthy, now, PERSISTENT_NOTICE_MEMORY):
        notes.append(backup_summary(run.rows, now, hand_offs=hand_offs))
    _publish(deps.notifier, notes)
    return run


def _noteworthy(rows: Sequence[RegionCounts]) -> str:
    """What makes a run worth a message, as a key that stays the same while the condition does.

    A run that queued its due backups and met no problem publishes nothing: the daily report is what a
    person reads. A failing region or copied tags left out are worth one message a day while they last.
    """
    parts = [f"{row.region}:error:{error_kind(row.error)}" for row in rows if row.error]
    parts += [f"{row.region}:dropped:{','.join(row.dropped_tags)}" for row in rows if row.dropped_tags]
    return condition_key("backup.summary", parts) if parts else ""


def _plan_regions(
    to_do: Sequence[str],
    resume: Resume | None,
    now: datetime,
    catalog: PolicyCatalog,
    stack: Stack,
    deps: PlannerDeps,
    budget: TimeBudget,
    run: PlannerRun,
    notes: list[Notification],
) -> _Stop | None:
    """Plan and queue region after region until done (None) or short of time (where it stopped)."""
    slowest_read_ms = 0
    for index, region in enumerate(to_do):
        if index > 0 and not budget.may_start_region(slowest_read_ms):
            return _Stop(list(to_do[index:]))
        resumed = resume if index == 0 else None
        started_ms = budget.remaining_ms()
        plan = _read_and_plan(region, now, catalog, stack, deps, resumed)
        slowest_read_ms = max(slowest_read_ms, started_ms - budget.remaining_ms())
        if resumed is None:
            notes.extend(
                invalid_tag(invalid)
                for invalid in plan.invalid
                if deps.ledger.first_time(_invalid_key(invalid), now, INVALID_TAG_MEMORY)
            )
        moved_on = bool(run.plans)
        run.plans.append(plan)
        stopped_after = _enqueue(plan, deps.queue, budget, must_send_once=not moved_on)
        counts = _cumulative(plan, resumed)
        if stopped_after is not None:
            return _Stop(list(to_do[index:]), Resume(counts=counts, after_instance_id=stopped_after))
        run.rows.append(counts)
    return None


def _read_and_plan(
    region: str,
    now: datetime,
    catalog: PolicyCatalog,
    stack: Stack,
    deps: PlannerDeps,
    resumed: Resume | None,
) -> BackupPlan:
    """The region's plan, due items in instance-id order; for a resumed region only what is left."""
    try:
        ec2 = deps.ec2(region)
        instances = list(ec2.opted_in_instances(stack.tag_keys.opt_in))
        slots = {format_slot(slot) for slot in current_slots(instances, catalog, stack, now)}
        backups = index_backups(ec2.backups_for_slots(stack.name, slots))
        plan = plan_region(
            region,
            instances,
            backups.latest,
            catalog,
            stack,
            now,
            backups.failed,
        )
    except (ClientError, BotoCoreError) as error:
        return BackupPlan(region=region, error=f"{type(error).__name__}: {error}")
    due = sorted(plan.due, key=lambda item: item.instance_id)
    if resumed is None:
        plan.due = due
        return plan
    # Counted and reported by the invocation that first planned the region: only the rest is new.
    after = resumed.after_instance_id
    return BackupPlan(region=region, due=[item for item in due if item.instance_id > after])


def _enqueue(plan: BackupPlan, queue: WorkQueue, budget: TimeBudget, *, must_send_once: bool) -> str | None:
    """Queue the plan's items 10 at a time; None when done, else the last instance id queued ("" if none).

    A batch SQS partly refuses is counted and reported and the rest goes on; SQS unreachable ends the
    region with an error. Either way those instances are still due, so the next tick queues them.
    """
    last = ""
    refused: list[str] = []
    reason = ""
    items = iter(plan.due)
    sent_batches = 0
    while chunk := list(islice(items, BATCH)):
        if not budget.may_send() and (sent_batches or not must_send_once):
            _record_refused(plan, refused, reason)
            return last
        sent_batches += 1
        try:
            plan.enqueued += queue.send(chunk)
        except EnqueueError as error:
            plan.enqueued += len(chunk) - len(error.failed)
            refused.extend(error.failed)
            reason = str(error)
        except (ClientError, BotoCoreError) as error:
            _record_refused(plan, refused, reason)
            plan.error = f"work queue: {type(error).__name__}: {error}"
            return None
        last = chunk[-1].instance_id
    _record_refused(plan, refused, reason)
    return None


def _record_refused(plan: BackupPlan, refused: Sequence[str], reason: str) -> None:
    if refused:
        plan.error = f"{len(refused)} work item(s) not queued, the next run retries them: {reason}"


def _cumulative(plan: BackupPlan, resumed: Resume | None) -> RegionCounts:
    if resumed is None:
        return RegionCounts.of(plan)
    carried = resumed.counts
    return carried.model_copy(
        update={"enqueued": carried.enqueued + plan.enqueued, "error": plan.error or carried.error}
    )


def _progressed(run: PlannerRun, continuation: Continuation | None) -> bool:
    finished_before = len(continuation.finished) if continuation else 0
    return len(run.rows) > finished_before or any(plan.enqueued for plan in run.plans)


def _hand_off(
    following: Continuation, hand_off: Callable[[Continuation], None] | None, *, progressed: bool
) -> str | None:
    """Give the rest to a new invocation; the reason it could not be, or None when it was."""
    if hand_off is None:
        return "out of time, and no way to continue in a new invocation"
    if not progressed:
        return "out of time before anything could be queued; the next planner run goes on"
    try:
        hand_off(following)
    except (ClientError, BotoCoreError, RuntimeError) as error:
        return (
            f"could not continue in a new invocation ({type(error).__name__}: {error}); the next run goes on"
        )
    return None


def _undone_rows(stop: _Stop, reason: str) -> list[RegionCounts]:
    rows: list[RegionCounts] = []
    for region in stop.regions:
        if stop.resume is not None and region == stop.regions[0]:
            counts = stop.resume.counts
            left = counts.due - counts.enqueued
            rows.append(counts.model_copy(update={"error": f"{left} due item(s) not queued: {reason}"}))
        else:
            rows.append(RegionCounts(region=region, error=f"not planned: {reason}"))
    return rows


def _publish(notifier: Notifier, notes: Iterable[Notification]) -> None:
    for notification in notes:
        notifier.publish(notification)


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


def backup_summary(rows: Sequence[RegionCounts], now: datetime, *, hand_offs: int = 0) -> Notification:
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
    spread = (
        f" in {hand_offs + 1} invocations (it ran short of time {hand_offs} time(s))" if hand_offs else ""
    )
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
        summary=f"Planner run at {format_slot(now)}: {queued} backup(s) queued{spread}.{left_out}"
        " The same condition is reported again tomorrow if it lasts.",
        table=table,
        payload={
            "time": format_slot(now),
            "regions": [row.model_dump(include=_SUMMARY_FIELDS) for row in rows],
            "tags_not_copied": dropped,
        },
    )


_SUMMARY_FIELDS = {"region", "seen", "opted_in", "due", "enqueued", "not_due", "invalid", "error"}
