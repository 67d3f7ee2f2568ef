"""The retention run (SPEC §4, §6): one pass per region, planned in full before anything is deleted.

A pass reads the region once (this stack's AMIs, every instance, this stack's snapshots, what uses
the AMIs it would delete), turns that into a :class:`RegionPlan` with a pure function, and only then
executes the plan. A dry run stops after planning, so it reports exactly what a real run would do.

Guards, whatever a retention expression says:

- only AMIs tagged ``amikeeper:managed-by`` = this stack are ever listed (a server-side filter), and
  only snapshots with that tag are deleted;
- ``<OptInTagKey>:Hold`` = true (trimmed, any case; yes and on too) keeps an AMI; pending AMIs are
  never touched; failed ones are removed;
- an AMI used by an instance (not terminated), the ``$Default`` or ``$Latest`` version of a launch
  template or a launch configuration is kept and reported as kept-in-use;
- the newest available backup of an instance is kept, until ``OrphanGraceDays`` after retention first
  noticed the instance gone (recorded on that AMI as ``amikeeper:instance-gone-since``).

A run that gets short of time stops deleting and hands the same tick to a fresh invocation, which
plans again from what is left: nothing is done twice and nothing is skipped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper import clients
from amikeeper.gateways.autoscaling import AutoScalingGateway
from amikeeper.gateways.ec2 import Ec2Gateway, Image
from amikeeper.gateways.ec2_retention import (
    IMAGE_NOT_FOUND,
    Ec2RetentionGateway,
    ImageReferencesUnavailable,
    InstanceRecord,
    Snapshot,
    SnapshotDeletion,
)
from amikeeper.gateways.sns import Notifier
from amikeeper.naming import InvalidSlotError, format_slot, parse_slot
from amikeeper.notifications import Notification
from amikeeper.pacing import TokenBucket
from amikeeper.policies import DEFAULT_POLICY, TRUE_WORDS, InvalidTag, Policy, PolicyCatalog, resolve_policy
from amikeeper.retention_rules import Backup, BackupState, select
from amikeeper.tagkeys import TagKeys
from amikeeper.work import POLICY

if TYPE_CHECKING:
    from amikeeper.config import Settings
    from amikeeper.runtime import Runtime

GONE_SINCE = "amikeeper:instance-gone-since"
# A snapshot is swept as an orphan only once it is this old: one whose AMI is still being registered
# is never mistaken for debris, and someone who deregistered an AMI by hand has a day to reuse it.
ORPHAN_SNAPSHOT_GRACE = timedelta(days=1)
# Below this much remaining time no new deletion starts: one DeregisterImage with adaptive retries can
# take tens of seconds, and the summary still has to go out.
SAFETY_MARGIN_MS = 60_000
SNS_MESSAGE_LIMIT = 250_000  # SNS takes 262,144 bytes including attributes; keep a margin

Outcome = Literal["kept", "held", "kept-in-use", "pending", "skipped", "expired", "failed"]
DELETING: frozenset[Outcome] = frozenset({"expired", "failed"})
_SELECTABLE: frozenset[str] = frozenset({"pending", "available", "failed"})


# --- configuration and facts ------------------------------------------------------------------------
@dataclass(frozen=True)
class RetentionConfig:
    stack_name: str
    tag_keys: TagKeys
    terminated_grace: timedelta
    orphan_snapshot_grace: timedelta = ORPHAN_SNAPSHOT_GRACE
    safety_margin_ms: int = SAFETY_MARGIN_MS

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionConfig:
        return cls(
            stack_name=settings.stack_name,
            tag_keys=settings.tag_keys,
            terminated_grace=timedelta(days=settings.orphan_grace_days),
        )


@dataclass(frozen=True)
class RegionFacts:
    """Everything the planner needs to know about one region, as read from EC2 and Auto Scaling."""

    images: tuple[Image, ...]
    instances: Mapping[str, InstanceRecord]  # every instance EC2 still lists, by id
    in_use: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # image id -> what uses it
    snapshots: tuple[Snapshot, ...] = ()  # this stack's snapshots
    existing_image_ids: frozenset[str] = frozenset()  # AMIs that exist, among those orphans name


# --- the plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What retention does with one AMI, and why."""

    image_id: str
    instance_id: str | None
    backup_time: datetime
    state: str
    outcome: Outcome
    reasons: tuple[str, ...]
    snapshot_ids: tuple[str, ...] = ()
    used_by: tuple[str, ...] = ()

    @property
    def delete(self) -> bool:
        return self.outcome in DELETING


