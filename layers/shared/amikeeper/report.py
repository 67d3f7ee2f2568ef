"""The daily report (SPEC §6): is every opted-in instance backed up as often as its schedule promises?

Per region: every opted-in instance with its newest *available* backup and that backup's age. The age
runs from the backup's slot (from its creation when it has none), the same time the planner counts.

- **RPO violation**: the newest available backup is older than the schedule's longest gap between two
  slots (``Schedule.max_interval()``) plus one planner tick, or there is none at all. An instance
  launched less than that bound ago has not missed anything yet: it is listed as ``new``.
- **invalid**: its tags cannot be honoured (the planner skips it and says why in ``policy.invalid``).
- **stale pending**: an AMI of this stack still ``pending`` more than ``PendingTimeoutHours`` after it
  was created; EC2 never sent it a final state.
- **copies** (SPEC §9): per destination of its policy, the newest backup of the instance whose copy
  there completed (each backup records its completed copies), and that backup's age. A copy is **late**
  when that age is more than the schedule's longest interval plus one planner tick plus the copy
  allowance (``CopyAllowanceHours``), or **missing** when no backup has a copy there yet (an instance
  launched less than that bound ago is not flagged).
- **restore drills** (SPEC §10): for an instance whose policy has ``verify``, its drill for the latest
  verify slot, read from its backups' ``amikeeper:restore-drill`` tags: verified, failed, waiting (the
  slot passed less than a day ago), or overdue. The report lists the last day's drills and the overdue.

One ``report.daily`` per run (``info``, or ``warning`` when anything needs attention) and, when there
are violations, one ``rpo.violation`` (``error``), so people can subscribe to errors only. SNS caps a
message at 256 KiB: the lists are cut to fit, problems first, and each message says how many it left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.config import Settings
from amikeeper.drill_plan import VERIFY_WINDOW, DrillRecord, last_drilled
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sns import Notifier
from amikeeper.model import Image, Instance, Stack, TagKeys
from amikeeper.naming import format_slot
from amikeeper.notifications import NoticeLedger, Notification, fit_to_sns, render_table
from amikeeper.policies import InvalidTag, PolicyCatalog, resolve_policy

REPORT_MEMORY = timedelta(days=2)
# The drills a daily report lists: those of the day it covers.
DRILL_PERIOD = timedelta(days=1)

Status = Literal["violation", "invalid", "new", "ok"]
STATUS_ORDER: dict[Status, int] = {"violation": 0, "invalid": 1, "new": 2, "ok": 3}

NAME_WIDTH = 40


CopyState = Literal["ok", "late", "missing"]


@dataclass(frozen=True)
class CopyStatus:
    """An instance's newest completed copy in one destination."""

    destination: str
    state: CopyState
    image_id: str | None = None  # the copy
    backup_time: datetime | None = None  # of the backup it is a copy of
    age: timedelta | None = None
    allowed_age: timedelta | None = None

    def document(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "state": self.state,
            "image_id": self.image_id,
            "backup_time": format_slot(self.backup_time) if self.backup_time else None,
            "age_seconds": _seconds(self.age),
            "allowed_age_seconds": _seconds(self.allowed_age),
        }


DrillState = Literal["verified", "failed", "waiting", "overdue"]


@dataclass(frozen=True)
class DrillStatus:
    """An instance's restore drill for its latest verify slot: verified or failed (its last drill), waiting
    (the slot passed within the drills' window: a later tick starts it), or overdue (the window passed
    with no drill: capped out, no backup to drill, or the drill functions not running)."""

    verify: str
    state: DrillState
    image_id: str | None = None
    at: datetime | None = None
    detail: str = ""

    def document(self) -> dict[str, Any]:
        return {
            "verify": self.verify,
            "state": self.state,
            "image_id": self.image_id,
            "at": format_slot(self.at) if self.at else None,
            "detail": self.detail or None,
        }


