"""boto3 clients made one way: explicit timeouts and adaptive retries, cached per region.

Adaptive retry mode adds client-side rate limiting on top of exponential back-off, which is what keeps a
10,000-instance run inside EC2's request-rate buckets instead of amplifying a throttling storm.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

MAX_ATTEMPTS = 8

CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="amikeeper",
)


@cache
def ec2(region: str) -> EC2Client:
    return boto3.client("ec2", region_name=region, config=CLIENT_CONFIG)


@cache
def autoscaling(region: str) -> AutoScalingClient:
    return boto3.client("autoscaling", region_name=region, config=CLIENT_CONFIG)


@cache
def sqs(region: str) -> SQSClient:
    return boto3.client("sqs", region_name=region, config=CLIENT_CONFIG)


@cache
def sns(region: str) -> SNSClient:
    return boto3.client("sns", region_name=region, config=CLIENT_CONFIG)


@cache
def ssm(region: str) -> SSMClient:
    return boto3.client("ssm", region_name=region, config=CLIENT_CONFIG)


@cache
def dynamodb(region: str) -> DynamoDBClient:
    return boto3.client("dynamodb", region_name=region, config=CLIENT_CONFIG)


def reset() -> None:
    """Forget cached clients (tests start a fresh moto backend per test)."""
    for factory in (ec2, autoscaling, sqs, sns, ssm, dynamodb):
        factory.cache_clear()
