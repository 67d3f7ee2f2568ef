"""boto3 clients made one way: explicit timeouts and adaptive retries, cached per region.

Adaptive retry mode adds client-side rate limiting on top of exponential back-off, which is what keeps a
10,000-instance run inside EC2's request-rate buckets instead of amplifying a throttling storm.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

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


@cache
def kms(region: str) -> KMSClient:
    return boto3.client("kms", region_name=region, config=CLIENT_CONFIG)


@cache
def sts(region: str) -> STSClient:
    return boto3.client("sts", region_name=region, config=CLIENT_CONFIG)


def ec2_as(region: str, credentials: Credentials) -> EC2Client:
    """An EC2 client of another account (the vault), with credentials of a role assumed there."""
    return boto3.client(
        "ec2",
        region_name=region,
        config=CLIENT_CONFIG,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


def kms_as(region: str, credentials: Credentials) -> KMSClient:
    return boto3.client(
        "kms",
        region_name=region,
        config=CLIENT_CONFIG,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


def autoscaling_as(region: str, credentials: Credentials) -> AutoScalingClient:
    return boto3.client(
        "autoscaling",
        region_name=region,
        config=CLIENT_CONFIG,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str


def reset() -> None:
    """Forget cached clients (tests start a fresh moto backend per test)."""
    for factory in (ec2, autoscaling, sqs, sns, ssm, dynamodb, kms, sts):
        factory.cache_clear()