@dataclass(frozen=True)
class InstanceStatus:
    region: str
    instance_id: str
    name: str | None
    status: Status
    policy: str | None = None
    schedule: str | None = None
    image_id: str | None = None
    backup_time: datetime | None = None
    age: timedelta | None = None
    allowed_age: timedelta | None = None
    reason: str | None = None
    copies: tuple[CopyStatus, ...] = ()
    drill: DrillStatus | None = None

    @property
    def late_copies(self) -> list[CopyStatus]:
        return [copy for copy in self.copies if copy.state != "ok"]

    @property
    def drill_problem(self) -> bool:
        return self.drill is not None and self.drill.state in ("failed", "overdue")

    def document(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "instance_id": self.instance_id,
            "instance_name": self.name,
            "status": self.status,
            "policy": self.policy,
            "schedule": self.schedule,
            "image_id": self.image_id,
            "backup_time": format_slot(self.backup_time) if self.backup_time else None,
            "age_seconds": _seconds(self.age),
            "allowed_age_seconds": _seconds(self.allowed_age),
            "reason": self.reason,
            "copies": [copy.document() for copy in self.copies],
            "drill": self.drill.document() if self.drill else None,
        }


@dataclass(frozen=True)
class StalePending:
    region: str
    image_id: str
    image_name: str
    instance_id: str | None
    instance_name: str | None
    created: datetime
    age: timedelta

    def document(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "image_id": self.image_id,
            "image_name": self.image_name,
            "instance_id": self.instance_id,
            "instance_name": self.instance_name,
            "created": format_slot(self.created),
            "age_seconds": _seconds(self.age),
        }


@dataclass(frozen=True)
class RegionReport:
    region: str
    instances: tuple[InstanceStatus, ...] = ()
    stale: tuple[StalePending, ...] = ()
    error: str | None = None

    def count(self, status: Status) -> int:
        return sum(1 for instance in self.instances if instance.status == status)

    def document(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "opted_in": len(self.instances),
            "ok": self.count("ok"),
            "violations": self.count("violation"),
            "new": self.count("new"),
            "invalid": self.count("invalid"),
            "stale_pending": len(self.stale),
            "late_copies": sum(len(instance.late_copies) for instance in self.instances),
            "error": self.error,
        }


@dataclass(frozen=True)
class DailyReport:
    time: datetime
    regions: tuple[RegionReport, ...]
    tick: timedelta
    pending_timeout: timedelta
    copy_allowance: timedelta = timedelta(0)

    @property
    def instances(self) -> list[InstanceStatus]:
        """Every instance, problems first: violations, invalid, new, then healthy; oldest backup first."""
        listed = [instance for region in self.regions for instance in region.instances]
        return sorted(listed, key=_listing_order)

    @property
    def violations(self) -> list[InstanceStatus]:
        return [instance for instance in self.instances if instance.status == "violation"]

    @property
    def stale(self) -> list[StalePending]:
        listed = [image for region in self.regions for image in region.stale]
        return sorted(listed, key=lambda image: (-image.age, image.region, image.image_id))

    @property
    def late_copies(self) -> list[tuple[InstanceStatus, CopyStatus]]:
        return [(instance, copy) for instance in self.instances for copy in instance.late_copies]

    @property
    def failed_regions(self) -> list[RegionReport]:
        return [region for region in self.regions if region.error]

    def drills(self, state: DrillState) -> list[InstanceStatus]:
        return [i for i in self.instances if i.drill is not None and i.drill.state == state]

    @property
    def recent_drills(self) -> list[InstanceStatus]:
        """Instances drilled in the last day, and those whose drill is overdue: what the report lists."""
        return [
            i
            for i in self.instances
            if i.drill is not None
            and (
                i.drill.state == "overdue"
                or (i.drill.at is not None and self.time - i.drill.at <= DRILL_PERIOD)
            )
        ]

    @property
    def needs_attention(self) -> bool:
        return bool(
            self.violations
            or self.stale
            or self.failed_regions
            or self.late_copies
            or any(instance.drill_problem for instance in self.instances)
            or any(region.count("invalid") for region in self.regions)
        )


