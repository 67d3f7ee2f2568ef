"""``amikeeper plan``: retention's dry run, as the retention function itself would plan it now.

Each region goes through amikeeper.retention.read_and_plan, the read-then-plan step of a real run
(before execute_plan): the same listings, the same in-use check, the same pure planner. Nothing is
changed, not even the gone-since tags a real run would write; they are listed instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.naming import format_slot
from amikeeper.retention import Reading, read_and_plan
from amikeeper_cli import verdicts
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.render import Section, View

COLUMNS = ("region", "AMI", "instance", "slot", "state", "action", "outcome", "why", "in use")
ORPHAN_COLUMNS = ("region", "snapshot", "of AMI", "started")
TAG_COLUMNS = ("region", "AMI", "instance", "gone since")


@dataclass
class _Plans:
    """Every region's plan, gathered as rows for people and documents for scripts."""

    rows: list[list[str]] = field(default_factory=list)
    orphan_rows: list[list[str]] = field(default_factory=list)
    tag_rows: list[list[str]] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, region: str, reading: Reading) -> None:
        result = reading.plan
        images = {image.image_id: image for image in reading.facts.images}
        documents = [verdicts.document(v, images.get(v.image_id)) for v in result.verdicts]
        for verdict, entry in zip(result.verdicts, documents, strict=True):
            self.rows.append(
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
        orphans = [
            {"snapshot_id": s.snapshot_id, "image_id": s.image_id, "started": format_slot(s.started)}
            for s in result.orphans
        ]
        tags = [
            {"image_id": t.image_id, "instance_id": t.instance_id, "since": format_slot(t.since)}
            for t in result.gone_since_tags
        ]
        self.orphan_rows += [
            [region, s.snapshot_id, s.image_id or "-", format_slot(s.started)] for s in result.orphans
        ]
        self.tag_rows += [
            [region, t.image_id, t.instance_id, format_slot(t.since)] for t in result.gone_since_tags
        ]
        self.notes += [f"{region} {note}" for note in result.notes]
        self.regions.append(
            {
                "region": region,
                "error": None,
                "reference_check": reading.reference_check,
                "verdicts": documents,
                "orphan_snapshots": orphans,
                "gone_since_tags": tags,
                "notes": result.notes,
            }
        )

    def failed(self, region: str, error: Exception) -> None:
        self.problems.append(f"region {region} could not be read: {type(error).__name__}: {error}")
        self.regions.append({"region": region, "error": str(error)})


def plan(deployment: Deployment) -> View:
    plans = _Plans()
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
            plans.failed(region, error)
            continue
        plans.add(region, reading)
    deleting = sum(1 for row in plans.rows if row[5] == "delete")
    sections = [
        Section(
            f"Retention plan of stack {deployment.settings.stack_name} at {format_slot(deployment.now)}: "
            f"{deleting} AMI(s) to delete, {len(plans.rows) - deleting} kept (dry run: nothing is changed)",
            COLUMNS,
            plans.rows,
        )
    ]
    if plans.orphan_rows:
        sections.append(Section("Orphan snapshots to delete", ORPHAN_COLUMNS, plans.orphan_rows))
    if plans.tag_rows:
        sections.append(Section("Gone-since tags a run would write", TAG_COLUMNS, plans.tag_rows))
    document = {
        "stack": deployment.settings.stack_name,
        "time": format_slot(deployment.now),
        "dry_run": True,
        "regions": plans.regions,
    }
    return View(document=document, sections=sections, notes=plans.notes, problems=plans.problems)
