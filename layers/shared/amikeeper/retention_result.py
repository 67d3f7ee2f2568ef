"""What a retention run or a deleter batch did, region by region: the counts, ids and errors its summary
and metrics report. A run plans and queues (``queued``); the deleter deletes (``deleted`` and the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amikeeper.notifications import condition_key, error_kind
from amikeeper.retention_plan import Outcome, RetentionPlan


@dataclass(frozen=True)
class ItemError:
    resource_id: str
    action: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource_id}: {self.action}: {self.message}"


@dataclass
class RegionOutcome:
    region: str
    plan: RetentionPlan | None = None
    reference_check: str = ""
    error: str | None = None
    deleted: list[str] = field(default_factory=list)
    failed_cleaned: list[str] = field(default_factory=list)
    snapshots_deleted: list[str] = field(default_factory=list)
    snapshots_shared: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    tagged_gone: list[str] = field(default_factory=list)
    gone_already: list[str] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # Deletions handed to the deleter (AMIs and orphan snapshots), and those spared because they were held
    # between the plan and the deletion.
    queued: int = 0
    spared_held: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return len(self.errors) + (1 if self.error else 0)

    def count(self, *outcomes: Outcome) -> int:
        return len(self.plan.with_outcome(*outcomes)) if self.plan else 0


@dataclass(frozen=True)
class CopyCatchUp:
    """Copies backups are owed and their destinations do not hold, found by a run and asked for again."""

    owed: int = 0
    queued: int = 0
    error: str | None = None


@dataclass(frozen=True)
class RetentionResult:
    time: datetime
    dry_run: bool
    regions: tuple[RegionOutcome, ...]
    copies: CopyCatchUp = field(default_factory=CopyCatchUp)

    @property
    def error_count(self) -> int:
        return sum(region.error_count for region in self.regions) + (1 if self.copies.error else 0)

    def problems(self) -> str:
        """A key naming what went wrong (regions, error codes), equal while the same things fail; "" if none."""
        parts = [f"{r.region}:region:{error_kind(r.error)}" for r in self.regions if r.error]
        parts += [f"{r.region}:{e.action}:{error_kind(e.message)}" for r in self.regions for e in r.errors]
        if self.copies.error:
            parts.append(f"copies:SendMessageBatch:{error_kind(self.copies.error)}")
        return condition_key("retention.summary", parts) if parts else ""

    @property
    def planned_deletions(self) -> int:
        """AMIs the plans delete (expired and failed), whether or not this run got to them."""
        return sum(len(region.plan.deletions) for region in self.regions if region.plan)

    def metrics(self) -> dict[str, int]:
        """The retention metrics of the contract: a run's plan and a deleter's work, as far as each did it."""
        return self.plan_metrics() | self.deletion_metrics()

    def plan_metrics(self) -> dict[str, int]:
        """What a run emits: what it examined and kept in use, and its errors (reading, tagging, queueing)."""
        return {
            "AmisExamined": sum(len(r.plan.verdicts) for r in self.regions if r.plan),
            "KeptInUse": sum(r.count("kept-in-use") for r in self.regions),
            "RetentionErrors": self.error_count,
        }

    def deletion_metrics(self) -> dict[str, int]:
        """What a deleter batch emits: what it deleted, and its errors."""
        return {
            "AmisDeleted": sum(len(r.deleted) + len(r.failed_cleaned) for r in self.regions),
            "SnapshotsDeleted": sum(len(r.snapshots_deleted) for r in self.regions),
            "OrphanSnapshotsDeleted": sum(len(r.orphans_deleted) for r in self.regions),
            "RetentionErrors": self.error_count,
        }

    def response(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "regions": [region_counts(region, self.dry_run) for region in self.regions],
            "copies_owed": self.copies.owed,
            "copies_queued": self.copies.queued,
            "copies_error": self.copies.error,
        }


def region_counts(region: RegionOutcome, dry_run: bool) -> dict[str, Any]:
    plan = region.plan
    planned_expired = region.count("expired")
    planned_failed = region.count("failed")
    return {
        "region": region.region,
        "error": region.error,
        "examined": len(plan.verdicts) if plan else 0,
        "kept": region.count("kept"),
        "kept_in_use": region.count("kept-in-use"),
        "held": region.count("held"),
        "pending": region.count("pending"),
        "skipped": region.count("skipped"),
        "deleted": planned_expired if dry_run else len(region.deleted),
        "failed_cleaned": planned_failed if dry_run else len(region.failed_cleaned),
        "snapshots_deleted": len(region.snapshots_deleted),
        "orphan_snapshots": len(plan.orphans) if dry_run and plan else len(region.orphans_deleted),
        "errors": region.error_count,
        "queued": region.queued,
    }