def _listing_order(instance: InstanceStatus) -> tuple[int, float, str, str]:
    age = instance.age.total_seconds() if instance.age is not None else float("inf")
    return (STATUS_ORDER[instance.status], -age, instance.region, instance.instance_id)


def assess_region(
    region: str,
    instances: Iterable[Instance],
    images: Iterable[Image],
    catalog: PolicyCatalog,
    keys: TagKeys,
    *,
    now: datetime,
    tick: timedelta,
    pending_timeout: timedelta,
    copy_allowance: timedelta = timedelta(0),
) -> RegionReport:
    """Pure: the status of each opted-in instance and the stale pending AMIs of one region."""
    newest: dict[str, Image] = {}
    copied: dict[tuple[str, str], Image] = {}  # (instance, destination) -> newest backup copied there
    backups: dict[str, list[Image]] = {}  # instance -> its backups in any state (not copies)
    stale: list[StalePending] = []
    for image in images:
        if image.state == "pending" and now - image.created > pending_timeout:
            stale.append(
                StalePending(
                    region=region,
                    image_id=image.image_id,
                    image_name=image.name,
                    instance_id=image.instance_id,
                    instance_name=image.tags.get("Name"),
                    created=image.created,
                    age=now - image.created,
                )
            )
        instance_id = image.instance_id
        if instance_id is not None and image.copy_of is None:
            backups.setdefault(instance_id, []).append(image)
        if image.state != "available" or instance_id is None or image.copy_of is not None:
            continue
        _keep_newest(newest, instance_id, image)
        for destination in image.copies:
            _keep_newest(copied, (instance_id, destination), image)
    statuses: list[InstanceStatus] = []
    for instance in instances:
        status = assess_instance(region, instance, newest.get(instance.instance_id), catalog, keys, now, tick)
        if status is not None:
            copies = assess_copies(status, instance, copied, catalog, keys, now, tick + copy_allowance)
            drilled = last_drilled(backups.get(instance.instance_id, ()))
            drill = assess_drill(status, instance, drilled, catalog, keys, now)
            statuses.append(replace(status, copies=copies, drill=drill))
    return RegionReport(region=region, instances=tuple(statuses), stale=tuple(stale))


def _keep_newest(newest: dict[Any, Image], key: Any, image: Image) -> None:
    known = newest.get(key)
    if known is None or (image.backup_time, image.image_id) > (known.backup_time, known.image_id):
        newest[key] = image


def assess_copies(
    status: InstanceStatus,
    instance: Instance,
    copied: dict[tuple[str, str], Image],
    catalog: PolicyCatalog,
    keys: TagKeys,
    now: datetime,
    slack: timedelta,
) -> tuple[CopyStatus, ...]:
    """The newest copy in each destination of the instance's policy, late or missing or ok."""
    if status.status == "invalid":
        return ()
    policy = resolve_policy(instance.tags, keys, catalog)
    if policy is None:
        return ()
    allowed = policy.schedule.max_interval() + slack
    # An instance younger than the bound cannot have missed a copy yet.
    young = instance.launch_time is not None and now - instance.launch_time <= allowed
    found = []
    for destination in policy.copies:
        source = copied.get((instance.instance_id, destination.key))
        if source is None:
            state: CopyState = "ok" if young else "missing"
            found.append(CopyStatus(destination.key, state, allowed_age=allowed))
            continue
        age = now - source.backup_time
        state = "ok" if age <= allowed else "late"
        found.append(
            CopyStatus(
                destination.key, state, source.copies[destination.key], source.backup_time, age, allowed
            )
        )
    return tuple(found)


