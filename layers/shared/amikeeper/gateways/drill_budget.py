"""The restore drills' daily minutes (DrillMinutesPerDay), kept in the stack's DynamoDB table.

A drill reserves its longest possible run (DrillMaxMinutes) before it launches, with one conditional
UpdateItem, so two ticks or two regions can never together overrun the day's minutes; when it ends it
gives back what it did not use. The day is UTC; the items expire by the table's TTL two days later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MEMORY = timedelta(days=2)


class DrillBudget:
    def __init__(self, table_name: str, dynamodb: Callable[[], DynamoDBClient]) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb

    def reserve(self, day: date, minutes: int, limit: int, now: datetime) -> bool:
        """Takes ``minutes`` of the day's ``limit``; False, taking nothing, when they are not left."""
        if minutes > limit:
            return False
        try:
            self._dynamodb().update_item(
                TableName=self._table_name,
                Key={"id": {"S": _key(day)}},
                UpdateExpression="ADD minutes :minutes SET expiration = :expiration",
                ConditionExpression="attribute_not_exists(minutes) OR minutes <= :room",
                ExpressionAttributeValues={
                    ":minutes": {"N": str(minutes)},
                    ":room": {"N": str(limit - minutes)},
                    ":expiration": {"N": str(int((now + MEMORY).timestamp()))},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def give_back(self, day: date, minutes: int) -> None:
        if minutes > 0:
            self._dynamodb().update_item(
                TableName=self._table_name,
                Key={"id": {"S": _key(day)}},
                UpdateExpression="ADD minutes :minutes",
                ExpressionAttributeValues={":minutes": {"N": str(-minutes)}},
            )


def _key(day: date) -> str:
    # Beside the idempotency records and the backup notes, never colliding with either.
    return f"amikeeper:drill-minutes#{day.isoformat()}"
