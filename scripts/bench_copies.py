"""Disaster-recovery copies in `make bench`: EC2 calls per backup and destination, by operation and region.

A fleet whose instances copy every backup to one other region of the account (``Backup:CopyTo``), source
and copies both kept ``daily=2``, lives through a few simulated days: the planner tick, the workers, each
new backup's AMI-state event, the copier working its queue (every delay treated as passed), and the
retention tick with its deleter. From the third day on, each day makes one copy and expires one per
instance: the steady state. The floor is one CopyImage per backup and destination, and one
DeregisterImage per expired copy (SPEC §9's benchmark line).

    PYTHONPATH=layers/shared:. .venv/bin/python -m scripts.bench_copies [--sizes 100,1000] [--days 3]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from scripts.bench_day import ami_event
from scripts.bench_world import (
    FIRST_TICK,
    KEPT_DAYS,
    RETENTION_DELAY,
    World,
    _quietly,
    bench_world,
    planner_tick,
)
from tests.fixtures.end_state import tags_of, tick
from tests.fixtures.stack import managed_images
from tests.fixtures.throttling import Attempt, Forward

DESTINATION = "eu-central-1"
DEFAULT_SIZES = (100, 1_000)
TAGGING_CHUNK = 500  # instances per CreateTags


@dataclass
class RegionCalls:
    """Counts each EC2 attempt by region and operation (no throttle here: attempts are calls)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __call__(self, attempt: Attempt, forward: Forward) -> AWSResponse:
        if attempt.service == "ec2":
            self.counts[(attempt.region, attempt.operation)] += 1
        return forward()


@dataclass(frozen=True)
class CopyDay:
    size: int
    copies_made: int
    copies_expired: int
    calls: dict[tuple[str, str], int]  # (phase and region, operation) -> calls on the steady-state day

    def per_copy(self, where: str, operation: str) -> float:
        return self.calls.get((where, operation), 0) / max(1, self.copies_made)


def measure(size: int, days: int) -> CopyDay:
    with bench_world() as world:
        world.launch(size)
        ec2 = boto3.client("ec2", region_name=world.region)
        for start in range(0, size, TAGGING_CHUNK):
            ec2.create_tags(
                Resources=world.fleet[start : start + TAGGING_CHUNK],
                Tags=[{"Key": "Backup:CopyTo", "Value": DESTINATION}],
            )
        counter = RegionCalls()
        world.interceptors.insert(0, counter)
        last: dict[tuple[str, str], int] = {}
        made = expired = 0
        for number in range(1, days + 1):
            # The day in the order AWS gives it: backups, their AMI events and copies within minutes,
            # retention on the hour.
            before_copies = _copies()
            sources_before = {image["ImageId"] for image in managed_images(world.region)}
            counter.counts.clear()
            world._plan(planner_tick(number))
            world._drain()
            backup_calls = dict(counter.counts)
            counter.counts.clear()
            new = sorted({image["ImageId"] for image in managed_images(world.region)} - sources_before)
            _announce_and_copy(world, new)
            copy_calls = dict(counter.counts)
            counter.counts.clear()
            world._prune(tick(FIRST_TICK + timedelta(days=number - 1) + RETENTION_DELAY, dry_run=False))
            retention_calls = dict(counter.counts)
            after = _copies()
            made, expired = len(after - before_copies), len(before_copies - after)
            last = {(f"backups, {region}", op): n for (region, op), n in backup_calls.items()}
            last |= {(f"AMI events and copier, {region}", op): n for (region, op), n in copy_calls.items()}
            last |= {
                (f"retention and deleter, {region}", op): n for (region, op), n in retention_calls.items()
            }
        return CopyDay(size, made, expired, last)


def _copies() -> set[str]:
    return {
        image["ImageId"] for image in managed_images(DESTINATION) if "amikeeper:copy-of" in tags_of(image)
    }


def _announce_and_copy(world: World, image_ids: Sequence[str]) -> None:
    ami_state, copier = world.functions["AmiStateFunction"], world.functions["CopierFunction"]
    for image_id in image_ids:
        _quietly(ami_state.invoke, ami_event(world, image_id, "available"))

    def invoke(event: dict[str, Any]) -> Any:
        return _quietly(copier.invoke, event)

    world.stack.deliver_copies(invoke, rounds=10 * len(image_ids) + 10)


def render(days: Sequence[CopyDay]) -> list[str]:
    lines = [
        f"DISASTER-RECOVERY COPIES (one destination, {DESTINATION}; source and copies keep daily=2; the "
        "steady-state day: EC2 calls per copy made)"
    ]
    for day in days:
        lines.append(
            f"  {day.size:,} instances: {day.copies_made:,} copies made, {day.copies_expired:,} expired copies "
            "deleted that day"
        )
        for where in sorted({where for where, _ in day.calls}):
            operations = sorted((op, n) for (w, op), n in day.calls.items() if w == where)
            listed = ", ".join(f"{op} {n / max(1, day.copies_made):.3f}" for op, n in operations)
            lines.append(f"    {where:<38} {listed}")
        copy_image = day.per_copy(f"AMI events and copier, {DESTINATION}", "CopyImage")
        deregister = day.calls.get((f"retention and deleter, {DESTINATION}", "DeregisterImage"), 0)
        lines.append(
            f"    CopyImage per copy made {copy_image:.3f} (floor 1); DeregisterImage per expired copy "
            f"{deregister / max(1, day.copies_expired):.3f} (floor 1)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",") if part.strip()),
        default=DEFAULT_SIZES,
    )
    parser.add_argument("--days", type=int, default=KEPT_DAYS + 1)
    args = parser.parse_args(argv)
    print("\n".join(render([measure(size, args.days) for size in args.sizes])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
