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

from amikeeper.gateways.ec2 import RootTask
from amikeeper.readiness import Readiness
from amikeeper.readiness import instance_ready as instance_ready  # noqa: PLC0414 (the restore waits on it)

POLL_SECONDS = 10.0
FAILED_TASK_STATES = frozenset({"failed", "failed-detached"})


@dataclass
class Clock:
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


CLOCK = Clock()
# What one look at a restore finds: the drills' rule for an instance, and the same shape for a root task.
Progress = Readiness


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


def root_replaced(task: RootTask) -> Progress:
    if task.state == "succeeded":
        return Progress(done=True)
    if task.state in FAILED_TASK_STATES:
        return Progress(failure=f"replace-root-volume task {task.task_id} {task.state}")
    return Progress(pending=f"replace-root-volume task {task.task_id} ({task.state})")
