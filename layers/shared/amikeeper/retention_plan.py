"""Retention planning (SPEC §4), pure: from what a region holds to keep or delete, with the reason for each.

Guards, whatever a retention expression says:

- only AMIs tagged ``amikeeper:managed-by`` = this stack are ever listed (a server-side filter), and
  only snapshots with that tag are deleted;
- ``<OptInTagKey>:Hold`` = true (trimmed, any case; yes and on too) keeps an AMI, under the current
  opt-in key or an earlier one (amikeeper.backups.is_held); pending AMIs are never touched; failed ones
  are removed;
- an AMI used by an instance (not terminated), the ``$Default`` or ``$Latest`` version of a launch
  template or a launch configuration is kept and reported as kept-in-use;
- the newest available backup of an instance is kept, until ``OrphanGraceDays`` after retention first
  noticed the instance gone (recorded on that AMI as ``amikeeper:instance-gone-since``); after that its
  backups age out (the rules are counted back from now, see amikeeper.retention_rules.select);
- an instance that is gone or no longer opted in keeps the retention recorded on its newest backup
  (``amikeeper:retain``), so a ``Backup:Retain`` override outlives the instance.

Disaster-recovery copies (SPEC §9) in a region are judged apart from that region's own backups: one
group per instance and source region, always by the retention recorded on the copies (the destination's
``retain``, set when each copy was made), with every guard above. Their newest is kept while the source
instance exists in its own region, and for ``OrphanGraceDays`` after; when the run could not see the
source region at all, it is kept. Deleting a source never touches its copies: they are other AMIs, in
other groups, and nothing here follows ``amikeeper:copy-of`` to delete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from amikeeper.backups import is_held, newest_available, recorded_retention
from amikeeper.model import GONE_SINCE, SOURCE_REGION, Image, Instance, Snapshot, TagKeys
from amikeeper.naming import InvalidSlotError, format_slot, parse_slot
from amikeeper.policies import InvalidTag, PolicyCatalog, resolve_policy
from amikeeper.retention_rules import Backup, BackupState, RetentionRules, select

if TYPE_CHECKING:
    from amikeeper.config import Settings

# A snapshot is swept as an orphan only once it is this old: one whose AMI is still being registered
# is never mistaken for debris, and someone who deregistered an AMI by hand has a day to reuse it.
ORPHAN_SNAPSHOT_GRACE = timedelta(days=1)

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
    instances: Mapping[str, Instance]  # every instance EC2 still lists, by id
    in_use: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # image id -> what uses it
    snapshots: tuple[Snapshot, ...] = ()  # this stack's snapshots
    existing_image_ids: frozenset[str] = frozenset()  # AMIs that exist, among those orphans name
    # Every instance of each source region the run read (by region, then id): whether a copy's instance
    # still exists is known in its own region only.
    source_instances: Mapping[str, Mapping[str, Instance]] = field(default_factory=dict)


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
    copy_from: str | None = None  # the source region, for a group of disaster-recovery copies


@dataclass(frozen=True)
class GoneSinceTag:
    """The first time retention noticed an instance gone, to be written on its newest backup."""

    image_id: str
    instance_id: str
    since: datetime


@dataclass(frozen=True)
class RetentionPlan:
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
) -> RetentionPlan:
    """Pure: keep or delete for every AMI of this stack in the region, plus the orphan snapshots."""
    groups: defaultdict[tuple[str | None, str | None], list[Image]] = defaultdict(list)
    for image in facts.images:
        copy_from = image.tags.get(SOURCE_REGION, "?") if image.copy_of is not None else None
        groups[(image.instance_id, copy_from)].append(image)
    verdicts: list[Verdict] = []
    instances: list[InstanceRetention] = []
    tags: list[GoneSinceTag] = []
    for key in sorted(groups, key=lambda key: (key[0] or "", key[1] or "")):
        group = _plan_group(key[0], key[1], groups[key], facts, catalog, config, now)
        verdicts.extend(group.verdicts)
        instances.append(group.instance)
        if group.gone_since_tag is not None:
            tags.append(group.gone_since_tag)
    return RetentionPlan(
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
    rules: RetentionRules | None  # None: the group is skipped, only failed AMIs are cleaned up
    policy: str | None
    status: InstanceStatus
    note: str | None = None


def _plan_group(
    instance_id: str | None,
    copy_from: str | None,
    images: list[Image],
    facts: RegionFacts,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    now: datetime,
) -> _GroupPlan:
    if copy_from is None:
        choice = _choose_policy(instance_id, images, facts.instances, catalog, config.tag_keys)
    else:
        choice = _copy_policy(instance_id, copy_from, images, facts.source_instances, catalog)
    newest = newest_available(images)
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
        policy=choice.policy if choice.rules else None,
        expression=str(choice.rules) if choice.rules else None,
        newest_protected=protect_newest and newest is not None,
        gone_since=gone_since,
        note=note,
        copy_from=copy_from,
    )
    if choice.rules is None:
        return _GroupPlan(
            [_skipped(image, choice.note or "skipped", facts) for image in images], instance, tag
        )
    # Past the grace, no backup will ever come again: the rules count back from now, so they age out.
    ages_out_from = now if gone_since is not None and not protect_newest else None
    verdicts = _judge(images, choice.rules, catalog, config, facts, protect_newest, ages_out_from)
    return _GroupPlan(verdicts, instance, tag)


def _choose_policy(
    instance_id: str | None,
    images: list[Image],
    instances: Mapping[str, Instance],
    catalog: PolicyCatalog,
    keys: TagKeys,
) -> _PolicyChoice:
    if instance_id is None:
        return _PolicyChoice(
            None, None, "unknown", "AMIs without an amikeeper:instance-id tag are left alone"
        )
    instance = instances.get(instance_id)
    if instance is None or instance.gone:
        return _recorded_policy(images, catalog, "gone")
    try:
        policy = resolve_policy(instance.tags, keys, catalog)
    except InvalidTag as invalid:
        return _PolicyChoice(
            None,
            None,
            "live",
            f"left alone: tag {invalid.tag}={invalid.value!r} is invalid ({invalid.reason})",
        )
    if policy is None:
        return _recorded_policy(images, catalog, "not opted in")
    return _PolicyChoice(policy.retention, policy.name, "live")


def _copy_policy(
    instance_id: str | None,
    source_region: str,
    images: list[Image],
    source_instances: Mapping[str, Mapping[str, Instance]],
    catalog: PolicyCatalog,
) -> _PolicyChoice:
    """Copies follow the retention recorded on them; their instance lives in the source region."""
    if instance_id is None:
        return _PolicyChoice(
            None, None, "unknown", "copies without an amikeeper:instance-id tag are left alone"
        )
    recorded = recorded_retention(images, catalog)
    notes = [f"copies from {source_region}; they follow the retention {recorded.source}", *recorded.notes]
    region_instances = source_instances.get(source_region)
    if region_instances is None:
        # The run did not read the source region: nothing proves the instance gone, so its newest stays.
        notes.append(f"{source_region} was not read, so the newest copy is kept")
        return _PolicyChoice(recorded.rules, recorded.policy, "unknown", "; ".join(notes))
    instance = region_instances.get(instance_id)
    status: InstanceStatus = "gone" if instance is None or instance.gone else "live"
    return _PolicyChoice(recorded.rules, recorded.policy, status, "; ".join(notes))


def _recorded_policy(images: list[Image], catalog: PolicyCatalog, status: InstanceStatus) -> _PolicyChoice:
    """The retention recorded on the newest backup: all there is to go by once the instance's tags are not."""
    recorded = recorded_retention(images, catalog)
    notes = [f"its backups follow the retention {recorded.source}"]
    if status == "not opted in":
        notes.insert(0, "no longer opted in")
    notes.extend(recorded.notes)
    return _PolicyChoice(recorded.rules, recorded.policy, status, "; ".join(notes))


def _judge(
    images: list[Image],
    rules: RetentionRules,
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
            held=is_held(image.tags),
            # A failed AMI can launch nothing, whatever still names it: it is removed all the same.
            in_use=image.state != "failed" and image.image_id in facts.in_use,
        )
        for image in selectable
    ]
    decisions = {
        decision.image_id: decision
        for decision in select(
            backups, rules, catalog.time_zone, protect_newest=protect_newest, as_of=ages_out_from
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
