"""``amikeeper status``: every opted-in instance against its RPO, by the daily report's own rule.

amikeeper.report.assess_region decides each instance's status (ok, violation, new, invalid) from the
same two server-filtered listings per region the report function reads, newest copy per destination
included; the CLI adds only the last verified restore, read from the tags of the AMIs already listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.model import RESTORE_VERIFIED, Image
from amikeeper.naming import InvalidSlotError, format_slot, parse_slot
from amikeeper.report import DailyReport, InstanceStatus, RegionReport, assess_region, format_age, report_run
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.render import Section, View

NEVER = "never"
COLUMNS = (
    "region",
    "instance",
    "name",
    "policy",
    "schedule",
    "newest backup",
    "taken",
    "age",
    "allowed",
    "status",
    "newest copy per destination",
    "last verified restore",
)


def status(deployment: Deployment) -> View:
    settings = deployment.settings
    run = report_run(settings, deployment.catalog, deployment.now)
    regions: list[RegionReport] = []
    verified: dict[str, str] = {}
    for region in deployment.regions:
        try:
            ec2 = deployment.ec2(region)
            instances = list(ec2.opted_in_instances(settings.tag_keys.opt_in))
            images = list(ec2.managed_images(settings.stack_name))
        except (ClientError, BotoCoreError) as error:
            regions.append(RegionReport(region=region, error=f"{type(error).__name__}: {error}"))
            continue
        regions.append(
            assess_region(
                region,
                instances,
                images,
                run.catalog,
                settings.tag_keys,
                now=run.now,
                tick=run.tick,
                pending_timeout=run.pending_timeout,
                copy_allowance=run.copy_allowance,
            )
        )
        verified |= last_verified(images)
    report = DailyReport(run.now, tuple(regions), run.tick, run.pending_timeout, run.copy_allowance)
    listed = report.instances
    rows = [
        [
            i.region,
            i.instance_id,
            i.name or "-",
            i.policy or "-",
            i.schedule or "-",
            i.image_id or "none",
            format_slot(i.backup_time) if i.backup_time else "-",
            format_age(i.age) if i.age is not None else "-",
            format_age(i.allowed_age) if i.allowed_age is not None else "-",
            i.status,
            copies_cell(i),
            verified.get(i.instance_id, NEVER),
        ]
        for i in listed
    ]
    document: dict[str, Any] = {
        "stack": settings.stack_name,
        "time": format_slot(run.now),
        "regions": [region.document() for region in regions],
        "instances": [i.document() | {"last_verified_restore": verified.get(i.instance_id)} for i in listed],
    }
    title = f"{len(listed)} opted-in instance(s) of stack {settings.stack_name} at {format_slot(run.now)}"
    return View(
        document=document,
        sections=[Section(title, COLUMNS, rows)],
        notes=[f"{i.instance_id}: {i.reason}" for i in listed if i.reason],
        problems=[f"region {r.region} could not be read: {r.error}" for r in report.failed_regions],
    )


def copies_cell(instance: InstanceStatus) -> str:
    """``eu-central-1 4h 10m ok; 222233334444/eu-west-1 none missing``; ``-`` when the policy copies nothing."""
    return (
        "; ".join(
            f"{copy.destination} {format_age(copy.age) if copy.age is not None else 'none'} {copy.state}"
            for copy in instance.copies
        )
        or "-"
    )


def last_verified(images: Iterable[Image]) -> dict[str, str]:
    """Instance id -> the newest restore-verified time recorded on any of its backups."""
    newest: dict[str, str] = {}
    for image in images:
        text = image.tags.get(RESTORE_VERIFIED)
        if image.instance_id is None or text is None:
            continue
        try:
            when = format_slot(parse_slot(text.strip()))
        except InvalidSlotError:
            continue  # a hand-edited tag proves nothing about a restore
        # The slot format sorts as text in time order.
        if when > newest.get(image.instance_id, ""):
            newest[image.instance_id] = when
    return newest
