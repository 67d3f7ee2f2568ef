"""Whether a launched instance is up: running with both status checks `ok`. Pure.

One rule for the two places that wait for a restored instance: the operator CLI's restore and the
restore drills. A check that is neither `ok` nor still undecided fails it at once, so a drill whose
instance is impaired is reported on the look that sees it, not at the drill's time limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from amikeeper.model import InstanceHealth

# What a status check reads while it has not decided yet; anything else but `ok` is a failure.
UNDECIDED_CHECKS = frozenset({"initializing", "insufficient-data", "not-applicable"})
STOPPED_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


@dataclass(frozen=True)
class Readiness:
    """One look at what is awaited: done, failed (with why), or still pending (with what)."""

    done: bool = False
    failure: str | None = None
    pending: str = ""


def instance_ready(instance_id: str, health: InstanceHealth | None) -> Readiness:
    if health is None:
        return Readiness(pending=f"EC2 to list {instance_id}")
    if health.state in STOPPED_STATES:
        return Readiness(failure=f"{instance_id} is {health.state}")
    if health.state != "running":
        return Readiness(pending=f"{instance_id} to be running (it is {health.state})")
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
        return Readiness(failure=f"{instance_id}: {'; '.join(failed)}")
    undecided = [f"{name} status check ({check})" for name, check, _ in checks if check != "ok"]
    if undecided:
        return Readiness(pending=f"{instance_id}'s {' and '.join(undecided)}")
    return Readiness(done=True)
