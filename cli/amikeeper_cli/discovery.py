"""The deployed stack's settings, read from the stack itself and parsed the way the functions parse them.

CloudFormation DescribeStackResource names the stack's PlannerFunction; Lambda GetFunctionConfiguration
gives its environment, which holds every setting (regions, opt-in tag key, default policy, time zone,
work queue, policies parameter, ...). amikeeper.config.load_settings, the functions' own parser, turns
it into Settings, so the CLI can never read a parameter differently from the stack. Lambda sets
AWS_REGION at run time, not in the function's configuration: it is the region the stack lives in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from amikeeper.config import ConfigError, Settings, load_settings
from amikeeper_cli.errors import BadInput, OperationFailed

if TYPE_CHECKING:
    from amikeeper_cli.aws import Aws

PLANNER_LOGICAL_ID = "PlannerFunction"


def stack_settings(aws: Aws, stack_name: str) -> Settings:
    function_name = _planner_function(aws, stack_name)
    try:
        configuration = aws.lambda_.get_function_configuration(FunctionName=function_name)
    except ClientError as error:
        raise OperationFailed(f"cannot read {function_name}'s configuration: {error}") from None
    environment = dict(configuration.get("Environment", {}).get("Variables", {}))
    environment["AWS_REGION"] = aws.home_region
    try:
        return load_settings(environment)
    except ConfigError as error:
        raise OperationFailed(
            f"stack {stack_name}: {function_name} has a configuration amikeeper cannot use: {error}"
        ) from None


def _planner_function(aws: Aws, stack_name: str) -> str:
    try:
        response = aws.cloudformation.describe_stack_resource(
            StackName=stack_name, LogicalResourceId=PLANNER_LOGICAL_ID
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ValidationError":
            # CloudFormation's answer both for a missing stack and for a stack without that resource.
            raise BadInput(
                f"no amikeeper stack {stack_name!r} in {aws.home_region} "
                f"({error.response['Error'].get('Message', error)}); check --stack and --region"
            ) from None
        raise OperationFailed(f"cannot read stack {stack_name}: {error}") from None
    return response["StackResourceDetail"]["PhysicalResourceId"]
