"""Retention (SPEC §4, §6) in two steps: a run plans each region in one read and queues its deletions; the
deleter carries them out at EC2's delete pace.

A run (the scheduled RetentionFunction) reads a region once (this stack's AMIs, every instance, this
stack's snapshots, what uses the AMIs it would delete), turns that into a plan with the pure
amikeeper.retention_plan, tags the AMIs of instances it first finds gone, and puts the plan's deletions
on the FIFO deletion queue in batches of :data:`DELETIONS_PER_BATCH` (message group = region). A dry run
stops after planning, so it reports exactly what a real run would do.

The deleter (DeleterFunction, the queue's consumer, one batch per invocation) re-reads the batch's AMIs
first: one held or gone since the plan is spared, as is one no longer this stack's. Then it deregisters
each AMI with the snapshots it owned and deletes orphan snapshots, paced by the region's token bucket.
A region's batches are handled one at a time (the message group), so a region's deletions never exceed
one deleter's pace, however many there are; nothing has to hand work to a new invocation of itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.backups import is_held
from amikeeper.copies import CopyQueue
from amikeeper.copy_destinations import decode_keys
from amikeeper.copy_plan import owed_copies
from amikeeper.gateways.autoscaling import AutoScalingGateway
from amikeeper.gateways.ec2 import (
    IMAGE_NOT_FOUND,
    Ec2Gateway,
    ImageReference,
    ImageReferencesUnavailable,
    SnapshotDeletion,
)
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import FifoQueue
from amikeeper.gateways.vault import VaultUnavailable
from amikeeper.model import COPY_TO, GONE_SINCE, Deletion, DeletionBatch, Instance
from amikeeper.naming import format_slot
from amikeeper.notifications import NoticeLedger
from amikeeper.policies import PolicyCatalog
from amikeeper.retention_plan import (
    RegionFacts,
    RetentionConfig,
    RetentionPlan,
    orphan_suspects,
    plan_region,
)
from amikeeper.retention_result import CopyCatchUp, ItemError, RegionOutcome, RetentionResult
from amikeeper.retention_summary import retention_summary

# A region retention cannot read or delete in is mailed once a day while it lasts.
PROBLEM_MEMORY = timedelta(days=1)


# --- reading a region -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionGateways:
    ec2: Ec2Gateway
    autoscaling: AutoScalingGateway


@dataclass(frozen=True)
class InUse:
    by: Mapping[str, tuple[str, ...]]
    method: Literal["DescribeImageReferences", "scan", "not needed"]


# DescribeImageReferences checks 10 AMIs a call: beyond this many candidates one region-wide scan of the
# launch templates costs fewer calls (and keeps a large run near one EC2 call per deleted AMI).
REFERENCE_CHECK_LIMIT = 50


def find_in_use(candidates: Sequence[str], instances: Iterable[Instance], gateways: RegionGateways) -> InUse:
    """What uses each candidate AMI: instances, $Default/$Latest launch template versions, launch configs.

    Instances come from the region's instance listing, which retention reads anyway. Launch templates
    come from DescribeImageReferences when it is available and the candidates are few (then only the
    templates it names are opened, to tell $Default and $Latest from older versions), else from one
    region-wide scan of every template's $Default and $Latest: DescribeImageReferences takes 10 AMIs a
    call, so for a large run the scan is the cheaper read. Launch configurations are always scanned: no
    other API reports them.
    """
    if not candidates:
        return InUse({}, "not needed")
    wanted = set(candidates)
    users: defaultdict[str, set[str]] = defaultdict(set)
    for instance in instances:
        if not instance.gone and instance.image_id in wanted:
            users[instance.image_id].add(f"instance {instance.instance_id} ({instance.state})")
    if len(wanted) <= REFERENCE_CHECK_LIMIT:
        try:
            references = gateways.ec2.image_references(sorted(wanted))
        except ImageReferencesUnavailable:
            pass
        else:
            templates = _referenced_templates(references, users, gateways)
            return _with_templates_and_configurations(
                wanted, users, templates, gateways, "DescribeImageReferences"
            )
    return _with_templates_and_configurations(
        wanted, users, gateways.ec2.launch_template_images(), gateways, "scan"
    )


def _referenced_templates(
    references: Iterable[ImageReference], users: defaultdict[str, set[str]], gateways: RegionGateways
) -> Mapping[str, Iterable[str]]:
    """Record instance references; open only the templates named, to keep their $Default and $Latest."""
    template_ids: set[str] = set()
    for reference in references:
        if reference.resource_type == "ec2:LaunchTemplate":
            if reference.template_id is None:
                users[reference.image_id].add(f"launch template {reference.arn}")
            else:
                template_ids.add(reference.template_id)
        elif reference.resource_type == "ec2:Instance":
            label = f"instance {reference.instance_id or reference.arn}"
            # The instance listing already named it, with its state: one label per instance.
            if not any(known.split(" (")[0] == label for known in users[reference.image_id]):
                users[reference.image_id].add(label)
    return gateways.ec2.launch_template_images(template_ids) if template_ids else {}


def _with_templates_and_configurations(
    wanted: set[str],
    users: defaultdict[str, set[str]],
    templates: Mapping[str, Iterable[str]],
    gateways: RegionGateways,
    method: Literal["DescribeImageReferences", "scan"],
) -> InUse:
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
    plan: RetentionPlan
    reference_check: str


def read_and_plan(
    region: str,
    gateways: RegionGateways,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    now: datetime,
    *,
    instances: Mapping[str, Instance] | None = None,
    source_instances: Mapping[str, Mapping[str, Instance]] | None = None,
) -> Reading:
    """Read the region and plan it (``instances`` when the caller read them already; ``source_instances``
    of the source regions, for the copies here). The in-use check only covers AMIs the rules would
    otherwise delete: being in use can only add a reason to keep, never change what the rules keep."""
    images = tuple(gateways.ec2.managed_images(config.stack_name))
    if instances is None:
        instances = {record.instance_id: record for record in gateways.ec2.instances()}
    sources = source_instances or {}
    draft = plan_region(
        region, RegionFacts(images, instances, source_instances=sources), catalog, config, now
    )
    candidates = [verdict.image_id for verdict in draft.with_outcome("expired")]
    in_use = find_in_use(candidates, instances.values(), gateways)
    snapshots = tuple(gateways.ec2.managed_snapshots(config.stack_name))
    suspects = orphan_suspects(snapshots, images, now, config.orphan_snapshot_grace)
    existing = gateways.ec2.existing_image_ids(
        {snapshot.image_id for snapshot in suspects if snapshot.image_id is not None}
    )
    facts = RegionFacts(images, instances, in_use.by, snapshots, existing, sources)
    return Reading(facts, plan_region(region, facts, catalog, config, now), in_use.method)


# --- the plan's deletions -----------------------------------------------------------------------------
# At EC2's delete pace (5 a second) a batch takes about 10 s: well inside the deleter's timeout.
DELETIONS_PER_BATCH = 50


def deletions_of(plan: RetentionPlan, facts: RegionFacts) -> list[Deletion]:
    """Pure: what a plan deletes, in order (failed AMIs, expired AMIs, orphan snapshots). Each AMI carries
    the snapshots it owns that are this stack's: the only ones the deleter may delete with it."""
    managed = frozenset(snapshot.snapshot_id for snapshot in facts.snapshots)
    deletions = [
        Deletion(
            kind="image",
            resource_id=verdict.image_id,
            reason="failed" if verdict.outcome == "failed" else "expired",
            snapshot_ids=tuple(s for s in verdict.snapshot_ids if s in managed),
        )
        for verdict in [*plan.with_outcome("failed"), *plan.with_outcome("expired")]
    ]
    deletions.extend(
        Deletion(kind="snapshot", resource_id=snapshot.snapshot_id, reason="orphan")
        for snapshot in plan.orphans
    )
    return deletions


