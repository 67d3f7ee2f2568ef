"""Disaster-recovery copies in this account (SPEC §9), through the template's functions against moto:
the worker records the destinations, the AMI-state function and retention's catch-up ask for the copies,
the copier makes and follows them, retention keeps them by their own rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from amikeeper import clients
from amikeeper.model import (
    COPIED_PREFIX,
    COPY_OF,
    COPY_TO,
    GONE_SINCE,
    RETAIN,
    SOURCE_ACCOUNT,
    SOURCE_REGION,
    CopyTask,
)
from tests.fixtures.call_counter import CallCounter, counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import tags_of, tick
from tests.fixtures.event_source import EventSource
from tests.fixtures.stack import ACCOUNT, MotoStack, create_stack, managed_images, run_instances
from tests.fixtures.throttling import Attempt, Forward, Throttle, response, simulated_http
from tests.sam_local import ResolvedFunction, SamApp, load_event

ROOT = Path(__file__).resolve().parents[2]
HOME = "eu-west-1"
FRANKFURT, VIRGINIA = "eu-central-1", "us-east-1"
DAY = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
DR = {
    "dr": {
        "retain": "daily=7",
        "copies": [{"region": FRANKFURT, "retain": "last=2"}, {"region": VIRGINIA}],
    }
}


@dataclass
class World:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]

    def back_up(self, when: datetime) -> list[str]:
        """The planner tick at ``when``, the worker drained: the AMIs made (available at once in moto)."""
        before = {image["ImageId"] for image in managed_images(HOME)}
        self.functions["PlannerFunction"].invoke(tick(when))
        EventSource(self.stack, self.functions["WorkerFunction"].invoke).drain()
        return sorted({image["ImageId"] for image in managed_images(HOME)} - before)

    def available(self, image_id: str, event_id: str | None = None) -> dict[str, Any]:
        """The AMI State Change event of a backup becoming available."""
        event = load_event(ROOT / "events" / "ami-state-available.json")
        event["region"] = HOME
        event["resources"] = [f"arn:aws:ec2:{HOME}::image/{image_id}"]
        event["detail"] = event["detail"] | {"ImageId": image_id, "State": "available"}
        event["id"] = event_id or f"state-change-of-{image_id}"
        answer: dict[str, Any] = self.functions["AmiStateFunction"].invoke(event)
        return answer

    def copy(self) -> list[Any]:
        return self.stack.deliver_copies(self.functions["CopierFunction"].invoke)

    def retention(self, when: datetime) -> dict[str, Any]:
        answer: dict[str, Any] = self.functions["RetentionFunction"].invoke(tick(when) | {"dry_run": False})
        return answer


def copies_in(region: str) -> dict[str, dict[str, str]]:
    """This stack's copies in a region: copy id -> tags."""
    return {image["ImageId"]: tags_of(image) for image in managed_images(region) if COPY_OF in tags_of(image)}


def source_tags(image_id: str) -> dict[str, str]:
    [image] = boto3.client("ec2", region_name=HOME).describe_images(ImageIds=[image_id])["Images"]
    return tags_of(image)


@pytest.fixture
def world(aws: Ec2Fidelity, sam_app: SamApp) -> World:
    stack = create_stack(policies=DR, overrides={"CopyRegions": f"{FRANKFURT},{VIRGINIA}"})
    return World(stack, stack.deploy(sam_app))


