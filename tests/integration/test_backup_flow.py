"""Scheduled backups end to end: planner tick → SQS → worker → AMIs, through the template's handlers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from amikeeper import clients
from tests.fixtures.call_counter import counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, make_backup, managed_images, run_instances
from tests.sam_local import ResolvedFunction

TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "test-tick"}
GOLD = {"gold": {"schedule": "every 6h", "retain": "hourly=24 daily=14", "no_reboot": False}}


def tags_of(image: Mapping[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


@pytest.fixture
def fleet(stack: MotoStack) -> dict[str, str]:
    stack.set_policies(GOLD)
    region = stack.region
    return {
        "web": run_instances(region, tags={"Name": "web-1", "Backup": "true", "Team": "a"})[0],
        "db": run_instances(region, tags={"Name": "db-1", "Backup": "gold"}, data_volumes=2)[0],
        "batch": run_instances(
            region, tags={"Name": "batch-1", "Backup": "yes", "Backup:Schedule": "hourly"}
        )[0],
        "dev": run_instances(region, tags={"Name": "dev-1", "Backup": "false"})[0],
        "broken": run_instances(
            region, tags={"Name": "broken-1", "Backup": "true", "Backup:Retain": "forever"}
        )[0],
    }


def plan_tick(functions: dict[str, ResolvedFunction], stack: MotoStack, tick: dict[str, Any] = TICK) -> Any:
    """The planner tick, and what the region planner answered for each region task it handed out."""
    before = len(stack.task_answers)
    functions["PlannerFunction"].invoke(tick)
    return {"regions": stack.task_answers[before:]}


def run_cycle(functions: dict[str, ResolvedFunction], stack: MotoStack, tick: dict[str, Any] = TICK) -> Any:
    result = plan_tick(functions, stack, tick)
    for response in stack.drain(functions["WorkerFunction"].invoke):
        assert response == {"batchItemFailures": []}
    return result


def test_planner_and_worker_back_up_every_due_instance_with_its_policy(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given a fleet with default, named, overridden, opted-out and invalid instances
    # When one planner tick runs and the queue is drained through the worker
    result = run_cycle(functions, stack)
    # Then exactly the three valid opted-in instances have an AMI, for their own slot and policy
    images = {tags_of(image)["amikeeper:instance-id"]: image for image in managed_images(stack.region)}
    assert set(images) == {fleet["web"], fleet["db"], fleet["batch"]}
    slots = {
        iid: (tags_of(image)["amikeeper:policy"], tags_of(image)["amikeeper:slot"])
        for iid, image in images.items()
    }
    assert slots == {
        fleet["web"]: ("default", "2026-11-29T03:00:00Z"),
        fleet["db"]: ("gold", "2026-11-29T06:00:00Z"),
        fleet["batch"]: ("default", "2026-11-29T10:00:00Z"),
    }
    # And every snapshot of the multi-volume instance carries the same tags as its AMI
    db_image = images[fleet["db"]]
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in db_image["BlockDeviceMappings"] if "Ebs" in m]
    assert len(snapshot_ids) == 3
    snapshots = boto3.client("ec2", region_name=stack.region).describe_snapshots(SnapshotIds=snapshot_ids)[
        "Snapshots"
    ]
    for snapshot in snapshots:
        assert tags_of(snapshot) | {} == tags_of(db_image)
    assert tags_of(db_image)["Name"] == "db-1"
    assert result["regions"][0]["enqueued"] == 3
    # And a subscriber got one policy.invalid naming the broken instance, and nothing for the routine rest
    notes = stack.notifications()
    assert [(n.event, n.severity) for n in notes] == [("policy.invalid", "warning")]
    assert notes[0].document["instance_id"] == fleet["broken"]
    assert notes[0].document["tag"] == "Backup:Retain"
    assert notes[0].document["value"] == "forever"


def test_planner_twice_in_one_slot_makes_no_second_ami(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given a completed cycle
    run_cycle(functions, stack)
    stack.notifications()
    # When the planner runs again later in the same slots
    again = run_cycle(functions, stack, TICK | {"scheduled_time": "2026-11-29T10:14:00Z"})
    # Then nothing is due and still one AMI per instance exists
    assert again["regions"][0]["enqueued"] == 0
    assert len(list(managed_images(stack.region))) == 3


def test_twice_delivered_work_item_makes_one_ami(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given the planner queued work, and SQS delivers the same messages twice
    functions["PlannerFunction"].invoke(TICK)
    records = stack.work_messages()
    # When the worker sees both deliveries
    first = functions["WorkerFunction"].invoke({"Records": records})
    second = functions["WorkerFunction"].invoke({"Records": records})
    # Then both succeed and there is still one AMI each
    assert first == second == {"batchItemFailures": []}
    assert len(list(managed_images(stack.region))) == 3


def test_bad_message_is_dead_lettered_alone_and_the_rest_of_the_batch_proceeds(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given a batch with one unparseable body among good work items
    functions["PlannerFunction"].invoke(TICK)
    records = stack.work_messages()
    broken = dict(records[0], messageId="broken-1", body='{"version": 1, "instance_id": "not-an-id"}')
    # When the worker processes it
    response = functions["WorkerFunction"].invoke({"Records": [broken, *records]})
    # Then no message goes back for a retry: the bad one is in the dead-letter queue, every good item is backed up
    assert response == {"batchItemFailures": []}
    sqs = boto3.client("sqs", region_name=stack.region)
    [dead] = sqs.receive_message(QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10)["Messages"]
    assert dead["Body"] == broken["body"]
    assert len(list(managed_images(stack.region))) == 3


def test_instance_terminated_before_its_work_item_is_not_a_failure(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    functions["PlannerFunction"].invoke(TICK)
    boto3.client("ec2", region_name=stack.region).terminate_instances(InstanceIds=[fleet["web"]])
    records = stack.work_messages()
    for record in records:
        body = json.loads(record["body"])
        if body["instance_id"] == fleet["web"]:
            record["body"] = json.dumps(body | {"instance_id": "i-0000000000000dead"})
    assert functions["WorkerFunction"].invoke({"Records": records}) == {"batchItemFailures": []}
    assert fleet["web"] not in {tags_of(i)["amikeeper:instance-id"] for i in managed_images(stack.region)}


def test_failure_is_retried_by_sqs_and_notified_once_on_the_last_attempt(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str], aws: Ec2Fidelity
) -> None:
    # Given CreateImage is refused for every call
    functions["PlannerFunction"].invoke(TICK)
    stack.notifications()
    [record, *_] = stack.work_messages()

    def refuse(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"}}, "CreateImage"
        )

    clients.ec2(stack.region).meta.events.register("before-call.ec2.CreateImage", refuse)
    worker = functions["WorkerFunction"]
    # When SQS delivers it for the 1st..4th time: retried quietly; on the 5th (maxReceiveCount): notified
    for attempt in range(1, 6):
        record["attributes"]["ApproximateReceiveCount"] = str(attempt)
        response = worker.invoke({"Records": [record]})
        assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    notes = stack.notifications()
    assert [(n.event, n.severity) for n in notes] == [("backup.failed", "error")]
    assert "UnauthorizedOperation" in notes[0].document["reason"]
    assert notes[0].document["attempts"] == 5


def test_a_failed_ami_is_retried_in_the_same_slot_under_its_next_name(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str], aws: Ec2Fidelity
) -> None:
    # Given web's 03:00 AMI failed (EC2 keeps its name until retention removes it)
    run_cycle(functions, stack)
    [web_image] = [
        i for i in managed_images(stack.region) if tags_of(i)["amikeeper:instance-id"] == fleet["web"]
    ]
    aws.set_image_state(stack.region, web_image["ImageId"], "failed", reason="Snapshot creation failed")
    # When the planner runs again within the slot and the worker drains the queue
    again = run_cycle(functions, stack, TICK | {"scheduled_time": "2026-11-29T10:15:00Z"})
    # Then web is backed up again under the retry name, and only web was due
    assert again["regions"][0]["enqueued"] == 1
    web = {
        i["Name"]: i["State"]
        for i in managed_images(stack.region)
        if tags_of(i)["amikeeper:instance-id"] == fleet["web"]
    }
    base = web_image["Name"]
    assert web == {base: "failed", f"{base}-r1": "available"}
    # And a third run in the slot finds it covered
    third = run_cycle(functions, stack, TICK | {"scheduled_time": "2026-11-29T10:30:00Z"})
    assert third["regions"][0]["enqueued"] == 0


def test_an_invalid_tag_is_reported_once_a_day_not_on_every_tick(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given the broken instance was reported by the first tick
    run_cycle(functions, stack)
    assert [n.event for n in stack.notifications()] == ["policy.invalid"]
    # When the planner ticks again 15 minutes later / Then nothing goes out (the response still counts it)
    again = run_cycle(functions, stack, TICK | {"scheduled_time": "2026-11-29T10:15:00Z"})
    assert stack.notifications() == []
    assert again["regions"][0]["invalid"] == 1
    # And a day later, still broken, it is reported again
    run_cycle(functions, stack, TICK | {"scheduled_time": "2026-11-30T10:15:00Z"})
    assert [n.event for n in stack.notifications()] == ["policy.invalid"]


def test_a_tick_reads_only_the_amis_that_can_make_an_instance_not_due(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given ten days of older backups of web-1 that retention keeps, and today's cycle done
    for day in range(1, 11):
        make_backup(stack.region, fleet["web"], f"2026-11-{29 - day:02d}T03:00:00+00:00")
    run_cycle(functions, stack)
    # When the planner ticks again in the same slots (a fresh container, its clients counted)
    clients.reset()
    functions["RegionPlannerFunction"].recycle()
    with counting() as counter:
        again = plan_tick(functions, stack, TICK | {"scheduled_time": "2026-11-29T10:14:00Z"})
    # Then nothing is due, and it read the three AMIs of the current slots, none of the ten older ones
    assert again["regions"][0]["enqueued"] == 0
    assert counter.tally().items["ec2:DescribeImages"] == 3


def test_a_stop_backup_taken_after_the_slot_covers_it(
    functions: dict[str, ResolvedFunction], stack: MotoStack, fleet: dict[str, str]
) -> None:
    # Given web-1 (daily@03:00) was backed up on stop at 05:00, after its 03:00 slot
    make_backup(stack.region, fleet["web"], "2026-11-29T05:00:00+00:00", trigger="stop")
    # When the planner ticks at 10:00
    run_cycle(functions, stack)
    # Then web-1 is not due: its one AMI is the stop backup
    backups = [tags_of(image) for image in managed_images(stack.region)]
    web = [tags["amikeeper:trigger"] for tags in backups if tags["amikeeper:instance-id"] == fleet["web"]]
    assert web == ["stop"]