InstanceStatus = Literal["live", "not opted in", "gone", "unknown"]


@dataclass(frozen=True)
class InstanceRetention:
    """How one instance's backups were judged: its status, the policy applied, any note for people."""

    instance_id: str | None
    status: InstanceStatus
    policy: str | None
    expression: str | None
    newest_protected: bool
    gone_since: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class GoneSinceTag:
    """The first time retention noticed an instance gone, to be written on its newest backup."""

    image_id: str
    instance_id: str
    since: datetime


@dataclass(frozen=True)
class RegionPlan:
    region: str
    verdicts: tuple[Verdict, ...]
    instances: tuple[InstanceRetention, ...] = ()
    gone_since_tags: tuple[GoneSinceTag, ...] = ()
    orphans: tuple[Snapshot, ...] = ()

    def with_outcome(self, *outcomes: Outcome) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.outcome in outcomes]

    @property
    def deletions(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.delete]

    @property
    def notes(self) -> list[str]:
        return [f"{entry.instance_id}: {entry.note}" for entry in self.instances if entry.note]


def plan_region(
    region: str, facts: RegionFacts, catalog: PolicyCatalog, config: RetentionConfig, now: datetime
) -> RegionPlan:
    """Pure: keep or delete for every AMI of this stack in the region, plus the orphan snapshots."""
    groups: defaultdict[str | None, list[Image]] = defaultdict(list)
    for image in facts.images:
        groups[image.instance_id].append(image)
    verdicts: list[Verdict] = []
    instances: list[InstanceRetention] = []
    tags: list[GoneSinceTag] = []
    for instance_id in sorted(groups, key=lambda key: key or ""):
        group = _plan_group(instance_id, groups[instance_id], facts, catalog, config, now)
        verdicts.extend(group.verdicts)
        instances.append(group.instance)
        if group.gone_since_tag is not None:
            tags.append(group.gone_since_tag)
    return RegionPlan(
        region=region,
        verdicts=tuple(verdicts),
        instances=tuple(instances),
        gone_since_tags=tuple(tags),
        orphans=tuple(_orphans(facts, now, config.orphan_snapshot_grace)),
    )


def orphan_suspects(
    snapshots: Iterable[Snapshot], images: Iterable[Image], now: datetime, grace: timedelta
) -> list[Snapshot]:
    """Pure: this stack's snapshots older than the grace whose AMI is not among this stack's AMIs.

    A suspect is an orphan only once EC2 confirms that its AMI no longer exists under any tag
    (:meth:`Ec2RetentionGateway.existing_image_ids`). A snapshot whose description names no AMI is
    never a suspect: nothing proves it is debris.
    """
    listed = list(images)
    image_ids = {image.image_id for image in listed}
    referenced = {snapshot_id for image in listed for snapshot_id in image.snapshot_ids}
    return [
        snapshot
        for snapshot in snapshots
        if snapshot.image_id is not None
        and snapshot.image_id not in image_ids
        and snapshot.snapshot_id not in referenced
        and snapshot.started <= now - grace
    ]


def _orphans(facts: RegionFacts, now: datetime, grace: timedelta) -> list[Snapshot]:
    return [
        snapshot
        for snapshot in orphan_suspects(facts.snapshots, facts.images, now, grace)
        if snapshot.image_id not in facts.existing_image_ids
    ]


@dataclass(frozen=True)
class _GroupPlan:
    verdicts: list[Verdict]
    instance: InstanceRetention
    gone_since_tag: GoneSinceTag | None = None


@dataclass(frozen=True)
class _PolicyChoice:
    policy: Policy | None  # None: the group is skipped, only failed AMIs are cleaned up
    status: InstanceStatus
    note: str | None = None


