"""The SQS gateway retries the entries SendMessageBatch refuses, then names what stayed refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from amikeeper.gateways.sqs import ATTEMPTS, EnqueueError, FifoQueue, WorkQueue
from amikeeper.model import RegionTask, WorkItem

SLOT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@dataclass
class RefusingSqs:
    """SendMessageBatch that refuses the entries whose body mentions ``refuse`` the first ``times`` calls."""

    refuse: str
    times: int
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if len(self.calls) > self.times:
            return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}
        failed = [entry for entry in Entries if self.refuse in entry["MessageBody"]]
        return {
            "Failed": [
                {"Id": entry["Id"], "Code": "InternalError", "Message": "try later"} for entry in failed
            ]
        }


def work_item(instance_id: str) -> WorkItem:
    return WorkItem(
        region="eu-west-1",
        instance_id=instance_id,
        image_name=f"amikeeper-{instance_id}",
        description="d",
        no_reboot=True,
        trigger="schedule",
        slot=SLOT,
        policy="default",
        tags={},
    )


def test_an_entry_refused_then_accepted_is_sent_once_more_and_counted() -> None:
    # Given SQS refuses one entry of the batch once
    sqs = RefusingSqs(refuse="i-0000000000000000b", times=1)
    items = [work_item("i-0000000000000000a"), work_item("i-0000000000000000b")]
    # When the work queue sends both / Then both count as sent, and only the refused one was sent again
    assert WorkQueue(sqs, "url").send(items) == 2  # type: ignore[arg-type]
    assert [len(call) for call in sqs.calls] == [2, 1]


def test_an_entry_refused_on_every_attempt_is_named() -> None:
    sqs = RefusingSqs(refuse="i-0000000000000000b", times=ATTEMPTS)
    items = [work_item("i-0000000000000000a"), work_item("i-0000000000000000b")]
    with pytest.raises(EnqueueError, match=r"1 work item\(s\) not queued \(try later\): i-0000000000000000b"):
        WorkQueue(sqs, "url").send(items)  # type: ignore[arg-type]
    assert len(sqs.calls) == ATTEMPTS


def test_a_fifo_message_refused_on_every_attempt_is_returned_with_its_group_and_dedup_id_sent() -> None:
    tasks = [RegionTask(region=region, scheduled_time=SLOT) for region in ("eu-west-1", "us-east-1")]
    sqs = RefusingSqs(refuse="us-east-1", times=ATTEMPTS)
    assert FifoQueue(sqs, "url").send(tasks) == [tasks[1]]  # type: ignore[arg-type]
    [first, *_] = sqs.calls
    assert [(e["MessageGroupId"], e["MessageDeduplicationId"]) for e in first] == [
        ("eu-west-1", "eu-west-1#2026-11-29T03:00:00+00:00"),
        ("us-east-1", "us-east-1#2026-11-29T03:00:00+00:00"),
    ]
