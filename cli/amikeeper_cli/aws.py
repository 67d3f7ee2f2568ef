"""The operator's AWS access: one boto3 session resolved like the AWS CLI resolves it.

``--profile`` and ``--region`` win; otherwise boto3's usual chain applies (AWS_PROFILE, AWS_REGION,
AWS_DEFAULT_REGION, the config and credentials files, SSO, instance roles). Every client gets the
functions' own botocore Config (amikeeper.clients: timeouts, adaptive retries), because the CLI reads
the same region-wide listings the functions read.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ProfileNotFound

from amikeeper.clients import CLIENT_CONFIG
from amikeeper_cli.errors import BadInput

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient


class Aws:
    def __init__(self, profile: str | None, region: str | None) -> None:
        try:
            self._session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as error:
            raise BadInput(str(error)) from None
        home = self._session.region_name
        if not home:
            raise BadInput("no region: pass --region or set AWS_REGION (the region the stack is deployed in)")
        self.home_region: str = home
        self._ec2: dict[str, EC2Client] = {}

    # One client per service and region for the run: gateways are built per call, clients are not.
    @cached_property
    def cloudformation(self) -> CloudFormationClient:
        return self._session.client("cloudformation", region_name=self.home_region, config=CLIENT_CONFIG)

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._session.client("lambda", region_name=self.home_region, config=CLIENT_CONFIG)

    @cached_property
    def ssm(self) -> SSMClient:
        return self._session.client("ssm", region_name=self.home_region, config=CLIENT_CONFIG)

    @cached_property
    def sqs(self) -> SQSClient:
        return self._session.client("sqs", region_name=self.home_region, config=CLIENT_CONFIG)

    @cached_property
    def ec2_regions(self) -> frozenset[str]:
        """Every region botocore knows EC2 in, from its own data (no call): a typo fails as bad input
        rather than as an endpoint that cannot be reached."""
        partitions = self._session.get_available_partitions()
        return frozenset(
            region
            for partition in partitions
            for region in self._session.get_available_regions("ec2", partition_name=partition)
        )

    def ec2(self, region: str) -> EC2Client:
        if region not in self._ec2:
            self._ec2[region] = self._session.client("ec2", region_name=region, config=CLIENT_CONFIG)
        return self._ec2[region]

    def autoscaling(self, region: str) -> AutoScalingClient:
        return self._session.client("autoscaling", region_name=region, config=CLIENT_CONFIG)
