"""One benchmark fleet: moto with EC2's semantics, the stack, the template's handlers, simulated days.

Everything runs in this process the way ``make demo`` does: the handlers of template.yaml resolved as
``sam local invoke`` would (tests/sam_local.py), on the stack's resources in moto (tests/fixtures/
stack.py). Around them, at the HTTP layer (tests/fixtures/throttling.py): call counting, the in-memory
work queue (scripts/bench_queue.py), optionally a throttle, and a timer that tells simulated-AWS time
from the handlers' own. botocore's back-off and adaptive waits and the deleter's pacing sleep on a
virtual clock: recorded, not slept. The planner's region tasks and retention's deletion batches are
delivered to their functions here, one per invocation, as their queues' event sources would.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
import psutil  # type: ignore[import-untyped]
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID

from amikeeper import runtime
from amikeeper.pacing import TokenBucket
from scripts.bench_memory import Recorder
from scripts.bench_moto import indexed_moto
from scripts.bench_queue import DeliveryStats, WorkQueue
from tests.fixtures.call_counter import CallCounter, Tally, counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity, real_ec2_semantics, without_ecs_optimized_amis
from tests.fixtures.end_state import (
    backups_by_instance,
    managed_snapshot_ids,
    snapshots_of_existing_images,
    tick,
)
from tests.fixtures.stack import MotoStack, create_stack
from tests.fixtures.throttling import Attempt, Forward, Throttle, VirtualTime, wire
from tests.sam_local import ResolvedFunction, SamApp

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import BlockDeviceMappingTypeDef

ROOT = Path(__file__).resolve().parent.parent
# Two daily backups kept: from the third day on, each day creates one AMI and deletes one per instance.
RETENTION = "daily=2"
KEPT_DAYS = 2
FIRST_TICK = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
RETENTION_DELAY = timedelta(hours=1)
IDLE_PLANNER_DELAY = timedelta(hours=1, minutes=15)
IDLE_RETENTION_DELAY = timedelta(hours=2)
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class AwsTimer:
    """Time spent answering attempts (moto and what sits in front of it), i.e. simulated-AWS time."""

    seconds: float = 0.0

    def __call__(self, attempt: Attempt, forward: Forward) -> AWSResponse:
        started = time.perf_counter()
        try:
            return forward()
        finally:
            self.seconds += time.perf_counter() - started


@dataclass
class Phase:
    """One handler's share of a simulated day."""

    name: str
    tally: Tally
    wall_s: float
    aws_s: float
    slept_s: float  # every virtual sleep: botocore's back-off and adaptive waits, and pacing
    paced_s: float  # of which retention's delete pacing
    invocations: int
    rss_mb: float = 0.0

    @property
    def handler_s(self) -> float:
        """Wall time minus simulated-AWS time: what the handlers and boto3 spent themselves."""
        return max(0.0, self.wall_s - self.aws_s)


@dataclass
class Day:
    number: int
    phases: dict[str, Phase] = field(default_factory=dict)

    def tally(self, *names: str) -> Tally:
        total = Tally({}, {}, {})
        for name in names or tuple(self.phases):
            total = total + self.phases[name].tally
        return total


@dataclass
class Exactness:
    instances: int
    with_expected_backups: int
    duplicate_amis: int
    snapshots_left_behind: int
    snapshots_missing: int
    dead_letters: int
    failure_notices: int

    @property
    def exact(self) -> bool:
        return (
            self.with_expected_backups == self.instances
            and self.duplicate_amis == 0
            and self.snapshots_left_behind == 0
            and self.snapshots_missing == 0
            and self.dead_letters == 0
            and self.failure_notices == 0
        )


