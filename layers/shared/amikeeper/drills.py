"""Restore drills (SPEC §10): prove on a schedule that backups boot, and never leave a drill running.

Two steps, neither of which waits:

- :func:`run_drill_tick` (DrillFunction, every 30 minutes) first sweeps: any drill instance older than
  DrillMaxMinutes plus a grace is terminated and its drill reported failed, so a crash anywhere never
  leaves an instance running and billing. Then, on days a verify slot passed, it reads each region's
  opted-in instances and backups, finds the drills that are due (:mod:`amikeeper.drill_plan`) and starts
  as many as the concurrency cap and the day's minutes allow, the longest unverified first. Each start
  is a RunInstances of the newest backup into the region's drill subnet and no-ingress group, and a
  delayed message on the drill queue.
- :func:`check_drill` (DrillCheckerFunction, fed by the drill queue) looks at one drill instance: up and
  passing its status checks, failed, or past its limit. A pending drill goes back to the queue with a
  delay; a settled one is terminated first and then recorded on its backup, so nothing is recorded for a
  drill that is still running.

A failed drill sends one ``restore.failed`` (severity error) at once; verified drills are read back from
their backups' tags by the daily report.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from amikeeper.drill_plan import (
    VERIFY_WINDOW,
    DrillCandidate,
    DrillNetwork,
    DrillRecord,
    DueDrill,
    client_token,
    drill_type,
    due_drill,
    failed,
    first_drills,
    judge,
    pick_network,
    verified,
)
from amikeeper.gateways.drill_budget import DrillBudget
from amikeeper.gateways.ec2 import IMAGE_NOT_FOUND, DrillLaunch, Ec2Gateway, error_code
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import DelayQueue
from amikeeper.model import (
    DRILL,
    DRILL_OF,
    INSTANCE_ID,
    RESTORE_DRILL,
    RESTORE_VERIFIED,
    DrillTask,
    Image,
    Stack,
)
from amikeeper.naming import format_slot
from amikeeper.notifications import NoticeLedger, Notification
from amikeeper.policies import InvalidTag, PolicyCatalog, resolve_policy
from amikeeper.readiness import instance_ready

logger = logging.getLogger(__name__)

# The first look comes when a small instance is usually running; the next ones every minute.
FIRST_LOOK_SECONDS = 90
LOOK_SECONDS = 60
# How long after its own limit a drill instance is left to its checker before the sweeper takes it.
SWEEP_GRACE = timedelta(minutes=10)
FAILURE_MEMORY = timedelta(days=8)


@dataclass(frozen=True)
class DrillLimits:
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    instance_type: str | None
    max_concurrent: int
    minutes_per_day: int
    max_minutes: int

    @property
    def limit(self) -> timedelta:
        return timedelta(minutes=self.max_minutes)


@dataclass(frozen=True)
class DrillDeps:
    ec2: Callable[[str], Ec2Gateway]
    regions: tuple[str, ...]
    queue: DelayQueue[DrillTask]
    budget: DrillBudget
    notifier: Notifier
    ledger: NoticeLedger
    catalog: Callable[[], PolicyCatalog]
    stack: Stack
    limits: DrillLimits


@dataclass
class TickResult:
    swept: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Due, but over the concurrency cap or the day's minutes: a later tick starts them.
    waiting: list[str] = field(default_factory=list)
    read_fleet: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "swept": self.swept,
            "started": self.started,
            "failed": self.failed,
            "waiting": self.waiting,
            "read_fleet": self.read_fleet,
        }


def run_drill_tick(deps: DrillDeps, now: datetime) -> TickResult:
    result = TickResult()
    live: dict[str, set[str]] = {}  # region -> instance ids with a drill running
    running = 0
    for region in deps.regions:
        ec2 = deps.ec2(region)
        drills = ec2.drill_instances(deps.stack.name)
        stale = [d for d in drills if d.launch_time and now - d.launch_time > deps.limits.limit + SWEEP_GRACE]
        for instance in stale:
            _sweep(deps, region, instance.instance_id, instance.tags, instance.state, now)
            result.swept.append(instance.instance_id)
        kept = [d for d in drills if d not in stale]
        running += len(kept)
        live[region] = {d.tags[INSTANCE_ID] for d in kept if INSTANCE_ID in d.tags}
    catalog = deps.catalog()
    if not _verify_slot_recently(catalog, now):
        return result
    result.read_fleet = True
    due = [
        drill
        for region in deps.regions
        for candidate in _candidates(deps, catalog, region)
        if (drill := due_drill(candidate, now, live[region])) is not None
    ]
    chosen = first_drills(due, deps.limits.max_concurrent - running)
    result.waiting = [d.candidate.instance_id for d in due if d not in chosen]
    networks: dict[str, DrillNetwork | str] = {}
    for index, drill in enumerate(chosen):
        region = drill.candidate.region
        if region not in networks:
            networks[region] = _network(deps, region)
        outcome = _start(deps, drill, networks[region], now)
        if outcome == "no-budget":
            result.waiting += [d.candidate.instance_id for d in chosen[index:]]
            break
        (result.started if outcome == "started" else result.failed).append(drill.candidate.instance_id)
    return result


def _verify_slot_recently(catalog: PolicyCatalog, now: datetime) -> bool:
    """Whether any policy's verify schedule had a slot within VERIFY_WINDOW: on other days there is
    nothing due and the fleet is not read at all."""
    schedules = [p.verify for p in (catalog.default, *catalog.named.values()) if p.verify is not None]
    return any(now - schedule.slot_at(now) <= VERIFY_WINDOW for schedule in schedules)


def _candidates(deps: DrillDeps, catalog: PolicyCatalog, region: str) -> list[DrillCandidate]:
    ec2 = deps.ec2(region)
    verify = {}
    for instance in ec2.opted_in_instances(deps.stack.tag_keys.opt_in):
        try:
            policy = resolve_policy(instance.tags, deps.stack.tag_keys, catalog)
        except InvalidTag:
            continue  # reported as policy.invalid by the planner; no drill of an instance it skips
        if policy is not None and policy.verify is not None:
            verify[instance.instance_id] = policy.verify
    if not verify:
        return []
    backups: dict[str, list[Image]] = defaultdict(list)
    for image in ec2.managed_images(deps.stack.name):
        if image.copy_of is None and image.instance_id in verify:
            backups[image.instance_id].append(image)
    return [
        DrillCandidate(region, instance_id, schedule, tuple(backups[instance_id]))
        for instance_id, schedule in sorted(verify.items())
    ]


def _network(deps: DrillDeps, region: str) -> DrillNetwork | str:
    limits = deps.limits
    if not limits.subnet_ids or not limits.security_group_ids:
        return "the stack has no drill network (DrillSubnetIds and DrillSecurityGroupIds)"
    ec2 = deps.ec2(region)
    return pick_network(ec2.subnets(limits.subnet_ids), ec2.security_groups(limits.security_group_ids))


def _start(
    deps: DrillDeps, drill: DueDrill, network: DrillNetwork | str, now: datetime
) -> Literal["started", "failed", "no-budget"]:
    region, instance_id, image = drill.candidate.region, drill.candidate.instance_id, drill.image
    if isinstance(network, str):
        reason = f"cannot run in {region}: {network}"
        _record_failure(deps, region, image.image_id, instance_id, reason, now, key=format_slot(drill.slot))
        return "failed"
    limits = deps.limits
    if not deps.budget.reserve(now.date(), limits.max_minutes, limits.minutes_per_day, now):
        return "no-budget"
    launch = DrillLaunch(
        image_id=image.image_id,
        devices=image.devices,
        subnet_id=network.subnet_id,
        security_group_id=network.security_group_id,
        instance_type=drill_type(image.architecture, limits.instance_type),
        tags={
            DRILL: deps.stack.name,
            DRILL_OF: image.image_id,
            INSTANCE_ID: instance_id,
            "Name": f"amikeeper restore drill of {instance_id}",
        },
        client_token=client_token(deps.stack.name, image.image_id, drill.slot),
    )
    try:
        drill_instance = deps.ec2(region).launch_drill(launch)
    except ClientError as error:
        deps.budget.give_back(now.date(), limits.max_minutes)
        reason = f"RunInstances refused ({error_code(error)}): {error.response.get('Error', {}).get('Message', '')}"
        _record_failure(deps, region, image.image_id, instance_id, reason, now, key=format_slot(drill.slot))
        return "failed"
    task = DrillTask(
        region=region,
        instance_id=instance_id,
        image_id=image.image_id,
        drill_instance_id=drill_instance,
        slot=drill.slot,
        launched_at=now,
    )
    if deps.queue.send([task], FIRST_LOOK_SECONDS):
        # Not lost: the drill instance is tagged, and the sweeper terminates and reports it.
        logger.error("drill %s of %s not queued for its checks", drill_instance, image.image_id)
    return "started"


Action = Literal["waiting", "verified", "failed"]


@dataclass(frozen=True)
class DrillOutcome:
    action: Action
    task: DrillTask
    detail: str = ""
    seconds_to_running: float | None = None
    seconds_to_ok: float | None = None

    def log_fields(self) -> dict[str, Any]:
        return {
            "instance_id": self.task.instance_id,
            "image_id": self.task.image_id,
            "drill_instance_id": self.task.drill_instance_id,
            "region": self.task.region,
            "detail": self.detail,
            "seconds_to_running": self.seconds_to_running,
            "seconds_to_ok": self.seconds_to_ok,
        }


def check_drill(task: DrillTask, deps: DrillDeps, now: datetime) -> DrillOutcome:
    ec2 = deps.ec2(task.region)
    health = ec2.instance_status(task.drill_instance_id)
    if task.running_at is None and health is not None and health.state == "running":
        task = task.model_copy(update={"running_at": now})
    look = judge(instance_ready(task.drill_instance_id, health), task.launched_at, now, deps.limits.limit)
    if look.verdict == "pending":
        if deps.queue.send([task], LOOK_SECONDS):
            raise RuntimeError(f"drill {task.drill_instance_id} could not be queued for its next look")
        return DrillOutcome("waiting", task, look.detail)
    ec2.terminate([task.drill_instance_id])
    used = math.ceil((now - task.launched_at).total_seconds() / 60)
    deps.budget.give_back(task.launched_at.date(), max(deps.limits.max_minutes - used, 0))
    if look.verdict == "failed":
        _record_failure(
            deps, task.region, task.image_id, task.instance_id, look.detail, now, key=task.drill_instance_id
        )
        return DrillOutcome("failed", task, look.detail)
    to_running = ((task.running_at or now) - task.launched_at).total_seconds()
    to_ok = (now - task.launched_at).total_seconds()
    _record(ec2, task.image_id, verified(now, to_running, to_ok), now)
    return DrillOutcome("verified", task, seconds_to_running=to_running, seconds_to_ok=to_ok)


def _sweep(
    deps: DrillDeps, region: str, drill_instance_id: str, tags: Mapping[str, str], state: str, now: datetime
) -> None:
    deps.ec2(region).terminate([drill_instance_id])
    image_id, instance_id = tags.get(DRILL_OF), tags.get(INSTANCE_ID)
    minutes = round((deps.limits.limit + SWEEP_GRACE).total_seconds() / 60)
    reason = (
        f"drill instance {drill_instance_id} still {state} after {minutes} minutes: terminated by the sweeper"
    )
    if image_id and instance_id:
        _record_failure(deps, region, image_id, instance_id, reason, now, key=drill_instance_id)


def _record(ec2: Ec2Gateway, image_id: str, record: DrillRecord, now: datetime) -> None:
    """The drill's outcome on its backup; a backup retention deleted meanwhile has nothing to record on."""
    try:
        verified_at = {RESTORE_VERIFIED: format_slot(now)} if record.outcome == "verified" else {}
        ec2.tag_image_with(image_id, {RESTORE_DRILL: record.tag_value()} | verified_at)
    except ClientError as error:
        if error_code(error) not in IMAGE_NOT_FOUND:
            raise
        logger.warning("backup %s is gone; its drill outcome is not recorded", image_id)


