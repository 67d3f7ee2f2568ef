"""The retention run (SPEC §4, §6): one pass per region, planned in full before anything is deleted.

A pass reads the region once (this stack's AMIs, every instance, this stack's snapshots, what uses
the AMIs it would delete), turns that into a plan with the pure amikeeper.retention_plan, and only
then executes the plan. A dry run stops after planning, so it reports exactly what a real run would do.

A run that gets short of time stops deleting and hands the same tick to a fresh invocation, which
plans again from what is left: nothing is done twice and nothing is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.gateways.autoscaling import AutoScalingGateway
from amikeeper.gateways.ec2 import (
    IMAGE_NOT_FOUND,
    Ec2Gateway,
    ImageReference,
    ImageReferencesUnavailable,
    SnapshotDeletion,
)
from amikeeper.gateways.sns import Notifier
from amikeeper.model import GONE_SINCE, Instance, Snapshot
from amikeeper.naming import format_slot
from amikeeper.notifications import NoticeLedger
from amikeeper.policies import PolicyCatalog
from amikeeper.retention_plan import (
    RegionFacts,
    RetentionConfig,
    RetentionPlan,
    Verdict,
    orphan_suspects,
    plan_region,
)
from amikeeper.retention_result import ItemError, RegionOutcome, RetentionResult
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
            users[reference.image_id].add(f"instance {reference.instance_id or reference.arn}")
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
) -> Reading:
    """Read the region and plan it. The in-use check only covers AMIs the rules would otherwise delete:
    being in use can only add a reason to keep, never change what the rules keep."""
    images = tuple(gateways.ec2.managed_images(config.stack_name))
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
class Budget:
    remaining_ms: Callable[[], int]
    margin_ms: int

    def exhausted(self) -> bool:
        return self.remaining_ms() < self.margin_ms


def execute_plan(
    plan: RetentionPlan, facts: RegionFacts, gateway: Ec2Gateway, budget: Budget, outcome: RegionOutcome
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
    verdict: Verdict, gateway: Ec2Gateway, managed_snapshots: frozenset[str], outcome: RegionOutcome
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


def _delete_orphan(snapshot: Snapshot, gateway: Ec2Gateway, outcome: RegionOutcome) -> None:
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
    """Per region the EC2 gateway (it paces deletions) and Auto Scaling; the topic and the notice ledger."""

    ec2: Callable[[str], Ec2Gateway]
    autoscaling: Callable[[str], AutoScalingGateway]
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
    # Deleting what expired is routine and the daily report is what people read: a real run speaks only
    # when something failed, once a day while the same thing keeps failing. A dry run was asked for.
    problems = result.problems()
    if dry_run or (problems and deps.ledger.first_time(problems, now, PROBLEM_MEMORY)):
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
        gateways = RegionGateways(deps.ec2(region), deps.autoscaling(region))
        reading = read_and_plan(region, gateways, catalog, config, now)
    except (ClientError, BotoCoreError) as error:
        return RegionOutcome(region, error=f"{type(error).__name__}: {error}")
    outcome = RegionOutcome(region, plan=reading.plan, reference_check=reading.reference_check)
    if not dry_run:
        execute_plan(reading.plan, reading.facts, gateways.ec2, budget, outcome)
    return outcome
