"""Hands work items to the worker queue with SendMessageBatch (10 a call), region tasks and deletion
batches to the stack's FIFO queues, and messages that can never become a work item to the dead-letter
queue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Protocol, TypeVar

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
        pending = {str(index): item for index, item in enumerate(items)}
        reason = ""
        for _ in range(ATTEMPTS):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": key, "MessageBody": item.to_message()} for key, item in pending.items()
            ]
            response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            failed = response.get("Failed", [])
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if not pending:
                return len(items)
            reason = failed[0].get("Message", failed[0]["Code"])
        raise EnqueueError([item.instance_id for item in pending.values()], reason)


class FifoMessage(Protocol):
    """A message for one of the stack's FIFO queues: grouped by region, de-duplicated by its own id."""

    @property
    def region(self) -> str: ...

    @property
    def deduplication_id(self) -> str: ...

    def to_message(self) -> str: ...


MessageT = TypeVar("MessageT", bound=FifoMessage)


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
            pending = {str(index): message for index, message in enumerate(messages[start : start + BATCH])}
            for _ in range(ATTEMPTS):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {
                        "Id": key,
                        "MessageBody": message.to_message(),
                        "MessageGroupId": message.region,
                        "MessageDeduplicationId": message.deduplication_id,
                    }
                    for key, message in pending.items()
                ]
                response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
                pending = {entry["Id"]: pending[entry["Id"]] for entry in response.get("Failed", [])}
                if not pending:
                    break
            refused.extend(pending.values())
        return refused


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
