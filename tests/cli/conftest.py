"""The operator CLI against a deployed stack in moto.

The CLI learns the stack's settings from the deployed PlannerFunction (CloudFormation names it, Lambda
gives its environment), so the stack's functions are registered in moto's CloudFormation and Lambda by
tests/fixtures/deployed.py, which the demo's restore chapter uses as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from amikeeper_cli.main import cli
from tests.fixtures.deployed import deploy as deploy  # noqa: PLC0414 (re-exported for the CLI tests)
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, create_stack
from tests.sam_local import SamApp

# Wide enough that no identifier folds onto a second line: assertions read what a wide terminal shows.
COLUMNS = "300"
# Where the restore-from-copy tests keep their disaster-recovery copies.
FRANKFURT = "eu-central-1"


@pytest.fixture
def deployed(aws: Ec2Fidelity, sam_app: SamApp) -> MotoStack:
    """The default stack (parameters as in template.yaml), deployed in eu-west-1."""
    stack = create_stack()
    deploy(stack, sam_app)
    return stack


@dataclass(frozen=True)
class Operator:
    """Runs the `amikeeper` console script's own object, as an operator whose AWS_REGION is the stack's."""

    region: str

    def run(self, *args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        """``input`` is what the operator types (answers to a confirmation)."""
        environment = {"AWS_REGION": self.region, "COLUMNS": COLUMNS} | dict(env or {})
        return CliRunner().invoke(cli, list(args), env=environment, input=input, catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def operator(deployed: MotoStack) -> Operator:
    return Operator(deployed.region)


def launched_at(region: str, instance_id: str, when: datetime) -> None:
    """Move an instance's LaunchTime back: moto launches everything now, and an instance launched less than
    one schedule interval ago is `new`, never an RPO violation."""
    ec2_backends[DEFAULT_ACCOUNT_ID][region].get_instance(instance_id).launch_time = when


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in ``text``, as cells (rich draws the header with other lines)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


@dataclass(frozen=True)
class Configured:
    """An instance launched with every setting a restore must bring back."""

    instance_id: str
    subnet_id: str
    availability_zone: str
    security_group_ids: tuple[str, ...]
    profile_arn: str
    key_name: str


def configured_instance(region: str, tags: Mapping[str, str], *, data_volumes: int = 0) -> Configured:
    """An m5.large in its own VPC subnet (zone b), two security groups, an instance profile and a key."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    zone = f"{region}b"
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24", AvailabilityZone=zone)["Subnet"]
    groups = tuple(
        ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("app", "ssh")
    )
    profile = boto3.client("iam", region_name=region).create_instance_profile(InstanceProfileName="app")
    ec2.create_key_pair(KeyName="ops")
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    response = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        SubnetId=subnet["SubnetId"],
        SecurityGroupIds=list(groups),
        IamInstanceProfile={"Arn": profile["InstanceProfile"]["Arn"]},
        KeyName="ops",
        EbsOptimized=True,
        BlockDeviceMappings=[
            {"DeviceName": f"/dev/sd{chr(ord('f') + index)}", "Ebs": {"VolumeSize": 20 + 10 * index}}
            for index in range(data_volumes)
        ],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return Configured(
        instance_id=response["Instances"][0]["InstanceId"],
        subnet_id=subnet["SubnetId"],
        availability_zone=zone,
        security_group_ids=groups,
        profile_arn=profile["InstanceProfile"]["Arn"],
        key_name="ops",
    )


@dataclass(frozen=True)
class Network:
    """What the operator prepared in the destination: a subnet, two of its VPC's groups, the key imported."""

    subnet_id: str
    availability_zone: str
    security_group_ids: tuple[str, str]

    def options(self) -> list[str]:
        groups = [option for group in self.security_group_ids for option in ("--security-group", group)]
        return ["--subnet", self.subnet_id, *groups]


def network(region: str, *, key_name: str | None = "ops") -> Network:
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    zone = f"{region}c"
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.3.0/24", AvailabilityZone=zone)["Subnet"][
        "SubnetId"
    ]
    app, ssh = (
        ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("dr-app", "dr-ssh")
    )
    if key_name is not None:
        ec2.create_key_pair(KeyName=key_name)
    return Network(subnet, zone, (app, ssh))