def deletion_batches(region: str, now: datetime, deletions: Sequence[Deletion]) -> list[DeletionBatch]:
    return [
        DeletionBatch(
            region=region,
            scheduled_time=now,
            sequence=index,
            deletions=tuple(deletions[start : start + DELETIONS_PER_BATCH]),
        )
        for index, start in enumerate(range(0, len(deletions), DELETIONS_PER_BATCH))
    ]


def tag_gone_instances(plan: RetentionPlan, gateway: Ec2Gateway, outcome: RegionOutcome) -> None:
    """Record on its AMIs when an instance was first found gone (the start of its OrphanGraceDays)."""
    for tag in plan.gone_since_tags:
        try:
            gateway.tag_image(tag.image_id, GONE_SINCE, format_slot(tag.since))
            outcome.tagged_gone.append(tag.image_id)
        except (ClientError, BotoCoreError) as error:
            outcome.errors.append(ItemError(tag.image_id, "CreateTags", str(error)))


# --- the deleter ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeleterDeps:
    """Per region the EC2 gateway (it paces deletions); the topic and the notice ledger."""

    ec2: Callable[[str], Ec2Gateway]
    notifier: Notifier
    ledger: NoticeLedger


def delete_batch(batch: DeletionBatch, config: RetentionConfig, deps: DeleterDeps) -> RetentionResult:
    """Carry out one batch; one failure is recorded and the rest proceed. Failures are mailed once a day
    while the same thing keeps failing (the run's plan is the routine part, and the daily report)."""
    outcome = RegionOutcome(batch.region)
    try:
        gateway = deps.ec2(batch.region)
        current = {
            image.image_id: image
            for image in gateway.managed_images_among(
                config.stack_name, [d.resource_id for d in batch.deletions if d.kind == "image"]
            )
        }
    except (ClientError, BotoCoreError, VaultUnavailable) as error:
        outcome.error = f"{type(error).__name__}: {error}"
    else:
        for deletion in batch.deletions:
            if deletion.kind == "snapshot":
                _delete_orphan(deletion.resource_id, gateway, outcome)
            elif (image := current.get(deletion.resource_id)) is None:
                # Deregistered meanwhile (by hand, or by an earlier delivery of this batch); its snapshots,
                # if any are left, are swept as orphans.
                outcome.gone_already.append(deletion.resource_id)
            elif is_held(image.tags):
                outcome.spared_held.append(deletion.resource_id)
            else:
                _delete_image(deletion, gateway, outcome)
    result = RetentionResult(batch.scheduled_time, False, (outcome,))
    problems = result.problems()
    if problems and deps.ledger.first_time(problems, batch.scheduled_time, PROBLEM_MEMORY):
        deps.notifier.publish(retention_summary(result))
    return result