def _plan_group(
    instance_id: str | None,
    images: list[Image],
    facts: RegionFacts,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    now: datetime,
) -> _GroupPlan:
    choice = _choose_policy(instance_id, images, facts.instances, catalog, config.tag_keys)
    newest = _newest_available(images)
    gone_since: datetime | None = None
    tag: GoneSinceTag | None = None
    protect_newest = True
    if choice.status == "gone" and instance_id is not None:
        gone_since = _recorded_gone_since(images)
        if gone_since is None:
            gone_since = now
            if newest is not None:
                tag = GoneSinceTag(newest.image_id, instance_id, now)
        protect_newest = now < gone_since + config.terminated_grace
    note = choice.note
    if gone_since is not None:
        until = gone_since + config.terminated_grace
        gone = (
            f"gone since {format_slot(gone_since)}; newest backup kept until {format_slot(until)}"
            if protect_newest
            else f"gone since {format_slot(gone_since)}; grace over, its backups age out under the retention rules"
        )
        note = f"{gone}; {note}" if note else gone
    instance = InstanceRetention(
        instance_id=instance_id,
        status=choice.status,
        policy=choice.policy.name if choice.policy else None,
        expression=str(choice.policy.retention) if choice.policy else None,
        newest_protected=protect_newest and newest is not None,
        gone_since=gone_since,
        note=note,
    )
    if choice.policy is None:
        return _GroupPlan(
            [_skipped(image, choice.note or "skipped", facts) for image in images], instance, tag
        )
    # Past the grace, no backup will ever come again: the rules count back from now, so they age out.
    ages_out_from = now if gone_since is not None and not protect_newest else None
    verdicts = _judge(images, choice.policy, catalog, config, facts, protect_newest, ages_out_from)
    return _GroupPlan(verdicts, instance, tag)


def _choose_policy(
    instance_id: str | None,
    images: list[Image],
    instances: Mapping[str, InstanceRecord],
    catalog: PolicyCatalog,
    keys: TagKeys,
) -> _PolicyChoice:
    if instance_id is None:
        return _PolicyChoice(None, "unknown", "AMIs without an amikeeper:instance-id tag are left alone")
    instance = instances.get(instance_id)
    if instance is None or instance.gone:
        return _recorded_policy(images, catalog, "gone")
    try:
        policy = resolve_policy(instance.tags, keys, catalog)
    except InvalidTag as invalid:
        return _PolicyChoice(
            None,
            "live",
            f"left alone: tag {invalid.tag}={invalid.value!r} is invalid ({invalid.reason})",
        )
    if policy is None:
        return _recorded_policy(images, catalog, "not opted in")
    return _PolicyChoice(policy, "live")


def _recorded_policy(images: list[Image], catalog: PolicyCatalog, status: InstanceStatus) -> _PolicyChoice:
    """The policy recorded on the newest backup: all there is to go by once the instance's tags are not."""
    newest = max(images, key=lambda image: (image.backup_time, image.image_id))
    recorded = (newest.tags.get(POLICY) or "").strip().lower()
    notes = (
        ["no longer opted in; its backups follow the policy recorded on them"]
        if status == "not opted in"
        else []
    )
    policy: Policy | None = catalog.default
    if not recorded:
        notes.append(f"no policy recorded on {newest.image_id}; the default policy applies")
    elif recorded in catalog.named:
        policy = catalog.named[recorded]
    elif recorded != DEFAULT_POLICY and catalog.document_error is not None:
        policy = None
        notes.append(
            f"left alone: its recorded policy {recorded!r} cannot be read "
            f"(named policies unavailable: {catalog.document_error})"
        )
    elif recorded != DEFAULT_POLICY:
        notes.append(f"recorded policy {recorded!r} no longer exists; the default policy applies")
    return _PolicyChoice(policy, status, "; ".join(notes) or None)


def _judge(
    images: list[Image],
    policy: Policy,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    facts: RegionFacts,
    protect_newest: bool,
    ages_out_from: datetime | None = None,
) -> list[Verdict]:
    selectable = [image for image in images if image.state in _SELECTABLE]
    backups = [
        Backup(
            image_id=image.image_id,
            created=image.backup_time,
            state=_backup_state(image.state),
            held=_held(image, config.tag_keys),
            # A failed AMI can launch nothing, whatever still names it: it is removed all the same.
            in_use=image.state != "failed" and image.image_id in facts.in_use,
        )
        for image in selectable
    ]
    decisions = {
        decision.image_id: decision
        for decision in select(
            backups, policy.retention, catalog.time_zone, protect_newest=protect_newest, as_of=ages_out_from
        )
    }
    verdicts = []
    for image in images:
        decision = decisions.get(image.image_id)
        if decision is None:
            verdicts.append(_verdict(image, "pending", (f"state {image.state}",), facts))
            continue
        verdicts.append(
            _verdict(image, _outcome(decision.keep, decision.reasons, image), decision.reasons, facts)
        )
    return verdicts


