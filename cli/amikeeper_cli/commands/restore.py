"""``amikeeper restore INSTANCE``: bring an instance back from one of this stack's backups.

``new-instance`` launches from the AMI with the launch configuration recorded on it when it was made
(amikeeper:launch-* tags, set by CreateImage itself: no extra call per backup, and they travel with the
AMI), so it works after the instance is gone. ``replace-root`` swaps the root volume of the running
instance for one made from the AMI (EC2's replace-root-volume task; id, addresses and network interfaces
kept, the old root kept detached). It shows what it will do before doing anything, asks unless --yes,
and --dry-run asks EC2's own DryRun instead of acting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import click

from amikeeper.backups import HOLD_SUFFIX, recorded_launch
from amikeeper.model import RESTORED_FROM, SLOT, Image
from amikeeper_cli import pick, wait
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput, Cancelled, OperationFailed
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


@dataclass(frozen=True)
class Plan:
    """One mode's restore, worked out and checked, not yet started."""

    rows: list[list[str]]
    settings: dict[str, Any]
    # Starts it (or asks EC2's DryRun): the id of what to wait for, None for a dry run that would succeed.
    start: Callable[[bool], str | None]
    look: Callable[[str], wait.Progress]
    awaited: str


def restore(deployment: Deployment, request: Request) -> View:
    if request.as_json and not (request.yes or request.dry_run):
        raise BadInput("--json needs --yes or --dry-run: there is no one to ask")
    chosen = pick.backup(deployment, request.instance_id, image_id=request.image_id, at=request.at)
    region, image = chosen.region, chosen.item
    if request.mode == "new-instance":
        plan = _new_instance(deployment, region, image)
    else:
        plan = _replace_root(deployment, region, image, request.instance_id)
    heading = [
        ["instance", request.instance_id],
        ["AMI", image.image_id],
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


def _started_ids(request: Request, started: str) -> dict[str, Any]:
    if request.mode == "new-instance":
        return {"restored_instance_id": started}
    return {"restored_instance_id": request.instance_id, "task_id": started}


def _new_instance(deployment: Deployment, region: str, image: Image) -> Plan:
    recorded = recorded_launch(image.tags)
    if recorded.unknown:
        raise BadInput(
            f"{image.image_id} does not record {', '.join(recorded.unknown)} (made before amikeeper recorded "
            "launch settings, or a value too long for a tag): it cannot be launched as the original was"
        )
    launch, tags = recorded.config, restored_tags(image)
    ec2 = deployment.ec2(region)
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
