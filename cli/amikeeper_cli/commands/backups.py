"""``amikeeper backups INSTANCE``: an instance's backups, each with what retention would do and why.

The verdicts come from the pure retention planner (amikeeper.retention_plan.plan_region), fed with
this instance's AMIs only (one server-filtered listing) and the region's instances: retention judges
each instance's backups on their own, so the answer is the one a full retention run gives, without
reading every AMI and snapshot of the region. Every backup is checked for use
(amikeeper.retention.find_in_use, given every instance as a run gives it), where a run checks only
those it would otherwise delete: being in use only ever adds a reason to keep.
"""

from __future__ import annotations

from typing import Any

from amikeeper.model import Instance
from amikeeper.naming import format_slot
from amikeeper.retention import find_in_use
from amikeeper.retention_plan import RegionFacts, plan_region
from amikeeper_cli import locate, verdicts
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput
from amikeeper_cli.render import Section, View

COLUMNS = ("AMI", "slot", "trigger", "state", "retention", "why", "hold", "in use", "copies")


def backups(deployment: Deployment, instance_id: str) -> View:
    found = locate.instance(deployment, instance_id)
    regions = [found.region] if found is not None else locate.backup_regions(deployment, instance_id)
    if not regions:
        raise BadInput(
            f"unknown instance {instance_id}: EC2 does not list it and stack {deployment.settings.stack_name} "
            f"has no backups of it in {', '.join(deployment.regions)}"
        )
    region = regions[0]
    instance = found.item if found is not None else None
    return _view(deployment, region, instance_id, instance)


def _view(deployment: Deployment, region: str, instance_id: str, instance: Instance | None) -> View:
    gateways = deployment.region_gateways(region)
    images = tuple(gateways.ec2.backups_of(deployment.settings.stack_name, instance_id))
    # All of them, as retention reads them: an instance launched from one of these backups uses it.
    instances = {record.instance_id: record for record in gateways.ec2.instances()}
    in_use = find_in_use([image.image_id for image in images], instances.values(), gateways)
    facts = RegionFacts(images, instances, in_use.by)
    plan = plan_region(region, facts, deployment.catalog, deployment.retention_config, deployment.now)
    by_id = {image.image_id: image for image in images}
    listed = sorted(plan.verdicts, key=lambda verdict: (verdict.backup_time, verdict.image_id), reverse=True)
    documents = [verdicts.document(verdict, by_id.get(verdict.image_id)) for verdict in listed]
    rows = [
        [
            entry["image_id"],
            entry["slot"],
            entry["trigger"] or "-",
            entry["state"],
            f"{entry['action']} ({entry['outcome']})",
            verdicts.why(verdict),
            "held" if entry["held"] else "-",
            ", ".join(entry["used_by"]) or "-",
            ", ".join(f"{key}: {copy}" for key, copy in entry["copies"].items()) or "-",
        ]
        for verdict, entry in zip(listed, documents, strict=True)
    ]
    judged = next((entry for entry in plan.instances if entry.instance_id == instance_id), None)
    state = instance.state if instance is not None else "not listed by EC2"
    document: dict[str, Any] = {
        "instance_id": instance_id,
        "region": region,
        "instance_state": instance.state if instance is not None else None,
        "instance_name": instance.name if instance is not None else None,
        "status": judged.status if judged else None,
        "policy": judged.policy if judged else None,
        "retention": judged.expression if judged else None,
        "note": judged.note if judged else None,
        "time": format_slot(deployment.now),
        "backups": documents,
    }
    title = (
        f"{len(listed)} backup(s) of {instance_id} in {region} ({state}); "
        f"retention {document['retention'] or 'none'}, policy {document['policy'] or '-'}"
    )
    notes = [f"{instance_id}: {judged.note}"] if judged is not None and judged.note else []
    return View(document=document, sections=[Section(title, COLUMNS, rows)], notes=notes)