def _backup_state(state: str) -> BackupState:
    if state == "available":
        return "available"
    if state == "failed":
        return "failed"
    return "pending"


def _outcome(keep: bool, reasons: tuple[str, ...], image: Image) -> Outcome:
    if not keep:
        return "failed" if image.state == "failed" else "expired"
    if "held" in reasons:
        return "held"
    if reasons == ("in use",):
        return "kept-in-use"
    if "pending" in reasons and all(reason in ("pending", "in use") for reason in reasons):
        return "pending"
    return "kept"


def _skipped(image: Image, reason: str, facts: RegionFacts) -> Verdict:
    if image.state == "failed":
        return _verdict(image, "failed", ("failed",), facts)
    return _verdict(image, "skipped", (reason,), facts)


def _verdict(image: Image, outcome: Outcome, reasons: tuple[str, ...], facts: RegionFacts) -> Verdict:
    return Verdict(
        image_id=image.image_id,
        instance_id=image.instance_id,
        backup_time=image.backup_time,
        state=image.state,
        outcome=outcome,
        reasons=reasons,
        snapshot_ids=image.snapshot_ids,
        used_by=facts.in_use.get(image.image_id, ()),
    )


def _held(image: Image, keys: TagKeys) -> bool:
    value = image.tags.get(keys.hold)
    return value is not None and value.strip().lower() in TRUE_WORDS


def _newest_available(images: list[Image]) -> Image | None:
    available = [image for image in images if image.state == "available"]
    return max(available, key=lambda image: (image.backup_time, image.image_id)) if available else None


def _recorded_gone_since(images: list[Image]) -> datetime | None:
    recorded = []
    for image in images:
        text = image.tags.get(GONE_SINCE)
        if text is None:
            continue
        try:
            recorded.append(parse_slot(text.strip()))
        except InvalidSlotError:
            continue  # a mangled tag must not end the grace early; the next run writes a fresh one
    return min(recorded) if recorded else None


# --- reading a region -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionGateways:
    images: Ec2Gateway
    ec2: Ec2RetentionGateway
    autoscaling: AutoScalingGateway


@dataclass(frozen=True)
class InUse:
    by: Mapping[str, tuple[str, ...]]
    method: Literal["DescribeImageReferences", "scan", "not needed"]


def find_in_use(
    candidates: Sequence[str], instances: Iterable[InstanceRecord], gateways: RegionGateways
) -> InUse:
    """What uses each candidate AMI: instances, $Default/$Latest launch template versions, launch configs.

    Instances come from the region's instance listing, which retention reads anyway. Launch templates
    come from DescribeImageReferences when it is available (then only the templates it names are
    opened, to tell $Default and $Latest from older versions), else from a scan of every template.
    Launch configurations are always scanned: no other API reports them.
    """
    if not candidates:
        return InUse({}, "not needed")
    wanted = set(candidates)
    users: defaultdict[str, set[str]] = defaultdict(set)
    for instance in instances:
        if not instance.gone and instance.image_id in wanted:
            users[instance.image_id].add(f"instance {instance.instance_id} ({instance.state})")
    method: Literal["DescribeImageReferences", "scan"]
    try:
        references = gateways.ec2.image_references(sorted(wanted))
    except ImageReferencesUnavailable:
        method = "scan"
        templates = gateways.ec2.launch_template_images()
    else:
        method = "DescribeImageReferences"
        template_ids: set[str] = set()
        for reference in references:
            if reference.resource_type == "ec2:LaunchTemplate":
                if reference.template_id is None:
                    users[reference.image_id].add(f"launch template {reference.arn}")
                else:
                    template_ids.add(reference.template_id)
            elif reference.resource_type == "ec2:Instance":
                users[reference.image_id].add(f"instance {reference.instance_id or reference.arn}")
        templates = gateways.ec2.launch_template_images(template_ids) if template_ids else {}
    for image_id, labels in templates.items():
        if image_id in wanted:
            users[image_id].update(labels)
    for image_id, names in gateways.autoscaling.launch_configuration_images().items():
        if image_id in wanted:
            users[image_id].update(f"launch configuration {name}" for name in names)
    return InUse({image_id: tuple(sorted(labels)) for image_id, labels in users.items()}, method)