def test_a_backup_is_copied_once_to_each_destination_with_its_tags(world: World) -> None:
    # Given an instance following the dr policy (copies to Frankfurt, kept last=2, and to Virginia)
    [instance] = run_instances(HOME, tags={"Name": "db-1", "Backup": "dr"}, data_volumes=1)
    # When its backup is made and becomes available, and the event comes twice (EventBridge repeats)
    [source] = world.back_up(DAY)
    assert source_tags(source)[COPY_TO] == f"{FRANKFURT},{VIRGINIA}"
    first = world.available(source)
    world.available(source)  # the same event delivered again
    world.available(source, event_id="a-second-event-for-the-same-ami")
    world.copy()
    # Then each destination holds exactly one copy, tagged by CopyImage as the source's copy
    assert first["copies_queued"] == 2
    [(frankfurt_copy, frankfurt_tags)] = copies_in(FRANKFURT).items()
    [(virginia_copy, virginia_tags)] = copies_in(VIRGINIA).items()
    for tags in (frankfurt_tags, virginia_tags):
        assert tags[COPY_OF] == source
        assert tags[SOURCE_REGION] == HOME
        assert tags[SOURCE_ACCOUNT] == ACCOUNT
        assert tags["amikeeper:instance-id"] == instance
        assert tags["Name"] == "db-1"
        assert COPY_TO not in tags
    # And each copy carries its destination's retention (Virginia has none of its own: the source's)
    assert frankfurt_tags[RETAIN] == "last=2"
    assert virginia_tags[RETAIN] == "daily=7"
    # And the copies' snapshots carry the same tags, set by the same call
    ec2 = boto3.client("ec2", region_name=FRANKFURT)
    [image] = ec2.describe_images(ImageIds=[frankfurt_copy])["Images"]
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    assert len(snapshot_ids) == 2
    for snapshot in ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]:
        assert tags_of(snapshot)[COPY_OF] == source
    # And the source records each completed copy, and nobody is mailed
    recorded = {k: v for k, v in source_tags(source).items() if k.startswith(COPIED_PREFIX)}
    assert recorded == {COPIED_PREFIX + FRANKFURT: frankfurt_copy, COPIED_PREFIX + VIRGINIA: virginia_copy}
    assert world.stack.notifications() == []


def test_a_lost_event_is_caught_up_by_retention_and_a_made_copy_is_never_made_again(world: World) -> None:
    # Given a backup whose AMI-state event never arrived
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    # When retention runs an hour later, and the copier works its queue
    answer = world.retention(DAY + timedelta(hours=1))
    world.copy()
    # Then the run asked for both owed copies and both were made
    assert answer["copies_owed"] == 2 and answer["copies_queued"] == 2
    assert len(copies_in(FRANKFURT)) == 1 and len(copies_in(VIRGINIA)) == 1
    # When later runs come, the last also after the Frankfurt copy has gone (deleted by hand)
    assert world.retention(DAY + timedelta(hours=2))["copies_owed"] == 0
    [frankfurt_copy] = copies_in(FRANKFURT)
    boto3.client("ec2", region_name=FRANKFURT).deregister_image(ImageId=frankfurt_copy)
    later = world.retention(DAY + timedelta(hours=3))
    world.copy()
    # Then nothing is copied again: the source says its copy was made
    assert later["copies_owed"] == 0
    assert copies_in(FRANKFURT) == {}
    assert source_tags(source)[COPIED_PREFIX + FRANKFURT] == frankfurt_copy


def test_copy_retention_follows_the_copys_rules_and_never_the_sources(world: World) -> None:
    # Given four days of backups, each copied (Frankfurt keeps last=2, the source keeps daily=7)
    run_instances(HOME, tags={"Backup": "dr"})
    sources = []
    for day in range(4):
        [source] = world.back_up(DAY + timedelta(days=day))
        world.available(source)
        world.copy()
        sources.append(source)
    # When retention runs after the fourth day
    world.retention(DAY + timedelta(days=3, hours=1))
    # Then Frankfurt keeps the copies of the two newest backups, Virginia all four, the source region all
    assert {tags[COPY_OF] for tags in copies_in(FRANKFURT).values()} == set(sources[2:])
    assert {tags[COPY_OF] for tags in copies_in(VIRGINIA).values()} == set(sources)
    assert {image["ImageId"] for image in managed_images(HOME)} == set(sources)