def assess_drill(
    status: InstanceStatus,
    instance: Instance,
    last: tuple[DrillRecord, Image] | None,
    catalog: PolicyCatalog,
    keys: TagKeys,
    now: datetime,
) -> DrillStatus | None:
    """The instance's drill for its latest verify slot; None when its policy asks for none."""
    if status.status == "invalid":
        return None
    policy = resolve_policy(instance.tags, keys, catalog)
    if policy is None or policy.verify is None:
        return None
    slot = policy.verify.slot_at(now)
    if last is not None and last[0].at >= slot:
        record, image = last
        return DrillStatus(policy.verify.expression, record.outcome, image.image_id, record.at, record.detail)
    state: DrillState = "overdue" if now - slot > VERIFY_WINDOW else "waiting"
    image_id, at = (last[1].image_id, last[0].at) if last is not None else (None, None)
    return DrillStatus(
        policy.verify.expression, state, image_id, at, f"no drill since the {format_slot(slot)} slot"
    )


def assess_instance(
    region: str,
    instance: Instance,
    newest: Image | None,
    catalog: PolicyCatalog,
    keys: TagKeys,
    now: datetime,
    tick: timedelta,
) -> InstanceStatus | None:
    """The RPO status of one instance; None when its opt-in tag says no."""
    backup_time = newest.backup_time if newest is not None else None
    age = now - backup_time if backup_time is not None else None
    found = InstanceStatus(
        region,
        instance.instance_id,
        instance.name,
        "ok",
        image_id=newest.image_id if newest is not None else None,
        backup_time=backup_time,
        age=age,
    )
    try:
        policy = resolve_policy(instance.tags, keys, catalog)
    except InvalidTag as invalid:
        return replace(found, status="invalid", reason=str(invalid))
    if policy is None:
        return None
    allowed = policy.schedule.max_interval() + tick
    found = replace(found, policy=policy.name, schedule=policy.schedule.expression, allowed_age=allowed)
    if age is not None and age <= allowed:
        return found
    if instance.launch_time is not None and now - instance.launch_time <= allowed:
        return replace(found, status="new", reason="launched recently; its first backup is not due yet")
    reason = (
        "no available backup"
        if age is None
        else f"newest available backup is {format_age(age)} old, more than the {format_age(allowed)} allowed"
    )
    return replace(found, status="violation", reason=reason)


@dataclass(frozen=True)
class ReportDeps:
    ec2: Callable[[str], Ec2Gateway]
    notifier: Notifier
    ledger: NoticeLedger


@dataclass(frozen=True)
class ReportRun:
    now: datetime
    regions: Sequence[str]
    catalog: PolicyCatalog
    stack: Stack
    tick: timedelta
    pending_timeout: timedelta
    copy_allowance: timedelta = timedelta(0)


def report_run(settings: Settings, catalog: PolicyCatalog, now: datetime) -> ReportRun:
    """One run at ``now`` with the policies in force and the stack's tick and pending bound."""
    return ReportRun(
        now=now,
        regions=settings.regions,
        catalog=catalog,
        stack=settings.stack,
        tick=timedelta(minutes=settings.planner_rate_minutes),
        pending_timeout=timedelta(hours=settings.pending_timeout_hours),
        copy_allowance=timedelta(hours=settings.copy_allowance_hours),
    )


def run_report(run: ReportRun, deps: ReportDeps) -> DailyReport:
    """Read every region (a failing one is reported, never stops the others), then publish."""
    report = DailyReport(
        time=run.now,
        regions=tuple(_region(region, run, deps) for region in run.regions),
        tick=run.tick,
        pending_timeout=run.pending_timeout,
        copy_allowance=run.copy_allowance,
    )
    # EventBridge Scheduler delivers at least once: a tick delivered twice reports once.
    if deps.ledger.first_time(f"report.daily#{format_slot(run.now)}", run.now, REPORT_MEMORY):
        for note in report_notifications(report):
            deps.notifier.publish(note)
    return report


def _region(region: str, run: ReportRun, deps: ReportDeps) -> RegionReport:
    try:
        ec2 = deps.ec2(region)
        instances = list(ec2.opted_in_instances(run.stack.tag_keys.opt_in))
        images = list(ec2.managed_images(run.stack.name))
    except (ClientError, BotoCoreError) as error:
        return RegionReport(region=region, error=f"{type(error).__name__}: {error}")
    return assess_region(
        region,
        instances,
        images,
        run.catalog,
        run.stack.tag_keys,
        now=run.now,
        tick=run.tick,
        pending_timeout=run.pending_timeout,
        copy_allowance=run.copy_allowance,
    )


