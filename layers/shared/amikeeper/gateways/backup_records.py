"""The stack's note of each AMI its worker created, in the stack's DynamoDB table beside the idempotency
records.

EC2 sends an AMI State Change for every AMI of the account, and the event carries no tags. With this
note the AMI-state handler knows one of this stack's backups, and when its slot was, from one GetItem
instead of a DescribeImages per event: EC2's request buckets are what a large fleet runs short of, a
DynamoDB read is not. An AMI without a note (made before the note existed, or whose note could not be
written) is looked up in EC2 as before, so a missing note costs one call and nothing else. Notes expire
by the table's TTL a week after the backup started: an AMI is available or failed long before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOTE_MEMORY = timedelta(days=7)


@dataclass(frozen=True)
class BackupNote:
    image_id: str
    instance_id: str
    backup_time: datetime
    # The keys of the destinations the backup is to be copied to (amikeeper:copy-to), so that the copies
    # can be asked for when it becomes available without reading its tags from EC2.
    copy_to: tuple[str, ...] = ()


class BackupNotes:
    def __init__(self, table_name: str, dynamodb: Callable[[], DynamoDBClient]) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb

    def remember(self, region: str, note: BackupNote, now: datetime) -> None:
        """PutItem of the note; boto errors raise (the caller decides what a missing note costs)."""
        self._dynamodb().put_item(
            TableName=self._table_name,
            Item={
                "id": {"S": _key(region, note.image_id)},
                "instance_id": {"S": note.instance_id},
                "backup_time": {"S": note.backup_time.isoformat()},
                "expiration": {"N": str(int((now + NOTE_MEMORY).timestamp()))},
            }
            | ({"copy_to": {"S": ",".join(note.copy_to)}} if note.copy_to else {}),
        )

    def recall(self, region: str, image_id: str) -> BackupNote | None:
        """The note of this AMI, or None; boto errors raise."""
        item = (
            self._dynamodb()
            .get_item(
                TableName=self._table_name, Key={"id": {"S": _key(region, image_id)}}, ConsistentRead=True
            )
            .get("Item")
        )
        if item is None:
            return None
        return BackupNote(
            image_id=image_id,
            instance_id=item["instance_id"]["S"],
            backup_time=datetime.fromisoformat(item["backup_time"]["S"]),
            copy_to=tuple(key for key in item.get("copy_to", {}).get("S", "").split(",") if key),
        )


def _key(region: str, image_id: str) -> str:
    # Powertools' idempotency records are keyed "<function name>#..."; these can never collide with them.
    return f"amikeeper:backup#{region}#{image_id}"
