"""The work queue of the benchmark: SQS's SendMessageBatch answered at the HTTP layer, kept in memory.

moto's SQS looks at every message of a queue on each send and receive, so 10,000 queued work items
cost minutes of simulated-SQS time that say nothing about amikeeper. The planner's SendMessageBatch
calls still go through boto3 and botocore unchanged (and are counted): this interceptor takes the ones
for the work queue, answers them as SQS does and keeps the messages. :meth:`WorkQueue.deliver` then
plays the Lambda event source mapping: batches of 10, failed items (``batchItemFailures``) back on the
queue with their receive count up, and after ``max_receives`` into the dead-letter list.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from tests.fixtures.stack import ACCOUNT, MAX_RECEIVES
from tests.fixtures.throttling import Attempt, Forward, response

BATCH_SIZE = 10


@dataclass
class Message:
    message_id: str
    body: str
    receives: int = 0


@dataclass
class DeliveryStats:
    invocations: int = 0
    records: int = 0
    redelivered: int = 0


@dataclass
class WorkQueue:
    queue_url: str
    region: str
    max_receives: int = MAX_RECEIVES
    waiting: deque[Message] = field(default_factory=deque)
    dead_letters: list[Message] = field(default_factory=list)
    sent: int = 0

    def __call__(self, attempt: Attempt, forward: Forward) -> AWSResponse:
        if attempt.key != "sqs:SendMessageBatch":
            return forward()
        body = attempt.request.body
        request = json.loads(body if isinstance(body, (str, bytes)) else b"{}")
        if request.get("QueueUrl") != self.queue_url:
            return forward()
        successful = []
        for entry in request["Entries"]:
            message = Message(str(uuid.uuid4()), entry["MessageBody"])
            self.waiting.append(message)
            successful.append(
                {"Id": entry["Id"], "MessageId": message.message_id, "MD5OfMessageBody": _md5(message.body)}
            )
        self.sent += len(successful)
        body = json.dumps({"Successful": successful, "Failed": []})
        return response(200, body, {"Content-Type": "application/x-amz-json-1.0"})

    def deliver(self, invoke: Callable[[dict[str, Any]], Any], stats: DeliveryStats) -> None:
        """Feed the worker until the queue is empty, as the SQS event source mapping does."""
        while self.waiting:
            batch = [self.waiting.popleft() for _ in range(min(BATCH_SIZE, len(self.waiting)))]
            for message in batch:
                message.receives += 1
            answer = invoke({"Records": [self._record(message) for message in batch]})
            stats.invocations += 1
            stats.records += len(batch)
            failed = {entry["itemIdentifier"] for entry in answer["batchItemFailures"]}
            for message in batch:
                if message.message_id not in failed:
                    continue
                stats.redelivered += 1
                if message.receives >= self.max_receives:
                    self.dead_letters.append(message)
                else:
                    self.waiting.append(message)

    def _record(self, message: Message) -> dict[str, Any]:
        queue_name = self.queue_url.rsplit("/", 1)[-1]
        return {
            "messageId": message.message_id,
            "receiptHandle": f"{message.message_id}#{message.receives}",
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receives),
                "SentTimestamp": "0",
                "SenderId": ACCOUNT,
                "ApproximateFirstReceiveTimestamp": "0",
            },
            "messageAttributes": {},
            "md5OfBody": _md5(message.body),
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{self.region}:{ACCOUNT}:{queue_name}",
            "awsRegion": self.region,
        }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SQS's own body checksum
