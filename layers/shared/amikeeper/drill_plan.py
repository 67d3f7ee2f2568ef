"""Restore drills, the pure part (SPEC §10): which instances are due a drill, on which backup, in which
network and on which instance type, and what the outcome is recorded as. No AWS here.

A drill is due when the instance's ``verify`` schedule has a slot later than its last drill, whatever
that drill found: a failed drill is reported once and tried again at the next slot, not every tick. The
last drill is read from the ``amikeeper:restore-drill`` tag on the instance's backups, which retention's
and the report's listings already return, so knowing it costs no call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from amikeeper.backups import newest_available
from amikeeper.model import RESTORE_DRILL, GroupFacts, Image, Subnet
from amikeeper.naming import InvalidSlotError, format_slot, parse_slot
from amikeeper.readiness import Readiness
from amikeeper.schedules import Schedule, ScheduleError

# The smallest current-generation types, by the backup's architecture: a drill proves the backup boots,
# it does not need the original's size (and costs a fraction of it).
SMALL_TYPES: Mapping[str, str] = {"x86_64": "t3.micro", "arm64": "t4g.micro", "i386": "t3.micro"}
DEFAULT_SMALL_TYPE = "t3.micro"
TAG_VALUE_MAX = 256
# How long after a verify slot its drills may still start (ticks go on starting those a cap held back);
# past it, a drill not run for that slot is overdue, and ticks stop reading the fleet for it.
VERIFY_WINDOW = timedelta(days=1)

Outcome = Literal["verified", "failed"]


@dataclass(frozen=True)
class DrillRecord:
    """One drill as the backup's ``amikeeper:restore-drill`` tag records it."""

    outcome: Outcome
    at: datetime
    detail: str

    def tag_value(self) -> str:
        return f"{self.outcome} {format_slot(self.at)} {self.detail}".strip()[:TAG_VALUE_MAX]


def verified(at: datetime, seconds_to_running: float, seconds_to_ok: float) -> DrillRecord:
    return DrillRecord("verified", at, f"running={round(seconds_to_running)}s ok={round(seconds_to_ok)}s")


def failed(at: datetime, why: str) -> DrillRecord:
    return DrillRecord("failed", at, why)


def read_record(text: str | None) -> DrillRecord | None:
    """The tag read back; None for no tag or one amikeeper cannot read (it is then simply not a drill)."""
    if not text:
        return None
    outcome, _, rest = text.partition(" ")
    moment, _, detail = rest.partition(" ")
    if outcome not in ("verified", "failed"):
        return None
    try:
        at = parse_slot(moment)
    except InvalidSlotError:
        return None
    return DrillRecord("verified" if outcome == "verified" else "failed", at, detail)


def last_drilled(backups: Iterable[Image]) -> tuple[DrillRecord, Image] | None:
    """The newest drill recorded on any of these backups, and the backup it drilled."""
    drilled = [(record, image) for image in backups if (record := read_record(image.tags.get(RESTORE_DRILL)))]
    return max(drilled, key=lambda found: found[0].at, default=None)


def last_drill(backups: Iterable[Image]) -> DrillRecord | None:
    found = last_drilled(backups)
    return found[0] if found else None


@dataclass(frozen=True)
class DrillCandidate:
    """An opted-in instance whose policy asks for drills, with its backups in its region."""

    region: str
    instance_id: str
    verify: Schedule
    backups: tuple[Image, ...]


@dataclass(frozen=True)
class DueDrill:
    candidate: DrillCandidate
    image: Image
    slot: datetime  # the verify slot this drill serves
    last: DrillRecord | None


def due_drill(candidate: DrillCandidate, now: datetime, in_flight: Collection[str]) -> DueDrill | None:
    """The drill this instance is owed now, if any: on its newest available backup, for the verify slot
    that passed since its last drill; None while one of its drills is still running."""
    if candidate.instance_id in in_flight:
        return None
    try:
        slot = candidate.verify.slot_at(now)
    except ScheduleError:
        return None
    last = last_drill(candidate.backups)
    if last is not None and last.at >= slot:
        return None
    image = newest_available(candidate.backups)
    if image is None:
        return None
    return DueDrill(candidate, image, slot, last)


def first_drills(due: Sequence[DueDrill], room: int) -> list[DueDrill]:
    """Up to ``room`` of the due drills, the longest unverified first (never drilled before anything), so
    that under a cap every instance gets its turn instead of the same few."""

    def waited(drill: DueDrill) -> tuple[bool, datetime | None, str, str]:
        last = drill.last.at if drill.last else None
        return (last is not None, last, drill.candidate.region, drill.candidate.instance_id)

    return sorted(due, key=waited)[: max(room, 0)]


def drill_type(architecture: str | None, override: str | None) -> str:
    if override:
        return override
    return SMALL_TYPES.get(architecture or "", DEFAULT_SMALL_TYPE)


def client_token(stack_name: str, image_id: str, slot: datetime) -> str:
    """RunInstances' idempotency token: one drill instance per backup and verify slot, however often the
    tick that launches it is retried."""
    digest = hashlib.sha256(f"{stack_name}|{image_id}|{format_slot(slot)}".encode()).hexdigest()
    return f"amikeeper-drill-{digest[:40]}"


@dataclass(frozen=True)
class DrillNetwork:
    subnet_id: str
    security_group_id: str


def pick_network(subnets: Sequence[Subnet], groups: Sequence[GroupFacts]) -> DrillNetwork | str:
    """The drill network of a region from the configured subnets and groups found there, or why there is
    none. A group that lets anything in is refused: a drill boots a copy of production, and it must be
    unreachable (it may still reach out, through the subnet's own routes)."""
    if not subnets:
        return "no DrillSubnetIds subnet in this region"
    for subnet in subnets:
        for group in groups:
            if group.vpc_id != subnet.vpc_id:
                continue
            if group.ingress_rules:
                return f"security group {group.group_id} has {group.ingress_rules} inbound rule(s): drills need none"
            return DrillNetwork(subnet.subnet_id, group.group_id)
    return f"no DrillSecurityGroupIds group in the VPC of {', '.join(s.subnet_id for s in subnets)}"


Verdict = Literal["pending", "verified", "failed"]


@dataclass(frozen=True)
class DrillLook:
    verdict: Verdict
    detail: str = ""


def judge(readiness: Readiness, launched_at: datetime, now: datetime, limit: timedelta) -> DrillLook:
    """What one look at a drill instance means: up (verified), failed, past its time limit (failed), or
    still coming up."""
    if readiness.failure is not None:
        return DrillLook("failed", readiness.failure)
    if readiness.done:
        return DrillLook("verified")
    if now - launched_at >= limit:
        minutes = round(limit.total_seconds() / 60)
        return DrillLook("failed", f"not up after {minutes} minutes: still waiting for {readiness.pending}")
    return DrillLook("pending", readiness.pending)
