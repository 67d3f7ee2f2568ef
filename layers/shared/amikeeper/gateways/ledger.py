"""A ledger of notices already sent, so that a repeated tick or a persisting problem is not a mail storm.

One conditional PutItem in the stack's idempotency table (partition key ``id``, TTL attribute
``expiration``) answers "is this the first time within the memory window?". DynamoDB's TTL removes
old entries lazily, so an expired entry still present counts as absent; one that expires this very moment
has expired (a daily tick 24 hours later is "the next day").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PREFIX = "notice#"


class NoticeLedger:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    def first_time(self, key: str, now: datetime, memory: timedelta) -> bool:
        """True when ``key`` was not recorded within ``memory`` before ``now`` (and records it).

        If the ledger cannot be reached the answer is True: a duplicate notice is better than a lost one.
        """
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item={
                    "id": {"S": PREFIX + key},
                    "expiration": {"N": str(int((now + memory).timestamp()))},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration <= :now",
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
            )
        except ClientError as error:
            return error.response["Error"]["Code"] != "ConditionalCheckFailedException"
        except BotoCoreError:
            return True
        return True