def test_a_source_deleted_by_retention_leaves_its_copies(aws: Ec2Fidelity, sam_app: SamApp) -> None:
    # Given a policy whose source keeps last=1 but whose Frankfurt copies keep last=3
    policies = {"short": {"retain": "last=1", "copies": [{"region": FRANKFURT, "retain": "last=3"}]}}
    stack = create_stack(policies=policies)
    world = World(stack, stack.deploy(sam_app))
    run_instances(HOME, tags={"Backup": "short"})
    sources = []
    for day in range(3):
        [source] = world.back_up(DAY + timedelta(days=day))
        world.available(source)
        world.copy()
        sources.append(source)
    # When retention deletes the two older sources
    world.retention(DAY + timedelta(days=2, hours=1))
    # Then only the newest source is left, and all three copies are still there
    assert [image["ImageId"] for image in managed_images(HOME)] == [sources[-1]]
    assert {tags[COPY_OF] for tags in copies_in(FRANKFURT).values()} == set(sources)


def test_a_copy_in_use_in_its_destination_is_never_deleted(world: World) -> None:
    # Given three days of copies in Frankfurt (last=2), the oldest launched as an instance there
    run_instances(HOME, tags={"Backup": "dr"})
    for day in range(3):
        [source] = world.back_up(DAY + timedelta(days=day))
        world.available(source)
        world.copy()
    oldest = min(copies_in(FRANKFURT).items(), key=lambda item: item[1]["amikeeper:slot"])[0]
    run_instances(FRANKFURT, tags={"Name": "restored-in-frankfurt"}, image_id=oldest)
    # When retention runs
    answer = world.retention(DAY + timedelta(days=2, hours=1))
    # Then the copy in use stays, reported as kept in use
    assert oldest in copies_in(FRANKFURT)
    frankfurt = next(region for region in answer["regions"] if region["region"] == FRANKFURT)
    assert frankfurt["kept_in_use"] == 1


def test_copies_count_their_instance_gone_only_once_it_is_gone_in_its_own_region(world: World) -> None:
    # Given an instance with two days of copies in Frankfurt, where the instance itself does not run
    [instance] = run_instances(HOME, tags={"Backup": "dr"})
    for day in range(2):
        [source] = world.back_up(DAY + timedelta(days=day))
        world.available(source)
        world.copy()
    # When retention runs while the instance lives in its region
    world.retention(DAY + timedelta(days=1, hours=1))
    # Then no copy is marked as of a gone instance (its grace has not started)
    assert not any(GONE_SINCE in tags for tags in copies_in(FRANKFURT).values())
    # When the instance is terminated and retention runs again
    boto3.client("ec2", region_name=HOME).terminate_instances(InstanceIds=[instance])
    world.retention(DAY + timedelta(days=1, hours=2))
    # Then the newest copy is marked, and starts its own OrphanGraceDays in Frankfurt; both are kept
    newest = max(copies_in(FRANKFURT).items(), key=lambda item: item[1]["amikeeper:slot"])
    assert newest[1][GONE_SINCE] == "2026-11-28T05:05:00Z"
    assert len(copies_in(FRANKFURT)) == 2


