"""The retention.summary notification: one per run, per-region counts and the AMI ids by outcome.

The id lists are capped so that the message fits SNS's size limit; the counts are always complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amikeeper.naming import format_slot
from amikeeper.notifications import Notification, fit_to_sns
from amikeeper.retention_result import RegionOutcome, RetentionResult, region_counts

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


def _table_row(region: RegionOutcome, dry_run: bool) -> list[str]:
    counts = region_counts(region, dry_run)
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


def _capped(items: Sequence[Any], cap: int) -> dict[str, Any]:
    shown = list(items[:cap])
    return {"items": shown, "omitted": len(items) - len(shown)}


def _region_payload(region: RegionOutcome, dry_run: bool, cap: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "counts": region_counts(region, dry_run),
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
        "spared_held": _capped(region.spared_held, cap),
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
    queued = sum(region.queued for region in result.regions)
    if queued:
        lines.append(f"{queued} deletion(s) queued for the deleter, which works at EC2's delete pace.")
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
    longest = max((_longest_listing(region) for region in result.regions), default=0)

    def build(cap: int) -> Notification:
        return Notification(
            event="retention.summary",
            # A region retention cannot read, or AMIs it could not delete: storage and risk pile up unseen.
            severity="error" if errors else "info",
            subject=subject,
            summary=_summary_text(result),
            table=table,
            payload={
                "time": format_slot(result.time),
                "dry_run": result.dry_run,
                "queued": sum(region.queued for region in result.regions),
                "metrics": metrics,
                "regions": [
                    {"region": region.region, **_region_payload(region, result.dry_run, cap)}
                    for region in result.regions
                ],
            },
        )

    return fit_to_sns(build, longest)


def _longest_listing(region: RegionOutcome) -> int:
    """The longest id list of a region's summary: capping every list at it lists everything."""
    plan = region.plan
    planned = [len(plan.verdicts), len(plan.orphans), len(plan.notes)] if plan else []
    done = [
        len(region.deleted),
        len(region.failed_cleaned),
        len(region.snapshots_deleted),
        len(region.snapshots_shared),
        len(region.orphans_deleted),
        len(region.tagged_gone),
        len(region.gone_already),
        len(region.spared_held),
        len(region.errors),
    ]
    return max([0, *planned, *done])
