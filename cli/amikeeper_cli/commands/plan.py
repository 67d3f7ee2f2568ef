"""``amikeeper plan``: retention's dry run, as the retention function itself would plan it now.

Each region goes through amikeeper.retention.read_and_plan, the read-then-plan step of a real run
(before execute_plan): the same listings, the same in-use check, the same pure planner. Nothing is
changed, not even the gone-since tags a real run would write; they are listed instead.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.naming import format_slot
from amikeeper.retention import read_and_plan
from amikeeper_cli import verdicts
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.render import Section, View

COLUMNS = ("region", "AMI", "instance", "slot", "state", "action", "outcome", "why", "in use")
ORPHAN_COLUMNS = ("region", "snapshot", "of AMI", "started")
TAG_COLUMNS = ("region", "AMI", "instance", "gone since")


def plan(deployment: Deployment) -> View:
    rows: list[list[str]] = []
    orphan_rows: list[list[str]] = []
    tag_rows: list[list[str]] = []
    regions: list[dict[str, Any]] = []
    notes: list[str] = []
    problems: list[str] = []
    for region in deployment.regions:
        try:
            reading = read_and_plan(
                region,
                deployment.region_gateways(region),
                deployment.catalog,
                deployment.retention_config,
                deployment.now,
            )
        except (ClientError, BotoCoreError) as error:
            problems.append(f"region {region} could not be read: {type(error).__name__}: {error}")
            regions.append({"region": region, "error": str(error)})
            continue
        result = reading.plan
        images = {image.image_id: image for image in reading.facts.images}
        documents = [verdicts.document(v, images.get(v.image_id)) for v in result.verdicts]
        for verdict, entry in zip(result.verdicts, documents, strict=True):
            rows.append(
                [
                    region,
                    verdict.image_id,
                    verdict.instance_id or "-",
                    entry["slot"],
                    verdict.state,
                    entry["action"],
                    verdict.outcome,
                    verdicts.why(verdict),
                    ", ".join(verdict.used_by) or "-",
                ]
            )
        orphan_rows += [
            [region, s.snapshot_id, s.image_id or "-", format_slot(s.started)] for s in result.orphans
        ]
        tag_rows += [
            [region, t.image_id, t.instance_id, format_slot(t.since)] for t in result.gone_since_tags
        ]
        notes += [f"{region} {note}" for note in result.notes]
        regions.append(
            {
                "region": region,
                "error": None,
                "reference_check": reading.reference_check,
                "verdicts": documents,
                "orphan_snapshots": [
                    {"snapshot_id": s.snapshot_id, "image_id": s.image_id, "started": format_slot(s.started)}
                    for s in result.orphans
                ],
                "gone_since_tags": [
                    {"image_id": t.image_id, "instance_id": t.instance_id, "since": format_slot(t.since)}
                    for t in result.gone_since_tags
                ],
                "notes": result.notes,
            }
        )
    deleting = sum(1 for row in rows if row[5] == "delete")
    sections = [
        Section(
            f"Retention plan of stack {deployment.settings.stack_name} at {format_slot(deployment.now)}: "
            f"{deleting} AMI(s) to delete, {len(rows) - deleting} kept (dry run: nothing is changed)",
            COLUMNS,
            rows,
        )
    ]
    if orphan_rows:
        sections.append(Section("Orphan snapshots to delete", ORPHAN_COLUMNS, orphan_rows))
    if tag_rows:
        sections.append(Section("Gone-since tags a run would write", TAG_COLUMNS, tag_rows))
    document = {
        "stack": deployment.settings.stack_name,
        "time": format_slot(deployment.now),
        "dry_run": True,
        "regions": regions,
    }
    return View(document=document, sections=sections, notes=notes, problems=problems)