@dataclass(frozen=True)
class Reading:
    facts: RegionFacts
    plan: RegionPlan
    reference_check: str


def read_and_plan(
    region: str,
    gateways: RegionGateways,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    now: datetime,
) -> Reading:
    """Read the region and plan it. The in-use check only covers AMIs the rules would otherwise delete:
    being in use can only add a reason to keep, never change what the rules keep."""
    images = tuple(gateways.images.managed_images(config.stack_name))
    instances = {record.instance_id: record for record in gateways.ec2.instances()}
    draft = plan_region(region, RegionFacts(images, instances), catalog, config, now)
    candidates = [verdict.image_id for verdict in draft.with_outcome("expired")]
    in_use = find_in_use(candidates, instances.values(), gateways)
    snapshots = tuple(gateways.ec2.managed_snapshots(config.stack_name))
    suspects = orphan_suspects(snapshots, images, now, config.orphan_snapshot_grace)
    existing = gateways.ec2.existing_image_ids(
        {snapshot.image_id for snapshot in suspects if snapshot.image_id is not None}
    )
    facts = RegionFacts(images, instances, in_use.by, snapshots, existing)
    return Reading(facts, plan_region(region, facts, catalog, config, now), in_use.method)


# --- executing a plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemError:
    resource_id: str
    action: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource_id}: {self.action}: {self.message}"


@dataclass
class RegionOutcome:
    region: str
    plan: RegionPlan | None = None
    reference_check: str = ""
    error: str | None = None
    deleted: list[str] = field(default_factory=list)
    failed_cleaned: list[str] = field(default_factory=list)
    snapshots_deleted: list[str] = field(default_factory=list)
    snapshots_shared: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    tagged_gone: list[str] = field(default_factory=list)
    gone_already: list[str] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    out_of_time: bool = False

    @property
    def progressed(self) -> bool:
        return bool(self.deleted or self.failed_cleaned or self.orphans_deleted or self.snapshots_deleted)

    @property
    def error_count(self) -> int:
        return len(self.errors) + (1 if self.error else 0)

    def count(self, *outcomes: Outcome) -> int:
        return len(self.plan.with_outcome(*outcomes)) if self.plan else 0


@dataclass(frozen=True)
class Budget:
    remaining_ms: Callable[[], int]
    margin_ms: int

    def exhausted(self) -> bool:
        return self.remaining_ms() < self.margin_ms


def execute_plan(
    plan: RegionPlan, facts: RegionFacts, gateway: Ec2RetentionGateway, budget: Budget, outcome: RegionOutcome
) -> None:
    """Carry out a plan: gone-since tags, then failed AMIs, expired AMIs, orphan snapshots.

    One failure is recorded and the rest proceed; when the budget runs short, what is left is listed
    as deferred and the run is marked out of time.
    """
    managed_snapshots = frozenset(snapshot.snapshot_id for snapshot in facts.snapshots)
    for tag in plan.gone_since_tags:
        try:
            gateway.tag_image(tag.image_id, GONE_SINCE, format_slot(tag.since))
            outcome.tagged_gone.append(tag.image_id)
        except (ClientError, BotoCoreError) as error:
            outcome.errors.append(ItemError(tag.image_id, "CreateTags", str(error)))
    work: list[Verdict | Snapshot] = [*plan.with_outcome("failed"), *plan.with_outcome("expired")]
    work.extend(plan.orphans)
    for index, item in enumerate(work):
        if budget.exhausted():
            outcome.out_of_time = True
            outcome.deferred.extend(_work_id(rest) for rest in work[index:])
            return
        if isinstance(item, Verdict):
            _delete_image(item, gateway, managed_snapshots, outcome)
        else:
            _delete_orphan(item, gateway, outcome)


def _work_id(item: Verdict | Snapshot) -> str:
    return item.image_id if isinstance(item, Verdict) else item.snapshot_id