def _delete_image(deletion: Deletion, gateway: Ec2Gateway, outcome: RegionOutcome) -> None:
    image_id = deletion.resource_id
    try:
        result = gateway.deregister(image_id, deletion.snapshot_ids, frozenset(deletion.snapshot_ids))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in IMAGE_NOT_FOUND:
            outcome.gone_already.append(image_id)
            return
        outcome.errors.append(ItemError(image_id, "DeregisterImage", str(error)))
        return
    except BotoCoreError as error:
        outcome.errors.append(ItemError(image_id, "DeregisterImage", str(error)))
        return
    (outcome.failed_cleaned if deletion.reason == "failed" else outcome.deleted).append(image_id)
    for snapshot in result.snapshots:
        _record_snapshot(snapshot, outcome.snapshots_deleted, outcome)


def _delete_orphan(snapshot_id: str, gateway: Ec2Gateway, outcome: RegionOutcome) -> None:
    try:
        result = gateway.delete_snapshot(snapshot_id)
    except (ClientError, BotoCoreError) as error:
        outcome.errors.append(ItemError(snapshot_id, "DeleteSnapshot", str(error)))
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
    """Per location (a region, or ``account/region`` of the vault) EC2 and Auto Scaling; the deletion
    queue, the copy queue (owed copies), the topic and the notice ledger."""

    ec2: Callable[[str], Ec2Gateway]
    autoscaling: Callable[[str], AutoScalingGateway]
    deletions: FifoQueue
    copies: CopyQueue
    notifier: Notifier
    ledger: NoticeLedger


