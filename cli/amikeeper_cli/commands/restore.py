"""``amikeeper restore INSTANCE``: bring an instance back from one of this stack's backups.

``new-instance`` launches from the AMI with the launch configuration recorded on it when it was made
(amikeeper:launch-* tags, set by CreateImage itself: no extra call per backup, and they travel with the
AMI), so it works after the instance is gone. ``replace-root`` swaps the root volume of the running
instance for one made from the AMI (EC2's replace-root-volume task; id, addresses and network interfaces
kept, the old root kept detached). It shows what it will do before doing anything, asks unless --yes,
and --dry-run asks EC2's own DryRun instead of acting.

``--from-copy REGION`` launches the chosen backup's disaster-recovery copy in REGION instead, as a new
instance only, with the subnet and security groups the operator names there (amikeeper_cli.relocate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import click

from amikeeper.backups import HOLD_SUFFIX, recorded_launch
from amikeeper.model import RESTORED_FROM, SLOT, SOURCE_REGION, Image
from amikeeper_cli import pick, wait
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput, Cancelled, OperationFailed
from amikeeper_cli.relocate import Elsewhere, relocate
from amikeeper_cli.render import Section, View, show

Mode = Literal["new-instance", "replace-root"]
MODES: tuple[Mode, ...] = ("new-instance", "replace-root")
DEFAULT_TIMEOUT_SECONDS = 15 * 60
COLUMNS = ("setting", "value")


@dataclass(frozen=True)
class Request:
    instance_id: str
    image_id: str | None
    at: str | None
    mode: Mode
    dry_run: bool
    yes: bool
    wait: bool
    timeout: float
    as_json: bool
    from_copy: str | None = None
    elsewhere: Elsewhere = field(default_factory=Elsewhere)


@dataclass(frozen=True)
class Plan:
    """One mode's restore, worked out and checked, not yet started."""

    rows: list[list[str]]
    settings: dict[str, Any]
    # Starts it (or asks EC2's DryRun): the id of what to wait for, None for a dry run that would succeed.
    start: Callable[[bool], str | None]
    look: Callable[[str], wait.Progress]
    awaited: str


@dataclass(frozen=True)
class Source:
    """The AMI a restore launches and where it is: a backup, or a backup's copy in another region."""

    region: str
    image: Image
    heading: list[list[str]] = field(default_factory=list)
    described: dict[str, Any] = field(default_factory=dict)


def restore(deployment: Deployment, request: Request) -> View:
    if request.as_json and not (request.yes or request.dry_run):
        raise BadInput("--json needs --yes or --dry-run: there is no one to ask")
    source = _source(deployment, request)
    region, image = source.region, source.image
    if request.mode == "new-instance":
        elsewhere = request.elsewhere if request.from_copy is not None else None
        plan = _new_instance(deployment, region, image, elsewhere)
    else:
        plan = _replace_root(deployment, region, image, request.instance_id)
    heading = [
        ["instance", request.instance_id],
        ["AMI", image.image_id],
        *source.heading,
        ["slot", image.tags.get(SLOT, "-")],
        ["region", region],
        ["mode", request.mode],
    ]
    section = Section(f"Restore {request.instance_id} from {image.image_id}", COLUMNS, heading + plan.rows)
    document: dict[str, Any] = {
        "instance_id": request.instance_id,
        "image_id": image.image_id,
        "slot": image.tags.get(SLOT),
        "region": region,
        "mode": request.mode,
        "copy_of": None,
        "source_region": None,
        **source.described,
        "settings": plan.settings,
        "restored_instance_id": None,
        "task_id": None,
        "seconds": 0,
    }
    if request.dry_run:
        plan.start(True)
        note = "Dry run: EC2 says the request would succeed; nothing was changed."
        return View(document | {"status": "dry-run"}, sections=[section], notes=[note])
    if not request.as_json:
        show(View({}, sections=[section]), as_json=False)
    if not request.yes and not click.confirm("Restore now?", default=False, err=True):
        raise Cancelled("cancelled: nothing was changed")
    started = plan.start(False)
    if started is None:
        raise OperationFailed("EC2 accepted the request but returned no id")
    document |= _started_ids(request, started)
    if not request.wait:
        return View(document | {"status": "started"}, notes=[f"Started {started}; not waiting (--no-wait)."])
    waited = wait.wait_for(lambda: plan.look(started), what=plan.awaited, timeout=request.timeout)
    document |= {"status": waited.status, "seconds": round(waited.seconds)}
    if waited.status == "failed":
        document["reason"] = waited.detail
        return View(document, problems=[f"restore failed: {waited.detail}"])
    if waited.status == "timeout":
        document["reason"] = f"still waiting for {waited.detail}"
        problem = f"timed out after {waited.seconds:.0f}s, still waiting for {waited.detail}"
        return View(document, problems=[problem])
    done = f"{plan.awaited}: done in {waited.seconds:.0f}s."
    return View(document, notes=[done])