def _delete_image(
    verdict: Verdict, gateway: Ec2RetentionGateway, managed_snapshots: frozenset[str], outcome: RegionOutcome
) -> None:
    try:
        result = gateway.deregister(verdict.image_id, verdict.snapshot_ids, managed_snapshots)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in IMAGE_NOT_FOUND:
            # Deregistered meanwhile (by hand, or by an earlier run whose answer was lost); its
            # snapshots, if any are left, are swept as orphans.
            outcome.gone_already.append(verdict.image_id)
            return
        outcome.errors.append(ItemError(verdict.image_id, "DeregisterImage", str(error)))
        return
    except BotoCoreError as error:
        outcome.errors.append(ItemError(verdict.image_id, "DeregisterImage", str(error)))
        return
    (outcome.failed_cleaned if verdict.outcome == "failed" else outcome.deleted).append(verdict.image_id)
    for snapshot in result.snapshots:
        _record_snapshot(snapshot, outcome.snapshots_deleted, outcome)


def _delete_orphan(snapshot: Snapshot, gateway: Ec2RetentionGateway, outcome: RegionOutcome) -> None:
    try:
        result = gateway.delete_snapshot(snapshot.snapshot_id)
    except (ClientError, BotoCoreError) as error:
        outcome.errors.append(ItemError(snapshot.snapshot_id, "DeleteSnapshot", str(error)))
        return
    _record_snapshot(result, outcome.orphans_deleted, outcome)


def _record_snapshot(result: SnapshotDeletion, deleted: list[str], outcome: RegionOutcome) -> None:
    if result.status == "deleted":
        deleted.append(result.snapshot_id)
    elif result.status == "shared":
        outcome.snapshots_shared.append(result.snapshot_id)
    elif result.status == "failed":
        outcome.errors.append(ItemError(result.snapshot_id, "DeleteSnapshot", result.detail))


# --- the run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetentionDeps:
    gateways: Callable[[str], RegionGateways]
    notifier: Notifier


