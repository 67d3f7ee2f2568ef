"""The EC2 calls of a retention run's happy path, counted at the HTTP layer (SPEC §4, §8).

Deleting a backup is one DeregisterImage with DeleteAssociatedSnapshots: EC2 deletes the AMI's snapshots
in the same call. The per-snapshot DeleteSnapshot path exists only for an SDK without the parameter and
for snapshots EC2 failed to delete; on the happy path it must not run, or it would hide a deregistration
that silently stopped deleting snapshots (the end state alone cannot tell the two apart).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import pytest

from amikeeper import clients
from amikeeper.config import load_settings
from amikeeper.runtime import Runtime
from tests.fixtures.call_counter import counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.retention_fleet import Fleet, day
from tests.fixtures.stack import MotoStack
from tests.sam_local import ResolvedFunction, load_event

# Its scheduled_time is 2026-11-29T04:00:00Z.
RETENTION_TICK = Path(__file__).resolve().parents[2] / "events" / "retention-tick.json"


pytestmark = pytest.mark.usefixtures("without_public_amis")


@pytest.fixture
def retention_fn(functions: dict[str, ResolvedFunction]) -> ResolvedFunction:
    return functions["RetentionFunction"]


@pytest.fixture
def fleet(stack: MotoStack, retention_fn: ResolvedFunction, aws: Ec2Fidelity) -> Fleet:
    runtime = Runtime(load_settings(retention_fn.runtime_environment()))
    return Fleet(stack.region, runtime.stack, runtime.catalog(), aws)


@contextmanager
def recording(operation: str) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every EC2 `operation` call made through clients created while open."""
    requests: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> None:
        requests.append(dict(kwargs["params"]))

    # Installed the way tests/fixtures/call_counter.py installs itself: on every session made from now on.
    event_name = f"before-parameter-build.ec2.{operation}"
    entry = (event_name, record)
    session = boto3._get_default_session()._session
    botocore.handlers.BUILTIN_HANDLERS.append(entry)
    session.register(event_name, record)
    try:
        yield requests
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(entry)
        session.unregister(event_name, record)


def test_each_expired_ami_is_one_deregister_call_that_deletes_its_snapshots(
    fleet: Fleet, retention_fn: ResolvedFunction, stack: MotoStack, functions: dict[str, ResolvedFunction]
) -> None:
    # Given two instances with root and data volumes and four daily backups each, retention last=2
    web = fleet.launch({"Backup:Retain": "last=2"}, data_volumes=1)
    db = fleet.launch({"Backup:Retain": "last=2"}, data_volumes=2)
    backups = {instance: [fleet.back_up(instance, day(n)) for n in range(4)] for instance in (web, db)}
    expired = {image for images in backups.values() for image in images[2:]}
    expired_snapshots = fleet.snapshots_of(expired)
    kept_snapshots = fleet.snapshots_of(image for images in backups.values() for image in images[:2])
    assert len(expired) == 4 and len(expired_snapshots) == 2 * 2 + 2 * 3
    # When the retention function runs its scheduled tick (clients made inside the counted window)
    # (the deleter, which the tick's deletion batch is delivered to, in a fresh container too)
    clients.reset()
    functions["DeleterFunction"].recycle()
    with counting() as counter, recording("DeregisterImage") as deregistrations:
        answer = retention_fn.invoke(load_event(RETENTION_TICK), fresh=True)
    calls = counter.tally()
    # Then the run queued four deletions, and the deleter answers that the four AMIs and their ten
    # snapshots were deleted
    assert answer["regions"][0]["queued"] == 4
    [done] = stack.deletion_answers
    assert done["regions"][0]["deleted"] == 4
    assert done["regions"][0]["snapshots_deleted"] == 10
    # And it made exactly one DeregisterImage per expired AMI, each asking EC2 to delete the snapshots
    assert calls.of("ec2:DeregisterImage") == 4
    assert sorted(request["ImageId"] for request in deregistrations) == sorted(expired)
    assert all(request.get("DeleteAssociatedSnapshots") is True for request in deregistrations)
    # And not a single DeleteSnapshot, not even an attempt
    assert calls.of("ec2:DeleteSnapshot") == 0
    assert calls.attempts.get("ec2:DeleteSnapshot", 0) == 0
    # And every snapshot of the deleted AMIs is gone, while the kept AMIs keep all of theirs
    remaining = set(fleet.snapshots())
    assert not expired_snapshots & remaining
    assert kept_snapshots <= remaining
    assert fleet.image_ids_of(web) | fleet.image_ids_of(db) == set().union(
        *(images[:2] for images in backups.values())
    )
    assert fleet.unreferenced_managed_snapshots() == set()
