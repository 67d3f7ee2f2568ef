"""Hands work items to the worker queue with SendMessageBatch (10 a call)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING

from amikeeper.work import WorkItem

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

BATCH = 10
ATTEMPTS = 3


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