def retention_deps(
    runtime: Runtime,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RetentionDeps:
    """Gateways per region, each with its own delete pacing (EC2's buckets are per region)."""

    def gateways(region: str) -> RegionGateways:
        pacer = TokenBucket(clock=clock, sleep=sleep)
        return RegionGateways(
            images=runtime.ec2(region),
            ec2=Ec2RetentionGateway(clients.ec2(region), pacer),
            autoscaling=AutoScalingGateway(clients.autoscaling(region)),
        )

    return RetentionDeps(gateways=gateways, notifier=runtime.notifier)


@dataclass(frozen=True)
class RetentionResult:
    time: datetime
    dry_run: bool
    regions: tuple[RegionOutcome, ...]
    continued: bool = False
    continuation_error: str | None = None

    @property
    def out_of_time(self) -> bool:
        return any(region.out_of_time for region in self.regions)

    @property
    def error_count(self) -> int:
        return sum(region.error_count for region in self.regions) + (1 if self.continuation_error else 0)

    @property
    def planned_deletions(self) -> int:
        """AMIs the plans delete (expired and failed), whether or not this run got to them."""
        return sum(len(region.plan.deletions) for region in self.regions if region.plan)

    def metrics(self) -> dict[str, int]:
        """The retention metrics of the contract, for this invocation."""
        return {
            "AmisExamined": sum(len(r.plan.verdicts) for r in self.regions if r.plan),
            "AmisDeleted": sum(len(r.deleted) + len(r.failed_cleaned) for r in self.regions),
            "SnapshotsDeleted": sum(len(r.snapshots_deleted) for r in self.regions),
            "KeptInUse": sum(r.count("kept-in-use") for r in self.regions),
            "RetentionErrors": self.error_count,
            "OrphanSnapshotsDeleted": sum(len(r.orphans_deleted) for r in self.regions),
        }

    def response(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "continued": self.continued,
            "regions": [_region_counts(region, self.dry_run) for region in self.regions],
        }


def run_retention(
    now: datetime,
    regions: Sequence[str],
    catalog: PolicyCatalog,
    config: RetentionConfig,
    deps: RetentionDeps,
    *,
    dry_run: bool,
    remaining_ms: Callable[[], int],
    continue_later: Callable[[], None],
) -> RetentionResult:
    """One retention run over every region; a failing region is reported and never stops the others.

    When time runs short, the run stops deleting and calls ``continue_later`` (the handler re-invokes
    itself with the same tick), but only if it got something done: a run that cannot make progress
    must not hand itself over forever.
    """
    budget = Budget(remaining_ms, config.safety_margin_ms)
    outcomes: list[RegionOutcome] = []
    for region in regions:
        if budget.exhausted():
            outcomes.append(RegionOutcome(region, out_of_time=True, deferred=["the whole region"]))
            continue
        outcomes.append(_run_region(region, catalog, config, deps, now, dry_run=dry_run, budget=budget))
    continued, continuation_error = False, None
    if any(outcome.out_of_time for outcome in outcomes):
        if any(outcome.progressed for outcome in outcomes):
            try:
                continue_later()
                continued = True
            except (ClientError, BotoCoreError, RuntimeError) as error:
                continuation_error = f"could not hand over to a new invocation: {error}"
        elif dry_run:
            continuation_error = "ran out of time; the regions listed as deferred were not previewed"
        else:
            continuation_error = "ran out of time before deleting anything; the next scheduled run goes on"
    result = RetentionResult(now, dry_run, tuple(outcomes), continued, continuation_error)
    deps.notifier.publish(retention_summary(result))
    return result


def _run_region(
    region: str,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    deps: RetentionDeps,
    now: datetime,
    *,
    dry_run: bool,
    budget: Budget,
) -> RegionOutcome:
    try:
        gateways = deps.gateways(region)
        reading = read_and_plan(region, gateways, catalog, config, now)
    except (ClientError, BotoCoreError) as error:
        return RegionOutcome(region, error=f"{type(error).__name__}: {error}")
    outcome = RegionOutcome(region, plan=reading.plan, reference_check=reading.reference_check)
    if not dry_run:
        execute_plan(reading.plan, reading.facts, gateways.ec2, budget, outcome)
    return outcome


# --- the summary ------------------------------------------------------------------------------------
TABLE_HEADER = (
    "region",
    "examined",
    "kept",
    "deleted",
    "snapshots",
    "in use",
    "held",
    "pending",
    "failed cleaned",
    "orphans",
    "errors",
)


def _region_counts(region: RegionOutcome, dry_run: bool) -> dict[str, Any]:
    plan = region.plan
    planned_expired = region.count("expired")
    planned_failed = region.count("failed")
    return {
        "region": region.region,
        "error": region.error,
        "examined": len(plan.verdicts) if plan else 0,
        "kept": region.count("kept"),
        "kept_in_use": region.count("kept-in-use"),
        "held": region.count("held"),
        "pending": region.count("pending"),
        "skipped": region.count("skipped"),
        "deleted": planned_expired if dry_run else len(region.deleted),
        "failed_cleaned": planned_failed if dry_run else len(region.failed_cleaned),
        "snapshots_deleted": len(region.snapshots_deleted),
        "orphan_snapshots": len(plan.orphans) if dry_run and plan else len(region.orphans_deleted),
        "errors": region.error_count,
        "deferred": len(region.deferred),
    }


def _table_row(region: RegionOutcome, dry_run: bool) -> list[str]:
    counts = _region_counts(region, dry_run)
    if region.error:
        return [region.region, "-", "-", "-", "-", "-", "-", "-", "-", "-", str(counts["errors"])]
    return [
        region.region,
        str(counts["examined"]),
        str(counts["kept"]),
        str(counts["deleted"]),
        "-" if dry_run else str(counts["snapshots_deleted"]),
        str(counts["kept_in_use"]),
        str(counts["held"]),
        str(counts["pending"]),
        str(counts["failed_cleaned"]),
        str(counts["orphan_snapshots"]),
        str(counts["errors"]),
    ]


def _capped(items: Sequence[Any], cap: int | None) -> dict[str, Any]:
    shown = list(items) if cap is None else list(items[:cap])
    return {"items": shown, "omitted": len(items) - len(shown)}


def _region_payload(region: RegionOutcome, dry_run: bool, cap: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "counts": _region_counts(region, dry_run),
        "reference_check": region.reference_check,
    }
    plan = region.plan
    if plan is not None:
        payload["plan"] = {
            "delete": _capped(
                [
                    {
                        "image_id": v.image_id,
                        "instance_id": v.instance_id,
                        "backup_time": format_slot(v.backup_time),
                        "reason": v.outcome,
                    }
                    for v in plan.deletions
                ],
                cap,
            ),
            "kept_in_use": _capped(
                [
                    {"image_id": v.image_id, "used_by": list(v.used_by)}
                    for v in plan.with_outcome("kept-in-use")
                ],
                cap,
            ),
            "held": _capped([v.image_id for v in plan.with_outcome("held")], cap),
            "pending": _capped([v.image_id for v in plan.with_outcome("pending")], cap),
            "skipped": _capped(
                [{"image_id": v.image_id, "reason": v.reasons[0]} for v in plan.with_outcome("skipped")], cap
            ),
            "kept": _capped(
                [{"image_id": v.image_id, "reasons": list(v.reasons)} for v in plan.with_outcome("kept")], cap
            ),
            "orphan_snapshots": _capped(
                [{"snapshot_id": s.snapshot_id, "image_id": s.image_id} for s in plan.orphans], cap
            ),
            "notes": _capped(plan.notes, cap),
        }
    payload["done"] = {
        "deleted": _capped(region.deleted, cap),
        "failed_cleaned": _capped(region.failed_cleaned, cap),
        "snapshots_deleted": _capped(region.snapshots_deleted, cap),
        "snapshots_kept_shared": _capped(region.snapshots_shared, cap),
        "orphan_snapshots_deleted": _capped(region.orphans_deleted, cap),
        "instance_gone_tagged": _capped(region.tagged_gone, cap),
        "already_gone": _capped(region.gone_already, cap),
        "deferred": _capped(region.deferred, cap),
        "errors": _capped([str(error) for error in region.errors], cap),
    }
    return payload


def _summary_text(result: RetentionResult) -> str:
    metrics = result.metrics()
    when = format_slot(result.time)
    if result.dry_run:
        planned = result.planned_deletions
        lines = [
            f"Retention dry run for {when}: {planned} AMI(s) would be deleted; nothing was changed.",
        ]
    else:
        lines = [
            f"Retention run for {when}: {metrics['AmisDeleted']} AMI(s) and "
            f"{metrics['SnapshotsDeleted']} snapshot(s) deleted, "
            f"{metrics['OrphanSnapshotsDeleted']} orphan snapshot(s) swept, "
            f"{metrics['KeptInUse']} expired AMI(s) kept because they are in use.",
        ]
    if result.continued:
        lines.append("Time ran short: the rest continues in a new invocation with the same tick.")
    if result.continuation_error:
        lines.append(f"Incomplete: {result.continuation_error}.")
    details: list[str] = []
    for region in result.regions:
        if region.error:
            details.append(f"{region.region}: region failed: {region.error}")
        details.extend(f"{region.region}: {error}" for error in region.errors)
        if region.plan:
            details.extend(
                f"{region.region}: {v.image_id} kept in use by {', '.join(v.used_by)}"
                for v in region.plan.with_outcome("kept-in-use")
            )
            details.extend(f"{region.region}: {note}" for note in region.plan.notes)
    shown = 20
    lines.extend(details[:shown])
    if len(details) > shown:
        lines.append(f"... and {len(details) - shown} more (see the JSON message).")
    return "\n".join(lines)


def retention_summary(result: RetentionResult) -> Notification:
    """The one retention.summary of a run: per-region table, ids per outcome (trimmed to fit SNS)."""
    errors = result.error_count
    where = ", ".join(region.region for region in result.regions)
    metrics = result.metrics()
    if result.dry_run:
        planned = result.planned_deletions
        subject = f"amikeeper retention dry run: {planned} AMI(s) would be deleted in {where}"
    else:
        subject = f"amikeeper retention: {metrics['AmisDeleted']} AMI(s) deleted in {where}"
    if errors:
        subject += f", {errors} error(s)"
    table = [list(TABLE_HEADER), *(_table_row(region, result.dry_run) for region in result.regions)]
    notification = Notification(event="retention.summary", severity="info", subject=subject, summary="")
    for cap in (None, 200, 50, 10, 0):
        notification = Notification(
            event="retention.summary",
            severity="warning" if errors else "info",
            subject=subject,
            summary=_summary_text(result),
            table=table,
            payload={
                "time": format_slot(result.time),
                "dry_run": result.dry_run,
                "complete": not result.out_of_time,
                "continued": result.continued,
                "continuation_error": result.continuation_error,
                "metrics": metrics,
                "regions": [
                    {"region": region.region, **_region_payload(region, result.dry_run, cap)}
                    for region in result.regions
                ],
            },
        )
        if len(notification.sns_message().encode()) <= SNS_MESSAGE_LIMIT:
            break
    return notification
