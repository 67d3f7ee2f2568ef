"""`make bench`: API calls, Describe items, time and memory of the deployed code paths for growing fleets.

Each fleet (half of its instances with one data volume) lives through a few simulated days: the
planner's 03:05 tick, the workers draining the queue, the retention tick at 04:05, with retention
keeping two daily backups, so that from the third day on each day creates one AMI and deletes one per
instance: the steady state the issue's targets are about. The handlers are those of template.yaml,
invoked in-process on moto as `sam local invoke` would (see scripts/bench_world.py for what is
simulated and how). A throttled run answers 30% of EC2 attempts with RequestLimitExceeded and checks
that the end state is still exact. Cold starts and the planner's peak memory are measured in fresh
processes (scripts/bench_memory.py).

    PYTHONPATH=layers/shared:. .venv/bin/python -m scripts.bench [--sizes 100,1000,10000] [--days 3]

The exit status is 1 when an end state is not exact (a correctness bug), 0 otherwise; targets met or
missed are printed under the table.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from unittest import mock

import psutil  # type: ignore[import-untyped]
from moto import mock_aws

from scripts import bench_copies, bench_day
from scripts.bench_memory import Measured, cold_import, replay_peak
from scripts.bench_report import FleetRun, render, verdict
from scripts.bench_world import FAKE_CREDENTIALS, KEPT_DAYS, RETENTION, ROOT, bench_world
from tests.fixtures.stack import create_stack
from tests.sam_local import SamApp

DEFAULT_SIZES = (100, 1_000, 10_000)
DEFAULT_DAYS = 3
THROTTLED_SIZE = 1_000
THROTTLE_RATE = 0.3
WORKER_CONCURRENCY = 5  # the WorkerMaxConcurrency default


@dataclass
class RssSampler:
    """The process's resident set size, sampled every 50 ms while open; ``peak_mb`` is the highest seen."""

    interval_s: float = 0.05
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        process = psutil.Process()

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)

        self.peak_mb = process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_fleet(
    size: int,
    days: int,
    *,
    label: str,
    throttle_rate: float = 0.0,
    seed: int = 0,
    measure_memory: bool = True,
    image_references: bool = True,
) -> FleetRun:
    started = time.perf_counter()
    with RssSampler() as sampler, bench_world(WORKER_CONCURRENCY) as world:
        if not image_references:
            world.fidelity.disable_image_references(True)
        progress(f"{label}: launching {size:,} instances")
        world.launch(size)
        launch_s = time.perf_counter() - started
        throttle = world.throttle(throttle_rate, seed) if throttle_rate else None
        recorder = world.record() if measure_memory else None
        simulated = []
        for number in range(1, days + 1):
            progress(f"{label}: day {number} of {days}")
            last = number == days
            simulated.append(world.day(number, recorder if last else None, idle_runs=last))
        progress(f"{label}: checking the end state")
        exactness = world.exactness(days)
        region_planner, recorded_task = world.functions["RegionPlannerFunction"], world.recorded_task
        total_s = time.perf_counter() - started
    memory = None
    if recorder is not None:
        progress(f"{label}: replaying the day-{days} region planner in a fresh process")
        try:
            assert recorded_task is not None, "the last day planned no region"
            memory = replay_peak(region_planner, recorded_task, recorder.save())
        finally:
            shutil.rmtree(recorder.folder, ignore_errors=True)
    ticks, runs = schedules_per_day()
    return FleetRun(
        label=label,
        planner_ticks_per_day=ticks,
        retention_runs_per_day=runs,
        size=size,
        days=simulated,
        exactness=exactness,
        launch_s=launch_s,
        total_s=total_s,
        peak_rss_mb=sampler.peak_mb,
        worker_concurrency=WORKER_CONCURRENCY,
        planner_memory=memory,
        throttle=throttle,
    )


RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def schedules_per_day() -> tuple[int, int]:
    """Planner ticks and retention runs a day under the template's default PlannerRate and RetentionSchedule."""
    parameters = SamApp.load(ROOT / "template.yaml").parameters
    planner_minutes = int(parameters["PlannerRate"]["Default"])
    retention = RATE.match(str(parameters["RetentionSchedule"]["Default"]))
    if retention is None:
        raise ValueError(
            f"RetentionSchedule default {parameters['RetentionSchedule']['Default']!r} is not rate(...)"
        )
    retention_minutes = int(retention.group(1)) * MINUTES[retention.group(2)]
    return 1440 // planner_minutes, max(1, 1440 // retention_minutes)


def cold_starts() -> dict[str, Measured]:
    """Each handler's import in a fresh process, with the environment a deployed stack gives it."""
    with mock.patch.dict(os.environ, FAKE_CREDENTIALS), mock_aws():
        stack = create_stack()
    functions = stack.deploy(SamApp.load(ROOT / "template.yaml"))
    return {function_id: cold_import(function) for function_id, function in functions.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",") if part.strip()),
        default=DEFAULT_SIZES,
        help="fleet sizes, comma-separated (default 100,1000,10000)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"simulated days per fleet, at least {KEPT_DAYS + 1} to reach the steady state (default 3)",
    )
    parser.add_argument(
        "--throttled-size",
        type=int,
        default=THROTTLED_SIZE,
        help="fleet size of the 30%%-throttled run, 0 to skip (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the throttle's random choices")
    parser.add_argument(
        "--without-image-references",
        action="store_true",
        help="EC2 answers DescribeImageReferences with InvalidAction (as where it is unavailable), so "
        "retention scans the launch templates instead",
    )
    parser.add_argument(
        "--day-sizes",
        type=lambda text: tuple(int(part) for part in text.split(",") if part.strip() and int(part)),
        default=(1_000,),
        help="fleet sizes of the whole day at the defaults (scripts/bench_day.py), 0 to skip (default 1000)",
    )
    parser.add_argument(
        "--copy-sizes",
        type=lambda text: tuple(int(part) for part in text.split(",") if part.strip() and int(part)),
        default=bench_copies.DEFAULT_SIZES,
        help="fleet sizes of the copies run (scripts/bench_copies.py), 0 to skip (default 100,1000)",
    )
    parser.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process import timings")
    parser.add_argument("--no-memory", action="store_true", help="skip the planner's fresh-process replay")
    args = parser.parse_args(argv)
    if args.days < KEPT_DAYS + 1:
        parser.error(
            f"--days must be at least {KEPT_DAYS + 1}: retention ({RETENTION}) deletes from day 3 on"
        )
    if any(size < 1 for size in args.sizes):
        parser.error("--sizes must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    args = parse_args(argv)
    started = time.perf_counter()
    references = not args.without_image_references
    runs = [
        run_fleet(
            size, args.days, label=f"{size:,}", measure_memory=not args.no_memory, image_references=references
        )
        for size in args.sizes
    ]
    if args.throttled_size:
        runs.append(
            run_fleet(
                args.throttled_size,
                args.days,
                label=f"{args.throttled_size:,} @{THROTTLE_RATE:.0%} throttled",
                throttle_rate=THROTTLE_RATE,
                seed=args.seed,
                measure_memory=False,
                image_references=references,
            )
        )
    days = []
    for size in args.day_sizes:
        progress(f"{size:,}: a whole day at the defaults")
        days.append(bench_day.measure(size))
    copies = []
    for size in args.copy_sizes:
        progress(f"{size:,}: copies to another region")
        copies.append(bench_copies.measure(size, args.days))
    cold = {} if args.no_cold_start else cold_starts()
    print(render(runs, cold))
    if days:
        print()
        print("\n".join(bench_day.render(days)))
    if copies:
        print()
        print("\n".join(bench_copies.render(copies)))
    print()
    for finding in verdict(runs, cold):
        print(f"- {finding}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nBenchmark wall time {time.perf_counter() - started:.0f} s, process peak RSS {peak:.0f} MiB.")
    return 0 if all(run.exactness.exact for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
