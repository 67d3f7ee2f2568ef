"""Hands work items to the worker queue with SendMessageBatch (10 a call), region tasks and deletion
batches to the stack's FIFO queues, copy tasks to the copy queue (with a delay when they are to wait), and
messages that can never become a work item to the dead-letter queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast

from amikeeper.model import WorkItem

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageBatchRequestEntryTypeDef

BATCH = 10
ATTEMPTS = 3
# Message attributes of a message the worker dead-lettered itself (SQS's own redrive adds none).
REASON_ATTRIBUTE = "amikeeper-reason"
ORIGINAL_MESSAGE_ID_ATTRIBUTE = "amikeeper-original-message-id"


class EnqueueError(RuntimeError):
    """Some work items could not be queued even after retries; they are named."""

    def __init__(self, failed: Sequence[str], reason: str) -> None:
        super().__init__(f"{len(failed)} work item(s) not queued ({reason}): {', '.join(failed[:20])}")
        self.failed = tuple(failed)


class WorkQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, items: Iterable[WorkItem]) -> int:
        """Queue every item; entries SQS refuses in a batch are retried, then raised as EnqueueError."""
        sent = 0
        iterator = iter(items)
        while chunk := list(islice(iterator, BATCH)):
            sent += self._send_batch(chunk)
        return sent

    def _send_batch(self, items: list[WorkItem]) -> int:
        refused, reason = _send_batch(
            self._client, self._queue_url, items, lambda item: {"MessageBody": item.to_message()}
        )
        if refused:
            raise EnqueueError([item.instance_id for item in refused], reason)
        return len(items)


class FifoMessage(Protocol):
    """A message for one of the stack's FIFO queues: grouped by region, de-duplicated by its own id."""

    @property
    def region(self) -> str: ...

    @property
    def deduplication_id(self) -> str: ...

    def to_message(self) -> str: ...


MessageT = TypeVar("MessageT", bound=FifoMessage)
T = TypeVar("T")


class FifoQueue:
    """One of the stack's FIFO queues (the planner's region tasks, retention's deletion batches).

    One message group per region, so a region's messages are handled by one invocation at a time (for
    deletions, that keeps a region's delete rate within what one deleter's pacing allows), and a
    deduplication id per message, so a message sent twice within five minutes is delivered once.
    """

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, messages: Sequence[MessageT]) -> list[MessageT]:
        """Queue every message, 10 a call; those SQS refused even after retries."""
        refused: list[MessageT] = []
        for start in range(0, len(messages), BATCH):
            left, _ = _send_batch(
                self._client,
                self._queue_url,
                messages[start : start + BATCH],
                lambda message: {
                    "MessageBody": message.to_message(),
                    "MessageGroupId": message.region,
                    "MessageDeduplicationId": message.deduplication_id,
                },
            )
            refused.extend(left)
        return refused


class Task(Protocol):
    def to_message(self) -> str: ...


TaskT = TypeVar("TaskT", bound=Task)


class DelayQueue(Generic[TaskT]):
    """The copy and drill queues: standard queues whose messages may wait before delivery (SQS DelaySeconds,
    at most 15 minutes), so that a copy or a drill is looked at again later without any function waiting."""

    MAX_DELAY = 900

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, tasks: Sequence[TaskT], delay_seconds: int = 0) -> list[TaskT]:
        """Queue every task, 10 a call, each delivered after the delay; those SQS refused after retries."""
        delay = max(0, min(delay_seconds, self.MAX_DELAY))
        refused: list[TaskT] = []
        for start in range(0, len(tasks), BATCH):
            left, _ = _send_batch(
                self._client,
                self._queue_url,
                tasks[start : start + BATCH],
                lambda task: {"MessageBody": task.to_message(), "DelaySeconds": delay},
            )
            refused.extend(left)
        return refused


def _send_batch(
    client: SQSClient, queue_url: str, messages: Sequence[T], entry: Callable[[T], dict[str, str | int]]
) -> tuple[list[T], str]:
    """One SendMessageBatch of up to 10, the entries SQS refuses retried; what is still refused, and why."""
    pending = {str(index): message for index, message in enumerate(messages)}
    reason = ""
    for _ in range(ATTEMPTS):
        entries = [
            cast("SendMessageBatchRequestEntryTypeDef", {"Id": key, **entry(message)})
            for key, message in pending.items()
        ]
        failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        pending = {refusal["Id"]: pending[refusal["Id"]] for refusal in failed}
        if not pending:
            return [], ""
        reason = failed[0].get("Message", failed[0]["Code"])
    return list(pending.values()), reason


class DeadLetterQueue:
    """The work queue's dead-letter queue, for a message the worker knows can never succeed."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, body: str, *, reason: str, original_message_id: str) -> None:
        """SendMessage of the original body, with why and which message as attributes; boto errors raise."""
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason or "unknown"},
            ORIGINAL_MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": original_message_id},
        }
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=body, MessageAttributes=attributes)