def _source(deployment: Deployment, request: Request) -> Source:
    if request.from_copy is None:
        if request.elsewhere.given:
            raise BadInput(
                "--subnet, --security-group, --instance-type, --key-name and --no-key go with --from-copy"
            )
        chosen = pick.backup(deployment, request.instance_id, image_id=request.image_id, at=request.at)
        return Source(chosen.region, chosen.item)
    region = request.from_copy
    if request.mode != "new-instance":
        raise BadInput(
            "--from-copy restores as a new instance only (--mode new-instance): replace-root needs the "
            "backup in the running instance's own region"
        )
    if region not in deployment.aws.ec2_regions:
        raise BadInput(f"--from-copy {region!r} is not an EC2 region")
    copy = pick.copy(deployment, request.instance_id, region, image_id=request.image_id, at=request.at)
    origin = copy.tags.get(SOURCE_REGION, "?")
    return Source(
        region,
        copy,
        heading=[["copy of", f"{copy.copy_of} in {origin}"]],
        described={"copy_of": copy.copy_of, "source_region": origin},
    )


def _started_ids(request: Request, started: str) -> dict[str, Any]:
    if request.mode == "new-instance":
        return {"restored_instance_id": started}
    return {"restored_instance_id": request.instance_id, "task_id": started}


def _new_instance(deployment: Deployment, region: str, image: Image, elsewhere: Elsewhere | None) -> Plan:
    recorded = recorded_launch(image.tags)
    covered = elsewhere.covered if elsewhere is not None else frozenset()
    unknown = [key for key in recorded.unknown if key not in covered]
    if unknown:
        raise BadInput(
            f"{image.image_id} does not record {', '.join(unknown)} (made before amikeeper recorded "
            "launch settings, or a value too long for a tag): it cannot be launched as the original was"
        )
    ec2 = deployment.ec2(region)
    launch, changed = recorded.config, dict[str, str]()
    if elsewhere is not None:
        relocated = relocate(ec2, region, recorded.config, elsewhere)
        launch, changed = relocated.config, relocated.changed
    tags = restored_tags(image)
    settings: dict[str, Any] = {
        "instance_type": launch.instance_type,
        "subnet_id": launch.subnet_id,
        "availability_zone": launch.availability_zone,
        "security_group_ids": list(launch.security_group_ids),
        "instance_profile_arn": launch.instance_profile_arn,
        "key_name": launch.key_name,
        "ebs_optimized": launch.ebs_optimized,
        "tags": tags,
    }
    rows = [
        ["instance type", launch.instance_type],
        ["subnet", launch.subnet_id or "default"],
        ["availability zone", launch.availability_zone or "-"],
        ["security groups", ", ".join(launch.security_group_ids) or "default"],
        ["instance profile", launch.instance_profile_arn or "none"],
        ["key pair", launch.key_name or "none"],
        ["EBS-optimized", "yes" if launch.ebs_optimized else "no"],
        ["volumes", f"from the AMI's {len(image.snapshot_ids)} snapshot(s)"],
        ["tags", ", ".join(f"{key}={value}" for key, value in tags.items())],
    ]
    # A setting the operator changed says what was recorded, so the plan shows both.
    rows = [[label, f"{value} ({changed[label]})" if label in changed else value] for label, value in rows]
    return Plan(
        rows=rows,
        settings=settings,
        start=lambda dry_run: ec2.run_from_backup(image.image_id, launch, tags, dry_run=dry_run),
        look=lambda instance_id: wait.instance_ready(instance_id, ec2.instance_status(instance_id)),
        awaited="new instance running, status checks ok",
    )


def _replace_root(deployment: Deployment, region: str, image: Image, instance_id: str) -> Plan:
    ec2 = deployment.ec2(region)
    instance = ec2.instance(instance_id)
    if instance is None or instance.gone:
        raise BadInput(f"{instance_id} no longer exists in {region}: use --mode new-instance")
    if instance.state != "running":
        raise BadInput(f"{instance_id} is {instance.state}: replace-root needs it running")
    rows = [
        ["root volume", "a new one from the AMI's root snapshot; the old one is kept, detached"],
        ["kept", "instance id, addresses, network interfaces, data volumes"],
    ]
    return Plan(
        rows=rows,
        settings={"delete_replaced_root_volume": False},
        start=lambda dry_run: ec2.replace_root(instance_id, image.image_id, dry_run=dry_run),
        look=lambda task_id: wait.root_replaced(ec2.replace_root_task(task_id)),
        awaited="root volume replaced",
    )


def restored_tags(image: Image) -> dict[str, str]:
    """The instance tags the backup copied (Name, CopyTags), and where the restore came from; not
    amikeeper's bookkeeping nor a legal hold, which belong to the AMI."""
    copied = {
        key: value
        for key, value in image.tags.items()
        if not key.startswith("amikeeper:") and not key.strip().lower().endswith(HOLD_SUFFIX)
    }
    return copied | {RESTORED_FROM: image.image_id}