@dataclass
class World:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]
    fidelity: Ec2Fidelity
    counter: CallCounter
    clock: VirtualTime
    queue: WorkQueue
    timer: AwsTimer
    pacing: Pacing
    interceptors: list[Any]
    fleet: list[str] = field(default_factory=list)
    worker_concurrency: int = 5
    # The region task whose HTTP answers the recorder kept, to replay it in a fresh process.
    recorded_task: dict[str, Any] | None = None

    @property
    def region(self) -> str:
        return self.stack.region

    def record(self) -> Recorder:
        """Record what botocore receives (first in line, so it sees throttled answers too)."""
        recorder = Recorder.in_temporary_folder()
        self.interceptors.insert(0, recorder)
        return recorder

    def launch(self, size: int) -> None:
        """``size`` opted-in instances, every other one with a 20 GiB data volume.

        One instance per RunInstances call, as an Auto Scaling group launches them: EC2 pages
        DescribeInstances by reservation, so this is what keeps a page at 1,000 instances.
        """
        ec2 = boto3.client("ec2", region_name=self.region)
        image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
        data_volume: list[BlockDeviceMappingTypeDef] = [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20}}]
        for index in range(size):
            launched = ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                InstanceType="t3.micro",
                BlockDeviceMappings=data_volume if index % 2 == 0 else [],
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Backup", "Value": "true"}]}
                ],
            )
            self.fleet.append(launched["Instances"][0]["InstanceId"])

    def throttle(self, rate: float, seed: int) -> Throttle:
        throttle = Throttle(rate, seed=seed)
        self.interceptors.insert(0, throttle)
        return throttle

    def day(self, number: int, recorder: Recorder | None = None, *, idle_runs: bool = False) -> Day:
        """Day ``number``: the 03:05 planner tick, the workers, the 04:05 retention tick.

        The planner phase is the tick and the region planner's invocation for each task it queued. With a
        recorder, the region planner's first invocation has its HTTP answers recorded (to replay it in a
        fresh process and measure its memory). With ``idle_runs``, one
        more planner tick (04:20) and retention tick (05:05) follow, with nothing left to do: what
        every other tick of the day costs.
        """
        when = FIRST_TICK + timedelta(days=number - 1)
        day = Day(number)
        planning = planner_tick(number)
        day.phases["planner"] = self._measure("planner", lambda: self._plan(planning, recorder))
        day.phases["worker"] = self._measure("worker", self._drain)
        pruning = tick(when + RETENTION_DELAY, dry_run=False)
        day.phases["retention"] = self._measure("retention", lambda: self._prune(pruning))
        if idle_runs:
            idle_planning = tick(when + IDLE_PLANNER_DELAY)
            day.phases["planner idle"] = self._measure("planner idle", lambda: self._plan(idle_planning))
            idle_pruning = tick(when + IDLE_RETENTION_DELAY, dry_run=False)
            day.phases["retention idle"] = self._measure("retention idle", lambda: self._prune(idle_pruning))
        return day

    def exactness(self, days: int) -> Exactness:
        expected = [
            (FIRST_TICK + timedelta(days=day)).strftime("%Y-%m-%dT03:00:00Z")
            for day in range(max(0, days - KEPT_DAYS), days)
        ]
        backups = backups_by_instance(self.region)
        existing = managed_snapshot_ids(self.region)
        referenced = snapshots_of_existing_images(self.region)
        notices = [note for note in self.stack.notifications() if note.event == "backup.failed"]
        return Exactness(
            instances=len(self.fleet),
            with_expected_backups=sum(1 for iid in self.fleet if backups.get(iid) == expected),
            duplicate_amis=sum(len(slots) - len(set(slots)) for slots in backups.values()),
            snapshots_left_behind=len(existing - referenced),
            snapshots_missing=len(referenced - existing),
            dead_letters=len(self.queue.dead_letters),
            failure_notices=len(notices),
        )

    def _measure(self, name: str, run: Callable[[], int]) -> Phase:
        before, aws_before, slept_before = self.counter.tally(), self.timer.seconds, self.clock.slept
        paced_before = self.pacing.waited_s
        started = time.perf_counter()
        invocations = run()
        wall = time.perf_counter() - started
        return Phase(
            name=name,
            tally=self.counter.tally() - before,
            wall_s=wall,
            aws_s=self.timer.seconds - aws_before,
            slept_s=self.clock.slept - slept_before,
            paced_s=self.pacing.waited_s - paced_before,
            invocations=invocations,
            rss_mb=psutil.Process().memory_info().rss / 2**20,
        )

    def _plan(self, event: dict[str, Any], recorder: Recorder | None = None) -> int:
        """The planner tick, then each region task it queued, as the task queue's event source would."""
        tick_function, region_planner = (
            self.functions["PlannerFunction"],
            self.functions["RegionPlannerFunction"],
        )
        _quietly(tick_function.invoke, event, tick_function.context(clock=self.clock.monotonic), False)
        tasks = self.stack.task_messages()
        for index, record in enumerate(tasks):
            task_event = {"Records": [record]}
            recording = recorder is not None and index == 0
            if recorder is not None:
                recorder.recording = recording
                if recording:
                    self.recorded_task = task_event
            try:
                _quietly(
                    region_planner.invoke,
                    task_event,
                    region_planner.context(clock=self.clock.monotonic),
                    recording,
                )
            finally:
                if recorder is not None:
                    recorder.recording = False
        return 1 + len(tasks)

    def _prune(self, event: dict[str, Any]) -> int:
        """The retention tick, then each deletion batch it queued, as the deletion queue's event source would."""
        retention, deleter = self.functions["RetentionFunction"], self.functions["DeleterFunction"]
        _quietly(retention.invoke, event, retention.context(clock=self.clock.monotonic), False)
        batches = self.stack.deletion_messages()
        for record in batches:
            _quietly(
                deleter.invoke, {"Records": [record]}, deleter.context(clock=self.clock.monotonic), False
            )
        return 1 + len(batches)

    def _drain(self) -> int:
        worker = self.functions["WorkerFunction"]
        stats = DeliveryStats()

        def invoke(event: dict[str, Any]) -> Any:
            return _quietly(worker.invoke, event, worker.context(clock=self.clock.monotonic))

        self.queue.deliver(invoke, stats)
        return stats.invocations