class CopyCap:
    """EC2's cap on concurrent copies into a region: the first ``times`` CopyImage attempts are refused."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.refused = 0

    def __call__(self, attempt: Attempt, forward: Forward) -> Any:
        if attempt.key == "ec2:CopyImage" and self.refused < self.times:
            self.refused += 1
            body = (
                "<Response><Errors><Error><Code>ResourceLimitExceeded</Code><Message>You have reached "
                "the maximum number of concurrent AMI copies.</Message></Error></Errors></Response>"
            )
            return response(400, body, {"Content-Type": "text/xml"})
        return forward()


@pytest.fixture
def capped(aws: Ec2Fidelity, sam_app: SamApp) -> Iterator[tuple[World, CopyCap]]:
    cap = CopyCap(times=3)
    with simulated_http(cap):
        stack = create_stack(policies=DR)
        yield World(stack, stack.deploy(sam_app)), cap


def test_copies_wait_behind_ec2s_copy_cap_and_none_is_dropped(capped: tuple[World, CopyCap]) -> None:
    world, cap = capped
    # Given a backup owed two copies while EC2 refuses the next three CopyImage calls for its copy cap
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    # When the copier works its queue (each refusal sends the task back with a delay)
    delays = world.stack.copy_delays()
    answers = world.copy()
    # Then both copies were made in the end, and the refusals were waited out, not failed
    assert cap.refused == 3
    assert len(copies_in(FRANKFURT)) == 1 and len(copies_in(VIRGINIA)) == 1
    assert all(answer["batchItemFailures"] == [] for answer in answers)
    assert delays == [0, 0]
    assert world.stack.notifications() == []


def test_a_pending_copy_is_looked_at_until_available(world: World, aws: Ec2Fidelity) -> None:
    # Given copies that EC2 keeps pending
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    aws.start_pending()
    world.stack.deliver_copies(world.functions["CopierFunction"].invoke, rounds=1, until_empty=False)
    # When the copier looks (the check waits on the queue with a delay) while they are still pending
    waiting = world.stack.copy_delays()
    world.stack.deliver_copies(world.functions["CopierFunction"].invoke, rounds=1, until_empty=False)
    # Then they wait again, and the source records nothing yet
    assert sorted(waiting) == [120, 120]
    assert sorted(world.stack.copy_delays()) == [300, 300]
    assert not any(k.startswith(COPIED_PREFIX) for k in source_tags(source))
    # When EC2 finishes them and the copier looks again
    for region in (FRANKFURT, VIRGINIA):
        [copy_id] = copies_in(region)
        aws.set_image_state(region, copy_id, "available")
    world.copy()
    # Then both are recorded on the source
    assert {k for k in source_tags(source) if k.startswith(COPIED_PREFIX)} == {
        COPIED_PREFIX + FRANKFURT,
        COPIED_PREFIX + VIRGINIA,
    }


def test_a_failed_copy_sends_one_copy_failed_and_the_other_destination_still_copies(
    world: World, aws: Ec2Fidelity
) -> None:
    # Given copies that EC2 starts pending, then fails in Frankfurt and completes in Virginia
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    aws.start_pending()
    world.stack.deliver_copies(world.functions["CopierFunction"].invoke, rounds=1, until_empty=False)
    [frankfurt_copy] = copies_in(FRANKFURT)
    [virginia_copy] = copies_in(VIRGINIA)
    aws.set_image_state(FRANKFURT, frankfurt_copy, "failed", reason="Copy failed: snapshot error")
    aws.set_image_state(VIRGINIA, virginia_copy, "available")
    # When the copier looks at both
    world.copy()
    # Then one copy.failed names the source, the destination and EC2's reason; Virginia's copy is recorded
    [note] = world.stack.notifications()
    assert note.event == "copy.failed" and note.severity == "error"
    assert note.document["destination"] == FRANKFURT
    assert note.document["source_image_id"] == source
    assert "Copy failed: snapshot error" in note.document["reason"]
    assert source_tags(source)[COPIED_PREFIX + VIRGINIA] == virginia_copy
    assert COPIED_PREFIX + FRANKFURT not in source_tags(source)


def test_a_destination_key_that_cannot_be_used_gives_a_copy_failed_naming_it(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given a policy whose Frankfurt copies are to be encrypted with a key that is not there
    policies = {"dr": {"copies": [{"region": FRANKFURT, "kms_key": "alias/missing"}, {"region": VIRGINIA}]}}
    stack = create_stack(policies=policies)
    world = World(stack, stack.deploy(sam_app))
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    # When the backup becomes available and the copier works
    world.available(source)
    world.copy()
    # Then Virginia's copy is made, and Frankfurt's refusal is mailed once, naming the key
    assert len(copies_in(VIRGINIA)) == 1 and copies_in(FRANKFURT) == {}
    events = Counter(note.event for note in world.stack.notifications())
    assert events == {"copy.failed": 1}


@pytest.fixture
def storm(aws: Ec2Fidelity, sam_app: SamApp) -> Iterator[tuple[World, CallCounter]]:
    stack = create_stack(policies=DR)
    stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
    with counting() as counter, simulated_http(Throttle(0.3, seed=11)):
        yield World(stack, stack.deploy(sam_app)), counter


def test_exactly_one_copy_per_source_and_destination_under_throttling_and_duplicates(
    storm: tuple[World, CallCounter],
) -> None:
    world, counter = storm
    # Given six instances, 30% of EC2 attempts throttled
    run_instances(HOME, tags={"Backup": "dr"}, count=6)
    # When two days of backups are made, each announced twice, caught up by retention and copied
    for day in range(2):
        for source in world.back_up(DAY + timedelta(days=day)):
            world.available(source)
            world.available(source, event_id=f"again-{source}")
        world.retention(DAY + timedelta(days=day, hours=1))
        world.copy()
    # Then each destination holds exactly one copy of each of the twelve backups
    sources = {image["ImageId"] for image in managed_images(HOME)}
    for region in (FRANKFURT, VIRGINIA):
        assert sorted(tags[COPY_OF] for tags in copies_in(region).values()) == sorted(sources)
    # And the storm really happened on CopyImage too
    tally = counter.tally()
    assert tally.attempts["ec2:CopyImage"] > tally.calls["ec2:CopyImage"] >= 24


def test_a_task_delivered_again_after_its_copy_completed_makes_no_ec2_copy_call(world: World) -> None:
    # Given a backup whose copies completed
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    world.copy()
    # When an old start task for it arrives again (queued by a catch-up before the copy completed)
    with counting() as counter:
        clients.reset()
        world.functions["CopierFunction"].recycle()  # a fresh container: its clients are counted
        CopyQueueSender(world.stack).start(source, FRANKFURT)
        world.copy()
    # Then the copier sees the source's record of the copy and asks EC2 for nothing more
    assert counter.tally().of("ec2:CopyImage") == 0
    assert counter.tally().of("ec2:DescribeImages") >= 1  # the copier was counted: it read the source
    assert len(copies_in(FRANKFURT)) == 1


def test_a_copy_ec2_no_longer_matches_by_token_is_found_by_its_name(world: World, aws: Ec2Fidelity) -> None:
    # Given a completed copy whose client token EC2 has forgotten (it remembers one for a while only)
    # and a source that lost its record of the copy (a failed CreateTags, say)
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    world.copy()
    [frankfurt_copy] = copies_in(FRANKFURT)
    aws._copy_tokens.clear()
    boto3.client("ec2", region_name=HOME).delete_tags(
        Resources=[source], Tags=[{"Key": COPIED_PREFIX + FRANKFURT}]
    )
    # When the copy is asked for again
    CopyQueueSender(world.stack).start(source, FRANKFURT)
    world.copy()
    # Then EC2 refuses a second AMI of that name, and the copier takes the existing copy as the copy
    assert list(copies_in(FRANKFURT)) == [frankfurt_copy]
    assert source_tags(source)[COPIED_PREFIX + FRANKFURT] == frankfurt_copy
    assert world.stack.notifications() == []


def test_retention_does_not_ask_again_for_a_copy_that_is_still_pending(
    world: World, aws: Ec2Fidelity
) -> None:
    # Given copies EC2 is still making
    run_instances(HOME, tags={"Backup": "dr"})
    [source] = world.back_up(DAY)
    world.available(source)
    aws.start_pending()
    world.stack.deliver_copies(world.functions["CopierFunction"].invoke, rounds=1, until_empty=False)
    # When retention runs
    answer = world.retention(DAY + timedelta(hours=1))
    # Then it sees them in their destinations and asks for nothing
    assert answer["copies_owed"] == 0


@dataclass
class CopyQueueSender:
    stack: MotoStack

    def start(self, source: str, destination: str) -> None:
        task = CopyTask(source_region=HOME, source_image_id=source, destination=destination)
        boto3.client("sqs", region_name=HOME).send_message(
            QueueUrl=self.stack.copy_queue_url, MessageBody=task.to_message()
        )
