"""Publishes notifications to the stack's topic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amikeeper.notifications import Notification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class Notifier:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, notification: Notification) -> str:
        response = self._client.publish(
            TopicArn=self._topic_arn,
            Subject=notification.subject_line(),
            Message=notification.sns_message(),
            MessageStructure="json",
            MessageAttributes={
                "event": {"DataType": "String", "StringValue": notification.event},
                "severity": {"DataType": "String", "StringValue": notification.severity},
            },
        )
        return response["MessageId"]
