"""`sam local invoke <Function> -e events/<file>.json` for every function and every one of its events.

Docker is not available here, so tests/sam_local.py does what SAM CLI does: resolve Handler, CodeUri,
layers and environment from template.yaml, import the handler from its folder with the layer on the
path, and invoke it. A wrong handler path, a module missing from the layer or an environment variable
the code needs but the template does not set fails here.

Each events/ file has an expectation below: what the handler answers (the fields that carry meaning) and
what a user can see afterwards (AMIs, the work queue, the notification topic). An events/ file without an
expectation fails, so a new sample event comes with the outcome it demonstrates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures.stack import MotoStack, make_backup, run_instances
from tests.sam_local import ResolvedFunction, SamApp

ROOT = Path(__file__).resolve().parents[2]
APP = SamApp.load(ROOT / "template.yaml")
CASES = [(fid, path) for fid in APP.function_ids() for path in APP.events_for(fid)]
# The sample events name resources in us-east-1 (EC2 events, work items) and the stack's own region.
EVENT_REGIONS = ("us-east-1", "eu-west-1")
# The retention events' scheduled_time is 2026-11-29T04:00:00Z.
RETENTION_DAY = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


# --- what a test can see ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Mentions:
    """A text field that must contain these words (the exact wording may change; its reason may not)."""

    words: tuple[str, ...]

    def __init__(self, *words: str) -> None:
        object.__setattr__(self, "words", words)


@dataclass
class Seeded:
    """What an expectation's `given` put in place before the invocation."""

    kept: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)


@dataclass
class World:
    stack: MotoStack
    seeded: Seeded

    def images(self) -> set[str]:
        """Every AMI this account owns in the regions the events name."""
        return {
            image["ImageId"]
            for region in EVENT_REGIONS
            for image in boto3.client("ec2", region_name=region).describe_images(Owners=["self"])["Images"]
        }

    def queued(self) -> list[dict[str, Any]]:
        return self.stack.work_messages()

    def notified(self) -> list[str]:
        return [note.event for note in self.stack.notifications()]