def report_notifications(report: DailyReport) -> list[Notification]:
    notes = [fit_to_sns(lambda limit: daily_report(report, limit), len(report.instances) + len(report.stale))]
    if report.violations:
        notes.append(fit_to_sns(lambda limit: rpo_violation(report, limit), len(report.violations)))
    return notes


def daily_report(report: DailyReport, limit: int | None = None) -> Notification:
    """``report.daily``; ``limit`` caps the listed instances and stale AMIs together (problems first)."""
    instances = report.instances
    stale = report.stale
    listed, listed_stale = _listing(instances, stale, len(instances) + len(stale) if limit is None else limit)
    where = _where(report)
    counts = {status: sum(1 for i in instances if i.status == status) for status in STATUS_ORDER}
    if report.needs_attention:
        problems = [f"{counts['violation']} RPO violation(s)"]
        if stale:
            problems.append(f"{len(stale)} stale AMI(s)")
        if counts["invalid"]:
            problems.append(f"{counts['invalid']} invalid")
        if report.late_copies:
            problems.append(f"{len(report.late_copies)} late copies")
        bad_drills = len(report.drills("failed")) + len(report.drills("overdue"))
        if bad_drills:
            problems.append(f"{bad_drills} failed or overdue restore drill(s)")
        if report.failed_regions:
            problems.append(f"{len(report.failed_regions)} region(s) unreadable")
        subject = f"amikeeper daily report: {', '.join(problems)} in {where}"
    else:
        subject = f"amikeeper daily report: all {len(instances)} instance(s) within RPO in {where}"
    return Notification(
        event="report.daily",
        severity="warning" if report.needs_attention else "info",
        subject=subject,
        summary=_daily_summary(report, counts, listed, listed_stale),
        table=_instance_table(listed) if listed else (),
        payload={
            "time": format_slot(report.time),
            "planner_tick_seconds": _seconds(report.tick),
            "pending_timeout_hours": int(report.pending_timeout.total_seconds() // 3600),
            "regions": [region.document() for region in report.regions],
            "instances_total": len(instances),
            "instances_listed": len(listed),
            "instances": [instance.document() for instance in listed],
            "stale_pending_total": len(stale),
            "stale_pending_listed": len(listed_stale),
            "stale_pending": [image.document() for image in listed_stale],
            "copy_allowance_hours": int(report.copy_allowance.total_seconds() // 3600),
            "late_copies_total": len(report.late_copies),
            "drills_verified_total": len(report.drills("verified")),
            "drills_failed_total": len(report.drills("failed")),
            "drills_overdue_total": len(report.drills("overdue")),
        },
    )


def _listing(
    instances: Sequence[InstanceStatus], stale: Sequence[StalePending], limit: int
) -> tuple[list[InstanceStatus], list[StalePending]]:
    """Room goes to instances with a problem, then to stale AMIs, then to healthy instances."""
    problems = [instance for instance in instances if instance.status != "ok"]
    healthy = [instance for instance in instances if instance.status == "ok"]
    listed = problems[:limit]
    listed_stale = list(stale[: limit - len(listed)])
    listed += healthy[: limit - len(listed) - len(listed_stale)]
    return listed, listed_stale


def _daily_summary(
    report: DailyReport,
    counts: dict[Status, int],
    listed: Sequence[InstanceStatus],
    listed_stale: Sequence[StalePending],
) -> str:
    total = len(report.instances)
    lines = [
        f"Daily report at {format_slot(report.time)}: {total} opted-in instance(s) in "
        f"{len(report.regions)} region(s). {counts['ok']} within RPO, {counts['violation']} RPO violation(s), "
        f"{counts['new']} new (first backup not due yet), {counts['invalid']} with invalid tags; "
        f"{len(report.stale)} AMI(s) pending for more than {_hours(report.pending_timeout)}."
    ]
    for region in report.failed_regions:
        lines.append(f"Region {region.region} could not be read: {region.error}")
    if listed_stale:
        lines += ["", "Stale pending AMIs:"]
        lines += render_table(
            [["region", "AMI", "instance", "created", "pending for"]]
            + [
                [s.region, s.image_id, s.instance_id or "-", format_slot(s.created), format_age(s.age)]
                for s in listed_stale
            ]
        )
    late = [(instance, copy) for instance in listed for copy in instance.late_copies]
    if late:
        lines += ["", "Late or missing disaster-recovery copies:"]
        lines += render_table(
            [
                [
                    "region",
                    "instance",
                    "destination",
                    "newest copy",
                    "of backup taken",
                    "age",
                    "allowed",
                    "state",
                ]
            ]
            + [
                [
                    i.region,
                    i.instance_id,
                    c.destination,
                    c.image_id or "none",
                    format_slot(c.backup_time) if c.backup_time else "-",
                    format_age(c.age) if c.age is not None else "-",
                    format_age(c.allowed_age) if c.allowed_age is not None else "-",
                    c.state,
                ]
                for i, c in late
            ]
        )
    drills = [i for i in report.recent_drills if i in listed]
    if drills:
        lines += ["", "Restore drills (the last day's, and those overdue):"]
        lines += render_table(
            [["region", "instance", "verify", "backup", "drilled", "outcome", "detail"]]
            + [
                [
                    i.region,
                    i.instance_id,
                    d.verify,
                    d.image_id or "-",
                    format_slot(d.at) if d.at else "-",
                    d.state,
                    _short(d.detail or "-"),
                ]
                for i in drills
                if (d := i.drill) is not None
            ]
        )
    left_out = (total - len(listed)) + (len(report.stale) - len(listed_stale))
    if left_out:
        lines += ["", f"{left_out} more not listed: SNS limits a message to 256 KiB."]
    return "\n".join(lines)


def rpo_violation(report: DailyReport, limit: int | None = None) -> Notification:
    violations = report.violations
    listed = violations[:limit] if limit is not None else violations
    tick = format_age(report.tick)
    summary = (
        f"{len(violations)} opted-in instance(s) have no available backup as recent as their schedule "
        f"promises (its longest interval plus one planner tick of {tick}), as of {format_slot(report.time)}."
    )
    if len(listed) < len(violations):
        summary += f" {len(violations) - len(listed)} more not listed: SNS limits a message to 256 KiB."
    return Notification(
        event="rpo.violation",
        severity="error",
        subject=f"amikeeper: {len(violations)} instance(s) missed their RPO in {_where(report)}",
        summary=summary,
        table=_instance_table(listed) if listed else (),
        payload={
            "time": format_slot(report.time),
            "planner_tick_seconds": _seconds(report.tick),
            "violations_total": len(violations),
            "violations_listed": len(listed),
            "violations": [instance.document() for instance in listed],
        },
    )


def _instance_table(instances: Sequence[InstanceStatus]) -> list[list[str]]:
    rows = [["region", "instance", "name", "schedule", "newest backup", "taken", "age", "allowed", "status"]]
    for i in instances:
        rows.append(
            [
                i.region,
                i.instance_id,
                _short(i.name or "-"),
                i.schedule or "-",
                i.image_id or "none",
                format_slot(i.backup_time) if i.backup_time else "-",
                format_age(i.age) if i.age is not None else "-",
                format_age(i.allowed_age) if i.allowed_age is not None else "-",
                i.status,
            ]
        )
    return rows


def _where(report: DailyReport) -> str:
    return ", ".join(region.region for region in report.regions)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= NAME_WIDTH else flat[: NAME_WIDTH - 3] + "..."


def _seconds(span: timedelta | None) -> int | None:
    return None if span is None else int(span.total_seconds())


def _hours(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 3600)}h"


def format_age(span: timedelta) -> str:
    """``2d 03h``, ``5h 07m``, ``42m``; a negative span (a clock ahead of EC2's) reads ``0m``."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"