def run_retention(
    now: datetime,
    regions: Sequence[str],
    catalog: PolicyCatalog,
    config: RetentionConfig,
    deps: RetentionDeps,
    *,
    dry_run: bool,
) -> RetentionResult:
    """One retention run over every region, then over every copy destination outside them (SPEC §9), and
    the catch-up of owed copies; a failing location is reported and never stops the others."""
    instances: dict[str, Mapping[str, Instance]] = {}
    failed: dict[str, str] = {}
    for region in regions:
        try:
            instances[region] = {record.instance_id: record for record in deps.ec2(region).instances()}
        except (ClientError, BotoCoreError) as error:
            failed[region] = f"{type(error).__name__}: {error}"
    outcomes: list[RegionOutcome] = []
    readings: dict[str, Reading] = {}
    for region in regions:
        if region in failed:
            outcomes.append(RegionOutcome(region, error=failed[region]))
            continue
        outcome, reading = _run_location(region, catalog, config, deps, now, instances, dry_run=dry_run)
        outcomes.append(outcome)
        if reading is not None:
            readings[region] = reading
    destinations = sorted(_destinations(readings) - set(regions))
    for key in destinations:
        outcome, reading = _run_location(key, catalog, config, deps, now, instances, dry_run=dry_run)
        outcomes.append(outcome)
        if reading is not None:
            readings[key] = reading
    copies = _catch_up(readings, config.stack_name, deps, dry_run=dry_run)
    result = RetentionResult(now, dry_run, tuple(outcomes), copies=copies)
    # Queueing what expired is routine and the daily report is what people read: a real run speaks only
    # when something failed, once a day while the same thing keeps failing. A dry run was asked for.
    problems = result.problems()
    if dry_run or (problems and deps.ledger.first_time(problems, now, PROBLEM_MEMORY)):
        deps.notifier.publish(retention_summary(result))
    return result


def _run_location(
    location: str,
    catalog: PolicyCatalog,
    config: RetentionConfig,
    deps: RetentionDeps,
    now: datetime,
    source_instances: Mapping[str, Mapping[str, Instance]],
    *,
    dry_run: bool,
) -> tuple[RegionOutcome, Reading | None]:
    try:
        gateways = RegionGateways(deps.ec2(location), deps.autoscaling(location))
        reading = read_and_plan(
            location,
            gateways,
            catalog,
            config,
            now,
            instances=source_instances.get(location),
            source_instances=source_instances,
        )
    except (ClientError, BotoCoreError, VaultUnavailable) as error:
        return RegionOutcome(location, error=f"{type(error).__name__}: {error}"), None
    outcome = RegionOutcome(location, plan=reading.plan, reference_check=reading.reference_check)
    if dry_run:
        return outcome, reading
    tag_gone_instances(reading.plan, gateways.ec2, outcome)
    deletions = deletions_of(reading.plan, reading.facts)
    try:
        refused = deps.deletions.send(deletion_batches(location, now, deletions))
    except (ClientError, BotoCoreError) as error:
        # Nothing is lost: the next run plans the same deletions again.
        outcome.errors.append(ItemError(location, "SendMessageBatch", f"{type(error).__name__}: {error}"))
        return outcome, reading
    if refused:
        outcome.errors.append(
            ItemError(location, "SendMessageBatch", f"{len(refused)} deletion batch(es) refused by SQS")
        )
    outcome.queued = len(deletions) - sum(len(batch.deletions) for batch in refused)
    return outcome, reading


def _destinations(readings: Mapping[str, Reading]) -> set[str]:
    """Every copy destination the backups read so far name."""
    return {
        key
        for reading in readings.values()
        for image in reading.facts.images
        if image.copy_of is None
        for key in decode_keys(image.tags.get(COPY_TO))
    }


def _catch_up(
    readings: Mapping[str, Reading], stack_name: str, deps: RetentionDeps, *, dry_run: bool
) -> CopyCatchUp:
    """Ask again for every copy a backup is owed and its destination does not hold: a lost AMI event, a
    region without an event rule, a copy task that was dead-lettered or a copy that failed and was removed.
    A destination the run could not read is asked all the same: the copier's client token and the copy's
    fixed name make a copy that exists come back rather than a second one."""
    present = {
        (location, image.copy_of)
        for location, reading in readings.items()
        for image in reading.facts.images
        if image.copy_of is not None
    }
    owed = [
        task
        for region, reading in readings.items()
        for image in reading.facts.images
        for task in owed_copies(image, region, stack_name)
        if (task.destination, task.source_image_id) not in present
    ]
    if dry_run or not owed:
        return CopyCatchUp(owed=len(owed))
    try:
        refused = deps.copies.send(owed)
    except (ClientError, BotoCoreError) as error:
        return CopyCatchUp(owed=len(owed), error=f"{type(error).__name__}: {error}")
    refusal = f"{len(refused)} copy task(s) refused by SQS" if refused else None
    return CopyCatchUp(owed=len(owed), queued=len(owed) - len(refused), error=refusal)
