"""The benchmark's one table: a row per measure, a column per fleet, the issue's targets beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scripts.bench_memory import Measured
from scripts.bench_world import Day, Exactness, Phase
from tests.fixtures.call_counter import Tally
from tests.fixtures.throttling import Throttle

BACKUP = ("planner", "worker")
RETENTION = ("retention",)
# The targets.
MAX_EC2_CALLS_PER_INSTANCE = 2.05
TARGET_SIZES = (1_000, 10_000)
MAX_COLD_IMPORT_S = 0.5
PLANNER_BUDGET_S = 60.0
LINEAR_TOLERANCE = 1.10  # Describe items per instance may vary by 10% across fleet sizes
SERVICES = ("ec2", "auto-scaling", "sqs", "sns", "lambda")


@dataclass
class FleetRun:
    label: str
    size: int
    days: list[Day]
    exactness: Exactness
    launch_s: float
    total_s: float
    peak_rss_mb: float
    worker_concurrency: int
    planner_memory: Measured | None = None
    throttle: Throttle | None = None
    # The template's default schedules: how many planner ticks and retention runs a day has.
    planner_ticks_per_day: int = 96
    retention_runs_per_day: int = 24

    @property
    def steady(self) -> Day:
        return self.days[-1]

    def phases(self, names: Sequence[str]) -> list[Phase]:
        return [self.steady.phases[name] for name in names]

    def tally(self, names: Sequence[str]) -> Tally:
        return self.steady.tally(*names)

    def per_instance(self, count: int) -> float:
        return count / self.size

    @property
    def ec2_calls_per_instance(self) -> float:
        cycle = self.tally(BACKUP + RETENTION)
        return self.per_instance(cycle.total("ec2") + cycle.total("auto-scaling"))

    @property
    def describe_items_per_instance(self) -> float:
        return self.per_instance(sum(self.tally(BACKUP + RETENTION).items.values()))

    def idle_ec2_calls_per_instance(self, phase: str) -> float | None:
        if phase not in self.steady.phases:
            return None
        tally = self.steady.phases[phase].tally
        return self.per_instance(tally.total("ec2") + tally.total("auto-scaling"))

    @property
    def daily_ec2_calls_per_instance(self) -> float | None:
        """The busy cycle, plus every other tick of the day costing what the measured idle one did."""
        planner = self.idle_ec2_calls_per_instance("planner idle")
        retention = self.idle_ec2_calls_per_instance("retention idle")
        if planner is None or retention is None:
            return None
        return (
            self.ec2_calls_per_instance
            + (self.planner_ticks_per_day - 1) * planner
            + (self.retention_runs_per_day - 1) * retention
        )


@dataclass
class Row:
    label: str
    cells: list[str]
    target: str = ""


def _mark(ok: bool) -> str:
    return " ✓" if ok else " ✗"


def _num(value: float, digits: int = 3) -> str:
    return f"{value:,.{digits}f}"


def build_rows(runs: Sequence[FleetRun], cold: dict[str, Measured]) -> list[Row]:
    rows: list[Row] = []

    def add(label: str, cell: Callable[[FleetRun], str], target: str = "") -> None:
        rows.append(Row(label, [cell(run) for run in runs], target))

    day = runs[0].steady.number
    rows.append(Row(f"STEADY-STATE CYCLE (day {day}: planner tick, workers, retention)", ["" for _ in runs]))
    add(
        "EC2 calls per instance (backup + retention)",
        lambda r: (
            _num(r.ec2_calls_per_instance)
            + (_mark(r.ec2_calls_per_instance <= MAX_EC2_CALLS_PER_INSTANCE) if _targeted(r) else "")
        ),
        f"≤ {MAX_EC2_CALLS_PER_INSTANCE} at 1,000 and 10,000",
    )
    for title, phases in (("backup", BACKUP), ("retention", RETENTION)):
        keys = sorted(
            {key for run in runs for key in run.tally(phases).calls},
            key=lambda key: (SERVICES.index(key.split(":")[0]) if key.split(":")[0] in SERVICES else 99, key),
        )
        for key in keys:
            add(f"  {title}: {key} per instance", _calls_per_instance(key, phases))
    add(
        "Describe items read per instance",
        lambda r: _num(r.describe_items_per_instance, 2),
        "linear in fleet size (flat per instance)",
    )
    add("Describe items read (total)", lambda r: f"{sum(r.tally(BACKUP + RETENTION).items.values()):,}")
    for title, phases in (("backup", BACKUP), ("retention", RETENTION)):
        for key in sorted({key for run in runs for key in run.tally(phases).items}):
            add(f"  {title}: {key} items per instance", _items_per_instance(key, phases))
    rows.append(Row("A WHOLE DAY AT THE DEFAULT SCHEDULES", ["" for _ in runs]))
    add(
        "  idle planner tick: EC2 calls per instance",
        lambda r: _optional(r.idle_ec2_calls_per_instance("planner idle"), 4),
        "a tick with nothing due",
    )
    add(
        "  idle retention run: EC2 calls per instance",
        lambda r: _optional(r.idle_ec2_calls_per_instance("retention idle"), 4),
        "a run with nothing to delete",
    )
    add(
        "  EC2 calls per instance per day",
        lambda r: _optional(r.daily_ec2_calls_per_instance),
        "busy cycle + the other ticks of the day",
    )
    add(
        "    (planner ticks, retention runs a day)",
        lambda r: f"{r.planner_ticks_per_day}, {r.retention_runs_per_day}",
        "PlannerRate, RetentionSchedule defaults",
    )
    rows.append(Row("LAMBDA INVOCATIONS THE PLAN NEEDS", ["" for _ in runs]))
    add("  planner (tick + one per region)", lambda r: str(r.steady.phases["planner"].invocations))
    add("  worker (SQS batches of 10)", lambda r: f"{r.steady.phases['worker'].invocations:,}")
    add(
        "  worker waves at MaximumConcurrency",
        lambda r: (
            f"{-(-r.steady.phases['worker'].invocations // r.worker_concurrency):,} (x{r.worker_concurrency})"
        ),
    )
    add("  retention (run + deleter batches)", lambda r: str(r.steady.phases["retention"].invocations))
    rows.append(Row("TIME (this machine, in-process moto)", ["" for _ in runs]))
    add(
        "  planner wall time",
        lambda r: (
            f"{r.steady.phases['planner'].wall_s:.1f} s"
            + (_mark(r.steady.phases["planner"].wall_s < PLANNER_BUDGET_S) if r.size == 10_000 else "")
        ),
        f"10,000 well under {PLANNER_BUDGET_S:.0f} s",
    )
    add("    of which simulated AWS (moto)", lambda r: f"{r.steady.phases['planner'].aws_s:.1f} s")
    add(
        "  planner alone, fresh process (replayed, no moto)",
        lambda r: f"{r.planner_memory.handler_s:.1f} s" if r.planner_memory else "-",
        "one full CPU core",
    )
    for phase in ("worker", "retention"):
        add(f"  {phase} wall time (all invocations)", _wall(phase))
        add("    of which simulated AWS (moto)", _wall(phase, aws=True))
    add(
        "  retention delete pacing (virtual)",
        lambda r: f"{r.steady.phases['retention'].paced_s:,.0f} s",
        "EC2 bucket: 100 burst, 5/s",
    )
    add("  fleet launch + all days", lambda r: f"{r.launch_s:.0f} s + {r.total_s - r.launch_s:.0f} s")
    rows.append(Row("MEMORY", ["" for _ in runs]))
    add(
        "  planner peak RSS (fresh process, replayed)",
        lambda r: f"{r.planner_memory.rss_mb:.0f} MiB" if r.planner_memory else "-",
        "sets the planner's MemorySize",
    )
    add("  benchmark process peak RSS (psutil)", lambda r: f"{r.peak_rss_mb:.0f} MiB", "moto + every handler")
    rows.append(Row("EXACTLY ONCE (end state after the last day)", ["" for _ in runs]))
    add(
        "  instances with exactly the expected AMIs",
        lambda r: (
            f"{r.exactness.with_expected_backups:,}/{r.exactness.instances:,}" + _mark(r.exactness.exact)
        ),
        "all, under throttling too",
    )
    add(
        "  duplicate AMIs / snapshots left / lost",
        lambda r: (
            f"{r.exactness.duplicate_amis} / {r.exactness.snapshots_left_behind} / {r.exactness.snapshots_missing}"
        ),
        "0 / 0 / 0",
    )
    add(
        "  dead letters / backup.failed notices",
        lambda r: f"{r.exactness.dead_letters} / {r.exactness.failure_notices}",
        "0 / 0",
    )
    add(
        "  EC2 attempts throttled (all days)",
        lambda r: f"{sum(r.throttle.injected.values()):,}" if r.throttle else "-",
    )
    add(
        "  EC2 attempts / calls (all days)",
        lambda r: f"{_all_days(r).total('ec2', what='attempts'):,} / {_all_days(r).total('ec2'):,}",
    )
    add("  retry back-off and adaptive waits (virtual)", lambda r: f"{_retry_sleep(r):,.0f} s")
    rows.append(
        Row("COLD START (fresh process: import of app.py with the layer, as deployed)", ["" for _ in runs])
    )
    for name, measured in cold.items():
        cells = [f"{measured.import_s:.2f} s{_mark(measured.import_s < MAX_COLD_IMPORT_S)}"] + [
            "" for _ in runs[1:]
        ]
        rows.append(Row(f"  {name}", cells, f"< {MAX_COLD_IMPORT_S} s"))
    return rows


def _optional(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else _num(value, digits)


def _targeted(run: FleetRun) -> bool:
    """The calls target is about the plain steady state at 1,000 and 10,000 instances."""
    return run.size in TARGET_SIZES and run.throttle is None


def _calls_per_instance(key: str, phases: Sequence[str]) -> Callable[[FleetRun], str]:
    def cell(run: FleetRun) -> str:
        return _num(run.per_instance(run.tally(phases).of(key)), 4)

    return cell


def _items_per_instance(key: str, phases: Sequence[str]) -> Callable[[FleetRun], str]:
    def cell(run: FleetRun) -> str:
        return _num(run.per_instance(run.tally(phases).items.get(key, 0)), 2)

    return cell


def _wall(phase: str, *, aws: bool = False) -> Callable[[FleetRun], str]:
    def cell(run: FleetRun) -> str:
        measured = run.steady.phases[phase]
        return f"{measured.aws_s if aws else measured.wall_s:.1f} s"

    return cell


def _all_days(run: FleetRun) -> Tally:
    total = Tally({}, {}, {})
    for day in run.days:
        total = total + day.tally()
    return total


def _retry_sleep(run: FleetRun) -> float:
    return sum(phase.slept_s - phase.paced_s for day in run.days for phase in day.phases.values())


def render(runs: Sequence[FleetRun], cold: dict[str, Measured]) -> str:
    header = Row("measure", [run.label for run in runs], "target")
    rows = [header, *build_rows(runs, cold)]
    table = [[row.label, *row.cells, row.target] for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    lines = []
    for index, line in enumerate(table):
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:-1], widths[1:-1], strict=True)
        ]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def verdict(runs: Sequence[FleetRun], cold: dict[str, Measured]) -> list[str]:
    """Each target, met or not, in words."""
    findings = []
    for run in runs:
        if _targeted(run):
            value = run.ec2_calls_per_instance
            met = value <= MAX_EC2_CALLS_PER_INSTANCE
            findings.append(
                f"{'met' if met else 'MISSED'}: {value:.3f} EC2 calls per instance per steady-state cycle at "
                f"{run.label} (target ≤ {MAX_EC2_CALLS_PER_INSTANCE})"
            )
        if not run.exactness.exact:
            findings.append(f"MISSED: the end state of {run.label} is not exact: {run.exactness}")
    plain = [run for run in runs if run.throttle is None]
    if len(plain) > 1:
        per_instance = [run.describe_items_per_instance for run in plain]
        linear = max(per_instance) <= LINEAR_TOLERANCE * min(per_instance)
        invocations = [run.steady.phases["retention"].invocations for run in plain]
        findings.append(
            f"{'met' if linear else 'MISSED'}: Describe items per instance per cycle "
            + ", ".join(f"{value:.2f}" for value in per_instance)
            + " across "
            + ", ".join(run.label for run in plain)
            + " (retention read the region in "
            + ", ".join(str(count) for count in invocations)
            + " invocation(s))"
        )
    for run in plain:
        if run.size == 10_000:
            wall = run.steady.phases["planner"].wall_s
            findings.append(
                f"{'met' if wall < PLANNER_BUDGET_S else 'MISSED'}: planner for 10,000 instances took {wall:.1f} s"
            )
    if not cold:
        return findings
    slow = {name: m.import_s for name, m in cold.items() if m.import_s >= MAX_COLD_IMPORT_S}
    findings.append(
        "met: every handler imports in under 0.5 s"
        if not slow
        else "MISSED: cold import of " + ", ".join(f"{n} {s:.2f} s" for n, s in slow.items())
    )
    return findings