def _record_failure(
    deps: DrillDeps,
    region: str,
    image_id: str,
    instance_id: str,
    reason: str,
    now: datetime,
    *,
    key: str,
) -> None:
    """Recorded on the backup, and said once: ``key`` names the attempt (its slot, or its drill instance),
    so a redelivered message or a retried tick does not notify again."""
    _record(deps.ec2(region), image_id, failed(now, reason), now)
    if deps.ledger.first_time(f"restore.failed#{image_id}#{key}", now, FAILURE_MEMORY):
        deps.notifier.publish(restore_failed(region, instance_id, image_id, reason))


def restore_failed(region: str, instance_id: str, image_id: str, reason: str) -> Notification:
    return Notification(
        event="restore.failed",
        severity="error",
        subject=f"amikeeper: restore drill of {instance_id} ({region}) failed",
        summary=f"The restore drill of {instance_id}'s backup {image_id} ({region}) failed: {reason}. "
        "The drill instance is terminated. Until a drill succeeds, this backup is not known to restore; "
        f"try `amikeeper restore {instance_id} --backup {image_id} --dry-run`.",
        table=[["instance", "backup", "region", "reason"], [instance_id, image_id, region, reason]],
        payload={"instance_id": instance_id, "image_id": image_id, "region": region, "reason": reason},
    )