def planner_tick(number: int) -> dict[str, Any]:
    """The planner's event on day ``number`` (1-based)."""
    return tick(FIRST_TICK + timedelta(days=number - 1))


def _quietly(call: Callable[..., Any], *args: Any) -> Any:
    """Handlers log JSON lines and metrics to stdout for CloudWatch; the benchmark prints a table."""
    with contextlib.redirect_stdout(io.StringIO()):
        return call(*args)


@contextmanager
def bench_world(worker_concurrency: int = 5, default_retention: str = RETENTION) -> Iterator[World]:
    """A fresh simulated AWS with the stack deployed; nothing here needs an AWS account."""
    logging.getLogger("botocore").setLevel(logging.WARNING)
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, FAKE_CREDENTIALS))
        stack.enter_context(mock_aws())
        stack.enter_context(without_ecs_optimized_amis())
        fidelity = stack.enter_context(real_ec2_semantics())
        clock = stack.enter_context(VirtualTime().for_botocore())
        pacing = Pacing(clock)
        stack.enter_context(mock.patch.object(runtime, "TokenBucket", pacing.bucket))
        moto_stack = create_stack(
            overrides={
                "DefaultRetention": default_retention,
                "LogLevel": "WARNING",
                "WorkerMaxConcurrency": str(worker_concurrency),
            }
        )
        moto_stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
        stack.enter_context(indexed_moto(fidelity, DEFAULT_ACCOUNT_ID, [moto_stack.region]))
        counter = stack.enter_context(counting())
        timer = AwsTimer()
        queue = WorkQueue(moto_stack.work_queue_url, moto_stack.region)
        interceptors: list[Any] = [queue, timer]
        the_wire = stack.enter_context(wire(*interceptors))
        the_wire.interceptors = interceptors  # one list: a throttle added later goes in front
        # The benchmark delivers region tasks and deletion batches itself, to count and record them.
        functions = moto_stack.deploy(SamApp.load(ROOT / "template.yaml"), deliver_tasks=False)
        yield World(
            stack=moto_stack,
            functions=functions,
            fidelity=fidelity,
            counter=counter,
            clock=clock,
            queue=queue,
            timer=timer,
            pacing=pacing,
            interceptors=interceptors,
            worker_concurrency=worker_concurrency,
        )


@dataclass
class Pacing:
    """Retention's delete pacing on the virtual clock (the Runtime is given real ones); its waits."""

    clock: VirtualTime
    waited_s: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.waited_s += max(0.0, seconds)
        self.clock.sleep(seconds)

    def bucket(self, **_: object) -> TokenBucket:
        return TokenBucket(clock=self.clock.monotonic, sleep=self.sleep)