def assert_matches(actual: Any, expected: Any, where: str = "answer") -> None:
    """`expected` is a sub-shape of `actual`: dicts name the keys that matter, lists match item by item."""
    if isinstance(expected, Mentions):
        assert isinstance(actual, str), f"{where}: {actual!r} is not text"
        missing = [word for word in expected.words if word not in actual]
        assert not missing, f"{where}: {actual!r} does not mention {missing}"
    elif isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{where}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{where}: no {key!r} in {actual!r}"
            assert_matches(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (item, wanted) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(item, wanted, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# --- givens and thens -------------------------------------------------------------------------------
def nothing_seeded(stack: MotoStack) -> Seeded:
    return Seeded()


def three_backups_one_to_keep(stack: MotoStack) -> Seeded:
    """An instance kept to `last=1` with three daily backups before the tick: two have expired."""
    instance = run_instances(stack.region, tags={"Backup": "true", "Backup:Retain": "last=1"})[0]
    newest, *older = [
        make_backup(stack.region, instance, RETENTION_DAY - timedelta(days=n)) for n in range(3)
    ]
    return Seeded(kept={newest}, expired=set(older))


def nothing_made_queued_or_notified(world: World) -> None:
    assert world.images() == set(), "no AMI is made"
    assert world.queued() == [], "no backup is queued"
    assert world.notified() == [], "nobody is notified"


def nothing_made_or_queued(world: World) -> None:
    # Planner and report runs may publish their own summary or report; what they publish is not checked here.
    assert world.images() == set(), "no AMI is made"
    assert world.queued() == [], "no backup is queued"


def copy_failed_only(world: World) -> None:
    assert world.images() == set(), "no AMI is made"
    assert world.notified() == ["copy.failed"]


def restore_failed_only(world: World) -> None:
    assert world.images() == set(), "no AMI is made"
    assert world.notified() == ["restore.failed"]


def every_backup_is_still_there(world: World) -> None:
    assert world.images() == world.seeded.kept | world.seeded.expired
    assert world.queued() == []


def the_expired_backups_are_gone(world: World) -> None:
    assert world.images() == world.seeded.kept
    assert world.queued() == []


@dataclass(frozen=True)
class Expectation:
    answer: Any
    then: Callable[[World], None]
    given: Callable[[MotoStack], Seeded] = nothing_seeded


def ignored_instance(event_file: str, reason: Mentions) -> Expectation:
    detail = json.loads((ROOT / "events" / event_file).read_text())["detail"]
    return Expectation(
        answer={
            "action": "ignored",
            "instance_id": detail["instance-id"],
            "state": detail["state"],
            "image_id": None,
            "message": reason,
        },
        then=nothing_made_queued_or_notified,
    )


def ignored_ami(event_file: str) -> Expectation:
    detail = json.loads((ROOT / "events" / event_file).read_text())["detail"]
    return Expectation(
        answer={
            "action": "ignored",
            "image_id": detail["ImageId"],
            "state": detail["State"],
            "message": Mentions("no longer exists"),
        },
        then=nothing_made_queued_or_notified,
    )


def retention_answer(*, dry_run: bool, deleted: int, queued: int) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "regions": [
            {
                "region": "eu-west-1",
                "error": None,
                "examined": 3,
                "kept": 1,
                "deleted": deleted,
                "queued": queued,
                "errors": 0,
            }
        ],
    }


EXPECTATIONS: dict[str, Expectation] = {
    # A tick hands one task per configured region to the region planner; with no opted-in instance
    # nothing is queued for the worker.
    "planner-tick.json": Expectation(
        answer={"scheduled_time": "2026-11-29T03:00:00+00:00", "regions": ["eu-west-1"]},
        then=nothing_made_or_queued,
    ),
    # A region without opted-in instances: nothing due, nothing queued, nobody notified.
    "region-planner-task.json": Expectation(
        answer={"region": "us-east-1", "due": 0, "enqueued": 0, "invalid": 0, "error": None},
        then=nothing_made_queued_or_notified,
    ),
    # The sample work items name instances this account does not have: gone is not a failure.
    "worker-batch.json": Expectation(answer={"batchItemFailures": []}, then=nothing_made_queued_or_notified),
    "worker-one-item.json": Expectation(
        answer={"batchItemFailures": []}, then=nothing_made_queued_or_notified
    ),
    # Retention over a backup history: the dry run reports the two expired backups and deletes nothing,
    # the tick queues them for the deleter, which deletes them (and their snapshots).
    "retention-dry-run.json": Expectation(
        given=three_backups_one_to_keep,
        answer=retention_answer(dry_run=True, deleted=2, queued=0),
        then=every_backup_is_still_there,
    ),
    "retention-tick.json": Expectation(
        given=three_backups_one_to_keep,
        answer=retention_answer(dry_run=False, deleted=0, queued=2),
        then=the_expired_backups_are_gone,
    ),
    # A batch naming an AMI and a snapshot this account does not have: nothing to delete, no error.
    "deleter-batch.json": Expectation(
        answer={
            "dry_run": False,
            "regions": [
                {"region": "us-east-1", "error": None, "deleted": 0, "orphan_snapshots": 0, "errors": 0}
            ],
        },
        then=nothing_made_queued_or_notified,
    ),
    # A copy of a backup this account does not have: nothing to copy, nothing made, nobody notified.
    "copier-start.json": Expectation(answer={"batchItemFailures": []}, then=nothing_made_queued_or_notified),
    # A vault copy followed without a vault role configured: one copy.failed that says what to set up.
    "copier-check.json": Expectation(answer={"batchItemFailures": []}, then=copy_failed_only),
    # No policy asks for drills and no drill instance is running: nothing swept, nothing started.
    "drills-tick.json": Expectation(
        answer={"swept": [], "started": [], "failed": [], "waiting": [], "read_fleet": False},
        then=nothing_made_queued_or_notified,
    ),
    # A drill instance EC2 never listed, looked at long past its limit: failed, and said so once.
    "drill-checker-look.json": Expectation(answer={"batchItemFailures": []}, then=restore_failed_only),
    # EC2 events for instances and AMIs this account does not have are ignored, each with its reason.
    "instance-state-running.json": ignored_instance(
        "instance-state-running.json", Mentions("running", "no action")
    ),
    "instance-state-shutting-down.json": ignored_instance(
        "instance-state-shutting-down.json", Mentions("no longer exists")
    ),
    "instance-state-stopped.json": ignored_instance(
        "instance-state-stopped.json", Mentions("no longer exists", "nothing to back up")
    ),
    "instance-state-terminated.json": ignored_instance(
        "instance-state-terminated.json", Mentions("no longer exists")
    ),
    "ami-state-available.json": ignored_ami("ami-state-available.json"),
    "ami-state-failed.json": ignored_ami("ami-state-failed.json"),
    # The daily report of an account without opted-in instances reports zero of everything.
    "report-tick.json": Expectation(
        answer={
            "regions": [
                {
                    "region": "eu-west-1",
                    "opted_in": 0,
                    "ok": 0,
                    "violations": 0,
                    "stale_pending": 0,
                    "error": None,
                }
            ]
        },
        then=nothing_made_or_queued,
    ),
}


# --- tests ------------------------------------------------------------------------------------------
def test_every_function_has_at_least_one_event_file() -> None:
    assert {fid for fid, _ in CASES} == set(APP.function_ids())


def test_every_event_file_belongs_to_a_function() -> None:
    assert {path for _, path in CASES} == set((ROOT / "events").glob("*.json"))


def test_every_event_file_has_an_expectation_and_every_expectation_an_event_file() -> None:
    assert set(EXPECTATIONS) == {path.name for path in (ROOT / "events").glob("*.json")}


@pytest.mark.parametrize(("function_id", "event_path"), CASES, ids=[f"{f}:{p.name}" for f, p in CASES])
def test_handler_answers_its_event_like_sam_local_invoke(
    function_id: str, event_path: Path, functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    expectation = EXPECTATIONS.get(event_path.name)
    assert expectation is not None, f"events/{event_path.name} has no entry in EXPECTATIONS: add its outcome"
    # Given the function resolved from the template, one of its events/ files, and what that event needs
    seeded = expectation.given(stack)
    stack.notifications()  # a clean inbox
    event = json.loads(event_path.read_text())
    # When it is invoked as `sam local invoke` would (a cold start: the handler module is imported fresh)
    answer = functions[function_id].invoke(event, fresh=True)
    # Then it answers with JSON (the harness round-trips it) carrying the expected outcome
    assert_matches(answer, expectation.answer)
    # And what a user can see afterwards is what the event should have done
    expectation.then(World(stack, seeded))
