"""The operator CLI against a deployed stack in moto.

The CLI learns the stack's settings from the deployed PlannerFunction (CloudFormation names it, Lambda
gives its environment), so the stack's functions are registered in moto's CloudFormation and Lambda
with the environment tests/sam_local.py resolves from template.yaml for this moto stack: the values a
real deployment of these parameters would carry.
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
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, create_stack
from tests.sam_local import SamApp

# Lambda refuses reserved variables in a function's configuration; it sets them itself at run time.
RESERVED = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})
# Wide enough that no identifier folds onto a second line: assertions read what a wide terminal shows.
COLUMNS = "300"


def deploy(stack: MotoStack, app: SamApp, stack_name: str = "amikeeper") -> None:
    """Register every function of the template in moto under a CloudFormation stack named ``stack_name``."""
    role = boto3.client("iam", region_name=stack.region).create_role(
        RoleName=f"{stack_name}-functions", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    resources: dict[str, Any] = {}
    for logical_id, function in stack.deploy(app).items():
        variables = {k: v for k, v in function.environment.items() if k not in RESERVED}
        resources[logical_id] = {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": function.function_name,
                "Runtime": "python3.13",
                "Handler": function.handler,
                "Role": role,
                # Never run: the CLI reads the configuration only.
                "Code": {"ZipFile": "def handler(event, context):\n    return None\n"},
                "Environment": {"Variables": variables},
            },
        }
    boto3.client("cloudformation", region_name=stack.region).create_stack(
        StackName=stack_name, TemplateBody=json.dumps({"Resources": resources})
    )


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

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        environment = {"AWS_REGION": self.region, "COLUMNS": COLUMNS} | dict(env or {})
        return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)

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
