"""Waiting for a restore to finish: poll EC2, show progress on stderr, stop at a deadline.

The clock is a module attribute (:data:`CLOCK`) so tests replace it and never really sleep; the poll
interval stays well inside EC2's Describe request rate for one operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rich.console import Console

from amikeeper.gateways.ec2 import InstanceHealth, RootTask

POLL_SECONDS = 10.0
# What a status check reads while it has not decided yet; anything else but `ok` is a failure.
UNDECIDED_CHECKS = frozenset({"initializing", "insufficient-data", "not-applicable"})
FAILED_TASK_STATES = frozenset({"failed", "failed-detached"})
STOPPED_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


@dataclass
class Clock:
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


CLOCK = Clock()


@dataclass(frozen=True)
class Progress:
    """One look at what is awaited: done, failed (with why), or still pending (with what)."""

    done: bool = False
    failure: str | None = None
    pending: str = ""


@dataclass(frozen=True)
class Waited:
    status: Literal["ok", "failed", "timeout"]
    seconds: float
    detail: str = ""


def wait_for(look: Callable[[], Progress], *, what: str, timeout: float) -> Waited:
    clock = CLOCK
    start = clock.monotonic()
    console = Console(stderr=True, highlight=False)
    with console.status(what) as status:
        while True:
            progress = look()
            elapsed = clock.monotonic() - start
            if progress.failure is not None:
                return Waited("failed", elapsed, progress.failure)
            if progress.done:
                return Waited("ok", elapsed)
            if elapsed >= timeout:
                return Waited("timeout", elapsed, progress.pending)
            status.update(f"{what}: waiting for {progress.pending} ({elapsed:.0f}s)")
            clock.sleep(min(POLL_SECONDS, timeout - elapsed))


def instance_ready(instance_id: str, health: InstanceHealth | None) -> Progress:
    """Running with both status checks `ok`; a check that is neither `ok` nor undecided fails it."""
    if health is None:
        return Progress(pending=f"EC2 to list {instance_id}")
    if health.state in STOPPED_STATES:
        return Progress(failure=f"{instance_id} is {health.state}")
    if health.state != "running":
        return Progress(pending=f"{instance_id} to be running (it is {health.state})")
    checks = (
        ("instance", health.instance_check, health.instance_detail),
        ("system", health.system_check, health.system_detail),
    )
    failed = [
        f"{name} status check {check}" + (f" ({detail})" if detail else "")
        for name, check, detail in checks
        if check != "ok" and check not in UNDECIDED_CHECKS
    ]
    if failed:
        return Progress(failure=f"{instance_id}: {'; '.join(failed)}")
    undecided = [f"{name} status check ({check})" for name, check, _ in checks if check != "ok"]
    if undecided:
        return Progress(pending=f"{instance_id}'s {' and '.join(undecided)}")
    return Progress(done=True)


def root_replaced(task: RootTask) -> Progress:
    if task.state == "succeeded":
        return Progress(done=True)
    if task.state in FAILED_TASK_STATES:
        return Progress(failure=f"replace-root-volume task {task.task_id} {task.state}")
    return Progress(pending=f"replace-root-volume task {task.task_id} ({task.state})")
