"""template.yaml: SAM and cfn-lint accept it, it builds, its IAM is least privilege, and the
tests/sam_local.py harness resolves its functions the way `sam local invoke` would."""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import cfnlint.api
import pytest
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tests.sam_local import (
    FakeLambdaContext,
    HandlerNotFoundError,
    ResolvedFunction,
    ResponseNotJsonError,
    SamApp,
    UndeclaredEnvironmentVariableError,
    UnknownFunctionError,
    UnknownParameterError,
    UnresolvedEnvironmentError,
    load_template,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
REGION = "us-east-1"
STACK = "amikeeper"
APP = SamApp.load(TEMPLATE)
FUNCTIONS = APP.function_ids()

CONTRACT_ENVIRONMENT = [
    "AMIKEEPER_STACK_NAME",
    "AMIKEEPER_OPT_IN_TAG_KEY",
    "AMIKEEPER_DEFAULT_SCHEDULE",
    "AMIKEEPER_DEFAULT_RETENTION",
    "AMIKEEPER_PLANNER_RATE_MINUTES",
    "AMIKEEPER_REGIONS",
    "AMIKEEPER_TIME_ZONE",
    "AMIKEEPER_COPY_TAGS",
    "AMIKEEPER_POLICIES_PARAMETER",
    "AMIKEEPER_WORK_QUEUE_URL",
    "AMIKEEPER_PLANNER_TASK_QUEUE_URL",
    "AMIKEEPER_DELETE_QUEUE_URL",
    "AMIKEEPER_DEAD_LETTER_QUEUE_URL",
    "AMIKEEPER_TOPIC_ARN",
    "AMIKEEPER_ORPHAN_GRACE_DAYS",
    "AMIKEEPER_PENDING_TIMEOUT_HOURS",
    "AMIKEEPER_IDEMPOTENCY_TABLE",
    "AMIKEEPER_COPY_QUEUE_URL",
    "AMIKEEPER_VAULT_ROLE_ARN",
    "AMIKEEPER_VAULT_EXTERNAL_ID",
    "AMIKEEPER_COPY_ALLOWANCE_HOURS",
    "AMIKEEPER_VERIFY_SCHEDULE",
    "AMIKEEPER_DRILL_QUEUE_URL",
    "AMIKEEPER_DRILL_SUBNET_IDS",
    "AMIKEEPER_DRILL_SECURITY_GROUP_IDS",
    "AMIKEEPER_DRILL_INSTANCE_TYPE",
    "AMIKEEPER_MAX_CONCURRENT_DRILLS",
    "AMIKEEPER_DRILL_MINUTES_PER_DAY",
    "AMIKEEPER_DRILL_MAX_MINUTES",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
]
CONTRACT_PARAMETER_DEFAULTS: dict[str, Any] = {
    "OptInTagKey": "Backup",
    "DefaultSchedule": "daily@03:00",
    "DefaultRetention": "daily=7 weekly=4 monthly=6",
    "PlannerRate": 15,
    "Regions": "",
    "TimeZone": "UTC",
    "CopyTags": "",
    "NotificationEmail": "",
    "NotificationEmailSeverity": "warning",
    "WorkerMaxConcurrency": 5,
    "OrphanGraceDays": 30,
    "RetentionSchedule": "rate(1 hour)",
    "ReportSchedule": "cron(0 7 * * ? *)",
    "PendingTimeoutHours": 6,
    "CopyRegions": "",
    "VaultRoleArn": "",
    "VaultExternalId": "",
    "CopyAllowanceHours": 6,
    "VerifySchedule": "",
    "DrillSubnetIds": "",
    "DrillSecurityGroupIds": "",
    "DrillInstanceType": "",
    "MaxConcurrentDrills": 2,
    "DrillMinutesPerDay": 240,
    "DrillMaxMinutes": 20,
    "LogRetentionDays": 30,
    "LogLevel": "INFO",
}
IDEMPOTENCY_CALLS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
# The contract's "EC2/AWS calls it makes", as IAM actions (SendMessageBatch is authorised as SendMessage).
CONTRACT_CALLS: dict[str, list[str]] = {
    # The tick only hands one task per region to the planner task queue.
    "PlannerFunction": ["sqs:SendMessage"],
    "RegionPlannerFunction": [
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "sqs:SendMessage",
        "sns:Publish",
        "ssm:GetParameter",
        *IDEMPOTENCY_CALLS,  # notices sent
    ],
    "WorkerFunction": ["ec2:CreateImage", "ec2:CreateTags", "sns:Publish", *IDEMPOTENCY_CALLS],
    "RetentionFunction": [
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeSnapshots",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeImageReferences",
        "autoscaling:DescribeLaunchConfigurations",
        # Beyond the contract's table: retention tags AMIs amikeeper:instance-gone-since.
        "ec2:CreateTags",
        "sqs:SendMessage",  # deletion batches, for the deleter
        "ssm:GetParameter",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,  # notices sent
    ],
    # Retention's deletions, carried out at EC2's pace; each batch's AMIs are read again first.
    "DeleterFunction": [
        "ec2:DescribeImages",
        "ec2:DeregisterImage",
        "ec2:DeleteSnapshot",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,  # notices sent
    ],
    "InstanceStateFunction": [
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "sqs:SendMessage",
        "sns:Publish",
        "ssm:GetParameter",
        *IDEMPOTENCY_CALLS,
    ],
    # A backup that becomes available is handed to the copier for each copy it is owed.
    "AmiStateFunction": ["ec2:DescribeImages", "sqs:SendMessage", "sns:Publish", *IDEMPOTENCY_CALLS],
    # Copies: started, followed with delayed messages to itself, recorded on the source when done.
    "CopierFunction": [
        "ec2:DescribeImages",
        "ec2:DescribeSnapshots",
        "ec2:CopyImage",
        "ec2:CreateTags",
        "sqs:SendMessage",
        "ssm:GetParameter",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,
    ],
    "ReportFunction": [
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "ssm:GetParameter",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,  # events handled, notices sent
    ],
    # Restore drills: the sweeper and the launches (the day's minutes kept in the table), then the looks.
    "DrillFunction": [
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "sqs:SendMessage",
        "ssm:GetParameter",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,
    ],
    "DrillCheckerFunction": [
        "ec2:DescribeInstanceStatus",
        "ec2:TerminateInstances",
        "ec2:CreateTags",
        "sqs:SendMessage",
        "ssm:GetParameter",
        "sns:Publish",
        *IDEMPOTENCY_CALLS,
    ],
}
EC2_WRITES: dict[str, set[str]] = {
    "WorkerFunction": {"ec2:CreateImage", "ec2:CreateTags"},
    "RetentionFunction": {"ec2:CreateTags"},
    "DeleterFunction": {"ec2:DeregisterImage", "ec2:DeleteSnapshot"},
    # Sharing a source with the vault only when a vault role is set (see the vault tests).
    "CopierFunction": {"ec2:CopyImage", "ec2:CreateTags"},
    "DrillFunction": {"ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances"},
    "DrillCheckerFunction": {"ec2:CreateTags", "ec2:TerminateInstances"},
}
DELETE_ACTIONS = ("ec2:DeregisterImage", "ec2:DeleteSnapshot")
AWS_MANAGED_POLICIES_ALLOWED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# What exists only once deployed: `sam local invoke --env-vars` would be given these.
DEPLOYED_VALUES = {
    "AMIKEEPER_POLICIES_PARAMETER": "/amikeeper/amikeeper/policies",
    "AMIKEEPER_WORK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/amikeeper-WorkQueue-7XkP2mQ9vL3a",
    "AMIKEEPER_PLANNER_TASK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/planner-tasks.fifo",
    "AMIKEEPER_DELETE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/deletions.fifo",
    "AMIKEEPER_DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/amikeeper-WorkDeadLetterQueue-7XkP2mQ9vL3a",
    "AMIKEEPER_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:amikeeper-NotificationTopic-Q1w2E3r4T5y6",
    "AMIKEEPER_IDEMPOTENCY_TABLE": "amikeeper-IdempotencyTable-1AB2CD3EF4GH",
    "AMIKEEPER_COPY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/amikeeper-copies",
    "AMIKEEPER_DRILL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/amikeeper-drills",
}


def translate(template: Any, parameter_values: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's SAM transform makes of the template once `sam package` uploaded the code."""
    packaged = copy.deepcopy(template)
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://amikeeper-artifacts/{properties[key].strip('/')}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated: dict[str, Any] = translator.translate(
        packaged,
        parameter_values=parameter_values,
        get_managed_policy_map=lambda: get_bundled_managed_policy_map("aws"),
    )
    return translated


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(APP.template, {"NotificationEmail": "ops@example.com", "Regions": "us-east-1,eu-west-1"})


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(translated: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """Every statement the function's role is granted, inline or through this template's managed policies."""
    resources = translated["Resources"]
    role = resources[f"{function_id}Role"]["Properties"]
    statements = [
        statement
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict):
            statements += managed_policy_document(resources[arn["Ref"]])["Statement"]
    return statements


def managed_policy_document(policy: dict[str, Any]) -> dict[str, Any]:
    """A managed policy's document; one written as a !Sub'd JSON string is resolved for stack STACK."""
    document = policy["Properties"]["PolicyDocument"]
    if isinstance(document, dict) and "Fn::Sub" in document:
        resolved: dict[str, Any] = json.loads(APP.evaluate(document, {"AWS::StackName": STACK}))
        return resolved
    return document  # type: ignore[no-any-return]


def aws_managed_policies(translated: dict[str, Any], function_id: str) -> set[str]:
    role = translated["Resources"][f"{function_id}Role"]["Properties"]
    return {arn for arn in role.get("ManagedPolicyArns", []) if isinstance(arn, str)}


def grants(statement: dict[str, Any], action: str) -> bool:
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action.lower(), pattern.lower()) for pattern in as_list(statement.get("Action", []))
    )


def statements_granting(translated: dict[str, Any], function_id: str, action: str) -> list[dict[str, Any]]:
    return [statement for statement in role_statements(translated, function_id) if grants(statement, action)]


def function_properties(function_id: str) -> dict[str, Any]:
    return APP.function_properties(function_id)


def resources_of_type(resource_type: str) -> dict[str, Any]:
    return {name: resource for name, resource in APP.resources.items() if resource["Type"] == resource_type}


def resolve(function_id: str, overrides: dict[str, str | int] | None = None) -> ResolvedFunction:
    return APP.resolve(
        function_id,
        parameter_overrides={"AWS::StackName": STACK, **(overrides or {})},
        env_vars={"Parameters": DEPLOYED_VALUES},
    )


def sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "PYENV_VERSION": "3.11.7:3.12.1:3.13.0"}


# --- SAM CLI, cfn-lint and sam build ---------------------------------------------------------------


def test_sam_validate_lint_accepts_the_template() -> None:
    if not SAM.exists():
        pytest.skip(f"SAM CLI is not installed at {SAM} (make install creates .venv-sam)")
    # When sam validate --lint runs on the template
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template", str(TEMPLATE)],
        cwd=ROOT,
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it reports the template valid
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_translated_template_has_no_cfn_lint_errors(translated: dict[str, Any]) -> None:
    # Given the CloudFormation the SAM transform produces, with an e-mail address and two regions
    # When cfn-lint checks it
    matches = cfnlint.api.lint(json.dumps(translated), regions=[REGION])
    # Then it finds no error
    errors = [str(match) for match in matches if match.rule.id.startswith("E")]
    assert errors == []


def test_translation_with_every_default_keeps_the_email_subscription_conditional() -> None:
    # Given the defaults (no e-mail address)
    defaults = translate(APP.template, {})
    # Then the subscription is still there, guarded by the condition that CloudFormation evaluates
    subscription = defaults["Resources"]["NotificationEmailSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    has_email = defaults["Conditions"]["HasNotificationEmail"]
    assert APP.evaluate(has_email, {"NotificationEmail": ""}) is False
    assert APP.evaluate(has_email, {"NotificationEmail": "ops@example.com"}) is True


def _build_source(tmp_path: Path) -> Path:
    if (ROOT / "layers" / "shared" / "requirements.txt").exists():
        return ROOT
    # The layer's requirements belong to another file owner; build a copy until they exist.
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(TEMPLATE, source / "template.yaml")
    shutil.copytree(ROOT / "functions", source / "functions")
    shutil.copytree(ROOT / "layers", source / "layers")
    (source / "layers" / "shared" / "requirements.txt").write_text("aws-lambda-powertools[tracer,parser]\n")
    return source


@pytest.mark.slow
def test_sam_build_produces_arm64_python313_artifacts(tmp_path: Path) -> None:
    if not SAM.exists():
        pytest.skip(f"SAM CLI is not installed at {SAM} (make install creates .venv-sam)")
    source = _build_source(tmp_path)
    build_dir = tmp_path / "build"
    # When sam build runs (it installs the layer's requirements for arm64 / Python 3.13)
    result = subprocess.run(
        [
            str(SAM),
            "build",
            "--template",
            str(source / "template.yaml"),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=tmp_path,
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # Then it succeeds, every function ships its app.py and the layer ships amikeeper and arm64 wheels
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Build Succeeded" in result.stdout
    for function_id in FUNCTIONS:
        assert (build_dir / function_id / "app.py").is_file(), function_id
    layer = build_dir / "SharedLayer" / "python"
    assert (layer / "amikeeper" / "__init__.py").is_file()
    assert (layer / "aws_lambda_powertools").is_dir()
    assert list(layer.glob("pydantic_core/*cpython-313-aarch64-linux-gnu.so"))
    built = load_template((build_dir / "template.yaml").read_text())
    assert built["Resources"]["PlannerFunction"]["Properties"]["CodeUri"] == "PlannerFunction"


# --- the functions -------------------------------------------------------------------------------


def test_the_template_declares_the_contract_functions_queue_consumers_copier_and_drill_functions() -> None:
    assert FUNCTIONS == [
        "PlannerFunction",
        "RegionPlannerFunction",
        "WorkerFunction",
        "RetentionFunction",
        "DeleterFunction",
        "CopierFunction",
        "DrillFunction",
        "DrillCheckerFunction",
        "InstanceStateFunction",
        "AmiStateFunction",
        "ReportFunction",
    ]


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_code_uri_has_an_app_py_defining_handler(function_id: str) -> None:
    properties = function_properties(function_id)
    assert properties["Handler"] == "app.handler"
    app_py = ROOT / properties["CodeUri"] / "app.py"
    assert app_py.is_file(), f"{function_id}: {app_py} is missing"
    module = ast.parse(app_py.read_text())
    defined = {node.name for node in module.body if isinstance(node, ast.FunctionDef)} | {
        target.id
        for node in module.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "handler" in defined


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_runs_python313_on_arm64_with_tracing_and_the_shared_layer(function_id: str) -> None:
    properties = function_properties(function_id)
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Tracing"] == "Active"
    assert properties["Layers"] == [{"Ref": "SharedLayer"}]
    assert 3 <= properties["Timeout"] <= 900
    assert properties["MemorySize"] >= 512


def test_the_shared_layer_is_built_for_python313_arm64_from_layers_shared() -> None:
    layer = APP.resources["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_sees_every_environment_variable_of_the_contract(function_id: str) -> None:
    environment = resolve(function_id).environment
    assert set(CONTRACT_ENVIRONMENT) <= set(environment)
    assert environment["AMIKEEPER_STACK_NAME"] == STACK
    assert environment["POWERTOOLS_SERVICE_NAME"] == STACK
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == f"Amikeeper/{STACK}"


def test_parameters_have_the_contract_defaults_and_a_description() -> None:
    parameters = APP.parameters
    assert {name: definition.get("Default") for name, definition in parameters.items()} == (
        CONTRACT_PARAMETER_DEFAULTS
    )
    assert all(definition.get("Description") for definition in parameters.values())


def test_worker_max_concurrency_is_bounded_as_sqs_scaling_allows() -> None:
    definition = APP.parameters["WorkerMaxConcurrency"]
    assert (definition["MinValue"], definition["MaxValue"]) == (2, 1000)


@pytest.mark.parametrize(
    ("parameter", "accepted", "rejected"),
    [
        (
            "Regions",
            ["", "us-east-1", "us-east-1,eu-west-1", "us-gov-west-1, ap-southeast-2"],
            ["us east", ","],
        ),
        ("NotificationEmail", ["", "ops@example.com"], ["ops", "ops@example"]),
        ("TimeZone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"], ["", "Europe Paris"]),
        ("OptInTagKey", ["Backup", "backup-policy"], ["aws:backup", "", "Backup:Policy"]),
        ("RetentionSchedule", ["rate(1 hour)", "cron(15 * * * ? *)"], ["hourly", "rate()"]),
    ],
)
def test_parameter_patterns_accept_real_values_and_reject_mistakes(
    parameter: str, accepted: list[str], rejected: list[str]
) -> None:
    # CloudFormation matches AllowedPattern against the whole value.
    pattern = re.compile(APP.parameters[parameter]["AllowedPattern"])
    assert [value for value in accepted if not pattern.fullmatch(value)] == []
    assert [value for value in rejected if pattern.fullmatch(value)] == []


# --- triggers ------------------------------------------------------------------------------------


def events_of(function_id: str, event_type: str) -> list[dict[str, Any]]:
    events = function_properties(function_id).get("Events", {})
    return [event["Properties"] for event in events.values() if event["Type"] == event_type]


@pytest.mark.parametrize(
    ("function_id", "expression", "input_keys"),
    [
        ("PlannerFunction", "rate(15 minutes)", {"scheduled_time", "execution_id"}),
        ("RetentionFunction", "rate(1 hour)", {"scheduled_time", "execution_id", "dry_run"}),
        ("ReportFunction", "cron(0 7 * * ? *)", {"scheduled_time", "execution_id"}),
    ],
)
def test_scheduled_functions_get_the_scheduler_time_and_execution_id(
    function_id: str, expression: str, input_keys: set[str]
) -> None:
    (schedule,) = events_of(function_id, "ScheduleV2")
    assert APP.evaluate(schedule["ScheduleExpression"]) == expression
    scheduler_input = json.loads(schedule["Input"])
    assert set(scheduler_input) == input_keys
    assert scheduler_input["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    assert scheduler_input["execution_id"] == "<aws.scheduler.execution-id>"
    assert scheduler_input.get("dry_run", False) is False
    # Schedule names are unique per account and region: two stacks must not collide.
    assert APP.evaluate(schedule["Name"], {"AWS::StackName": "one"}) != APP.evaluate(
        schedule["Name"], {"AWS::StackName": "two"}
    )


def test_worker_consumes_the_work_queue_in_batches_of_ten_reporting_item_failures() -> None:
    (sqs,) = events_of("WorkerFunction", "SQS")
    assert sqs["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert sqs["BatchSize"] == 10
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}


def test_work_queue_outlives_six_worker_timeouts_and_redrives_after_five_receives() -> None:
    queue = APP.resources["WorkQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function_properties("WorkerFunction")["Timeout"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert APP.resources["WorkDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


# --- IAM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_each_function_may_make_every_call_of_the_contract(
    translated: dict[str, Any], function_id: str
) -> None:
    missing = [
        action
        for action in CONTRACT_CALLS[function_id]
        if not statements_granting(translated, function_id, action)
    ]
    assert missing == []


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_ec2_write_actions_are_exactly_those_the_function_needs(
    translated: dict[str, Any], function_id: str
) -> None:
    ec2_actions = {
        action
        for statement in role_statements(translated, function_id)
        for action in as_list(statement["Action"])
        if action.lower().startswith("ec2:")
    }
    writes = {action for action in ec2_actions if not action.startswith("ec2:Describe")}
    assert writes == EC2_WRITES.get(function_id, set())


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_only_the_deleter_may_deregister_images_or_delete_snapshots(
    translated: dict[str, Any], function_id: str
) -> None:
    granted = [action for action in DELETE_ACTIONS if statements_granting(translated, function_id, action)]
    assert granted == (list(DELETE_ACTIONS) if function_id == "DeleterFunction" else [])


def test_the_deleter_deletes_only_what_carries_this_stacks_managed_by_tag(translated: dict[str, Any]) -> None:
    for action in DELETE_ACTIONS:
        for statement in statements_granting(translated, "DeleterFunction", action):
            assert statement["Condition"] == {
                "StringEquals": {"aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}}
            }
            resources = [APP.evaluate(resource) for resource in as_list(statement["Resource"])]
            assert resources == ["arn:aws:ec2:*::image/*", "arn:aws:ec2:*::snapshot/*"]


def test_the_worker_may_create_tags_only_inside_create_image(translated: dict[str, Any]) -> None:
    (statement,) = statements_granting(translated, "WorkerFunction", "ec2:CreateTags")
    assert statement["Condition"]["StringEquals"]["ec2:CreateAction"] == "CreateImage"
    # And only tag sets that mark the new AMI and its snapshots as this stack's
    assert statement["Condition"]["StringEquals"]["aws:RequestTag/amikeeper:managed-by"] == {
        "Ref": "AWS::StackName"
    }


def test_retention_may_add_only_its_gone_since_tag_and_only_to_this_stacks_amis(
    translated: dict[str, Any],
) -> None:
    # Were it free to tag, retention could mark any AMI as managed by this stack, then delete it.
    (statement,) = statements_granting(translated, "RetentionFunction", "ec2:CreateTags")
    assert statement["Condition"] == {
        "StringEquals": {"aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["amikeeper:instance-gone-since"]},
        "Null": {"aws:TagKeys": "false"},
    }
    assert APP.evaluate(statement["Resource"]) == "arn:aws:ec2:*::image/*"


def test_create_image_is_limited_to_instances_images_and_snapshots(translated: dict[str, Any]) -> None:
    statements = statements_granting(translated, "WorkerFunction", "ec2:CreateImage")
    resources = sorted(
        APP.evaluate(resource) for statement in statements for resource in as_list(statement["Resource"])
    )
    assert resources == [
        "arn:aws:ec2:*:123456789012:instance/*",
        "arn:aws:ec2:*::image/*",
        "arn:aws:ec2:*::snapshot/*",
    ]


@pytest.mark.parametrize(
    "function_id", [fid for fid in FUNCTIONS if "ssm:GetParameter" in CONTRACT_CALLS[fid]]
)
def test_policy_readers_may_read_exactly_the_policies_parameter(
    translated: dict[str, Any], function_id: str
) -> None:
    stack = {"AWS::StackName": STACK}
    name = APP.evaluate(APP.resources["PoliciesParameter"]["Properties"]["Name"], stack)
    (statement,) = statements_granting(translated, function_id, "ssm:GetParameter")
    assert APP.evaluate(statement["Resource"], stack) == f"arn:aws:ssm:{REGION}:123456789012:parameter{name}"


def test_no_function_may_invoke_a_function(translated: dict[str, Any]) -> None:
    # Long work rides on the stack's queues: nothing hands work to a new invocation of itself.
    assert [fid for fid in FUNCTIONS if statements_granting(translated, fid, "lambda:InvokeFunction")] == []


def test_the_planner_tick_may_only_queue_region_tasks_and_record_its_failures(
    translated: dict[str, Any],
) -> None:
    statements = statements_granting(translated, "PlannerFunction", "sqs:SendMessage")
    queues = sorted(str(statement["Resource"]) for statement in statements)
    assert len(queues) == 2
    assert "FailedInvocationsQueue" in queues[0] and "PlannerTaskQueue" in queues[1]
    granted = {
        action
        for statement in role_statements(translated, "PlannerFunction")
        for action in as_list(statement["Action"])
    }
    assert not [action for action in granted if action.startswith(("ec2:", "sns:", "ssm:", "dynamodb:"))]


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_no_statement_grants_a_whole_service_and_unscoped_ones_only_describe(
    translated: dict[str, Any], function_id: str
) -> None:
    for statement in role_statements(translated, function_id):
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = as_list(statement["Action"])
        assert not [action for action in actions if action == "*" or action.endswith(":*")]
        if statement.get("Resource") == "*" or statement.get("Resource") == ["*"]:
            assert all(action.split(":", 1)[1].startswith("Describe") for action in actions), actions
    assert aws_managed_policies(translated, function_id) <= AWS_MANAGED_POLICIES_ALLOWED


@pytest.mark.parametrize("function_id", [fid for fid in FUNCTIONS if "sns:Publish" in CONTRACT_CALLS[fid]])
def test_every_publisher_may_use_the_topic_key_through_sns_only(
    translated: dict[str, Any], function_id: str
) -> None:
    assert statements_granting(translated, function_id, "sns:Publish")
    (statement,) = statements_granting(translated, function_id, "kms:GenerateDataKey")
    assert statement["Resource"] == {"Fn::GetAtt": ["NotificationKey", "Arn"]}
    via_service = statement["Condition"]["StringEquals"]["kms:ViaService"]
    assert APP.evaluate(via_service, {"AWS::URLSuffix": "amazonaws.com"}) == "sns.us-east-1.amazonaws.com"


# --- encryption, logs, alarms, outputs -----------------------------------------------------------


def test_queues_topic_and_table_are_encrypted() -> None:
    for queue in ("WorkQueue", "WorkDeadLetterQueue"):
        assert APP.resources[queue]["Properties"]["SqsManagedSseEnabled"] is True
    assert APP.resources["NotificationTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    assert APP.resources["NotificationKey"]["Properties"]["EnableKeyRotation"] is True
    assert APP.resources["IdempotencyTable"]["Properties"]["SSESpecification"] == {"SSEEnabled": True}


def test_cloudwatch_alarms_may_use_the_topic_key() -> None:
    # Alarms cannot publish to a topic encrypted with the AWS managed key alias/aws/sns.
    statements = APP.resources["NotificationKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_logs_to_its_own_log_group_with_the_retention_parameter(function_id: str) -> None:
    properties = function_properties(function_id)
    log_group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = APP.resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    function_name = resolve(function_id).function_name
    assert APP.evaluate(log_group["Properties"]["LogGroupName"], {"AWS::StackName": STACK}) == (
        f"/aws/lambda/{function_name}"
    )
    assert properties["LoggingConfig"]["LogFormat"] == "JSON"


def test_the_policies_parameter_starts_empty_and_tells_operators_how_to_edit_it() -> None:
    parameter = APP.resources["PoliciesParameter"]["Properties"]
    assert parameter["Type"] == "String"
    assert parameter["Value"] == "{}"
    assert "gold" in parameter["Description"] and "put-parameter" in parameter["Description"]
    assert APP.evaluate(parameter["Name"], {"AWS::StackName": STACK}) == "/amikeeper/amikeeper/policies"


def test_idempotency_table_matches_powertools_idempotency_defaults() -> None:
    table = APP.resources["IdempotencyTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_alarms_publish_to_the_topic_on_dead_letters_worker_errors_and_rpo_violations() -> None:
    alarms = resources_of_type("AWS::CloudWatch::Alarm")
    assert all(
        alarm["Properties"]["AlarmActions"] == [{"Ref": "NotificationTopic"}] for alarm in alarms.values()
    )
    watched = {
        (
            json.dumps(alarm["Properties"]["Namespace"], sort_keys=True),
            alarm["Properties"]["MetricName"],
            json.dumps(alarm["Properties"]["Dimensions"], sort_keys=True),
        )
        for alarm in alarms.values()
        if alarm["Properties"]["Threshold"] == 0
        and alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    }
    expected = [
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            {"Fn::GetAtt": ["WorkDeadLetterQueue", "QueueName"]},
        ),
        ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "WorkerFunction"}),
        (
            {"Fn::Sub": "Amikeeper/${AWS::StackName}"},
            "RpoViolations",
            "service",
            {"Ref": "AWS::StackName"},
        ),
    ]
    for namespace, metric, dimension, value in expected:
        assert (
            json.dumps(namespace, sort_keys=True),
            metric,
            json.dumps([{"Name": dimension, "Value": value}], sort_keys=True),
        ) in watched


def test_the_dashboard_body_is_json_showing_the_contract_metrics() -> None:
    body_template, _ = APP.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = json.loads(re.sub(r"\$\{[^}]*\}", "placeholder", body_template))
    shown = {metric[1] for widget in body["widgets"] for metric in widget["properties"]["metrics"]}
    assert {
        "BackupsRequested",
        "BackupsCompleted",
        "BackupsFailed",
        "AmisDeleted",
        "SnapshotsDeleted",
        "RpoViolations",
        "ApproximateNumberOfMessagesVisible",
    } <= shown


def test_outputs_name_the_topic_queues_parameter_and_every_function() -> None:
    outputs = {name: output["Value"] for name, output in APP.template["Outputs"].items()}
    assert outputs["NotificationTopicArn"] == {"Ref": "NotificationTopic"}
    assert outputs["WorkQueueUrl"] == {"Ref": "WorkQueue"}
    assert outputs["WorkDeadLetterQueueUrl"] == {"Ref": "WorkDeadLetterQueue"}
    assert outputs["PoliciesParameterName"] == {"Ref": "PoliciesParameter"}
    for function_id in FUNCTIONS:
        assert outputs[f"{function_id}Name"] == {"Ref": function_id}


# --- the sam_local harness, on template.yaml -----------------------------------------------------


def test_harness_resolves_handler_code_and_layer_folders() -> None:
    planner = resolve("PlannerFunction")
    assert planner.handler == "app.handler"
    assert planner.code_dir == ROOT / "functions" / "planner"
    assert planner.layer_dirs == (ROOT / "layers" / "shared",)
    assert (planner.layer_dirs[0] / "amikeeper" / "__init__.py").is_file()
    assert (planner.memory_mb, planner.timeout_s) == (512, 60)


def test_harness_resolves_parameters_from_their_defaults_like_sam_local() -> None:
    # Given no override but SAM CLI's local stack name
    worker = APP.resolve("WorkerFunction", env_vars={"Parameters": DEPLOYED_VALUES})
    # Then parameter defaults and pseudo parameters are filled in, numbers as strings
    assert worker.environment["AMIKEEPER_STACK_NAME"] == "local"
    assert worker.function_name == "local-worker"
    assert worker.environment["AMIKEEPER_PLANNER_RATE_MINUTES"] == "15"
    assert worker.environment["AMIKEEPER_DEFAULT_RETENTION"] == "daily=7 weekly=4 monthly=6"
    assert worker.environment["AMIKEEPER_REGIONS"] == ""
    assert worker.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert worker.region == REGION


def test_harness_applies_parameter_overrides_and_pseudo_parameters() -> None:
    # When parameters and pseudo parameters are overridden like --parameter-overrides
    report = resolve(
        "ReportFunction",
        {"AWS::StackName": "prod", "AWS::Region": "eu-west-1", "PlannerRate": 30, "LogLevel": "DEBUG"},
    )
    # Then the environment, the function name and the region follow
    assert report.environment["AMIKEEPER_STACK_NAME"] == "prod"
    assert report.environment["AMIKEEPER_PLANNER_RATE_MINUTES"] == "30"
    assert report.function_name == "prod-report"
    runtime = report.runtime_environment()
    assert (runtime["AWS_REGION"], runtime["AWS_DEFAULT_REGION"]) == ("eu-west-1", "eu-west-1")
    assert runtime["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"
    assert runtime["AWS_LAMBDA_FUNCTION_NAME"] == "prod-report"
    assert runtime["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/prod-report"
    assert runtime["AWS_SAM_LOCAL"] == "true"


def test_harness_names_every_variable_that_exists_only_once_deployed() -> None:
    with pytest.raises(UnresolvedEnvironmentError) as raised:
        APP.resolve("PlannerFunction")
    assert raised.value.variables == sorted(DEPLOYED_VALUES)
    assert "Ref WorkQueue of type AWS::SQS::Queue" in str(raised.value)


def test_harness_env_vars_for_one_function_win_over_those_for_every_function() -> None:
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/other"
    env_vars = {"Parameters": DEPLOYED_VALUES, "InstanceStateFunction": {"AMIKEEPER_WORK_QUEUE_URL": queue}}
    instance_state = APP.resolve("InstanceStateFunction", env_vars=env_vars)
    planner = APP.resolve("PlannerFunction", env_vars=env_vars)
    assert instance_state.environment["AMIKEEPER_WORK_QUEUE_URL"] == queue
    assert planner.environment["AMIKEEPER_WORK_QUEUE_URL"] == DEPLOYED_VALUES["AMIKEEPER_WORK_QUEUE_URL"]


def test_harness_env_vars_may_set_runtime_switches_and_aws_region() -> None:
    env_vars = {
        "Parameters": {**DEPLOYED_VALUES, "AWS_REGION": "ap-southeast-2", "POWERTOOLS_TRACE_DISABLED": "1"}
    }
    ami_state = APP.resolve("AmiStateFunction", env_vars=env_vars)
    assert ami_state.region == "ap-southeast-2"
    assert ami_state.runtime_environment()["POWERTOOLS_TRACE_DISABLED"] == "1"


def test_harness_rejects_a_misspelt_variable_or_parameter_or_function() -> None:
    with pytest.raises(UndeclaredEnvironmentVariableError, match=r"AMIKEEPER_WORK_QUEUE\b"):
        APP.resolve(
            "PlannerFunction", env_vars={"Parameters": {**DEPLOYED_VALUES, "AMIKEEPER_WORK_QUEUE": "x"}}
        )
    with pytest.raises(UnknownParameterError, match="PlannerRateMinutes"):
        APP.resolve("PlannerFunction", parameter_overrides={"PlannerRateMinutes": 5})
    with pytest.raises(UnknownFunctionError, match="'Planner' is not"):
        APP.resolve("Planner")


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_harness_finds_the_events_of_each_function_by_prefix(function_id: str) -> None:
    prefix = Path(function_properties(function_id)["CodeUri"]).name.replace("_", "-") + "-"
    events = APP.events_for(function_id)
    assert events
    assert all(event.name.startswith(prefix) and event.parent == ROOT / "events" for event in events)


# --- the sam_local harness, invoking a probe function ---------------------------------------------

PROBE_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: python3.13
    Handler: app.handler
    Timeout: 5
    Layers: [!Ref ProbeLayer]
    Environment:
      Variables:
        PROBE_GREETING: !Sub "${Greeting} from ${AWS::StackName}"
Resources:
  ProbeLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer
  FirstProbe:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: first/
  SecondProbe:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: second/
  BrokenProbe:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: second/
      Handler: app.missing
"""
PROBE_APP = """
import os
import probe_layer

IMPORTED_WITH = os.environ["PROBE_GREETING"]
INVOCATIONS = []


def handler(event, context):
    INVOCATIONS.append(event)
    if event.get("return_a_set"):
        return {1, 2}
    return {
        "who": __file__.split(os.sep)[-2],
        "event": event,
        "imported_with": IMPORTED_WITH,
        "greeting": os.environ["PROBE_GREETING"],
        "layer": probe_layer.NAME,
        "invocations_in_this_container": len(INVOCATIONS),
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


@pytest.fixture
def probe_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SamApp]:
    (tmp_path / "template.yaml").write_text(PROBE_TEMPLATE)
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "probe_layer.py").write_text('NAME = "probe layer"\n')
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(textwrap.dedent(PROBE_APP))
    monkeypatch.delenv("PROBE_GREETING", raising=False)
    yield SamApp.load(tmp_path / "template.yaml")
    sys.modules.pop("probe_layer", None)


def test_invoke_cold_starts_once_then_stays_warm_until_a_fresh_container(probe_app: SamApp) -> None:
    probe = probe_app.resolve("FirstProbe", parameter_overrides={"Greeting": "hi"})
    # When the function is invoked twice, then once more in a fresh container
    first = probe.invoke({"n": 1})
    second = probe.invoke({"n": 2})
    third = probe.invoke({"n": 3}, fresh=True)
    # Then module state survives warm invocations only, and imports saw the function's environment
    assert [first["invocations_in_this_container"], second["invocations_in_this_container"]] == [1, 2]
    assert third["invocations_in_this_container"] == 1
    assert probe.cold_starts == 2
    assert first["imported_with"] == first["greeting"] == "hi from local"
    assert first["layer"] == "probe layer"
    assert first["event"] == {"n": 1}
    assert first["function_name"] == "FirstProbe"
    assert 0 < first["remaining_ms"] <= 5000


def test_invoke_restores_the_environment_and_import_path(
    probe_app: SamApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    path_before = list(sys.path)
    probe_app.resolve("FirstProbe").invoke({})
    assert "PROBE_GREETING" not in os.environ
    assert os.environ["AWS_REGION"] == "sa-east-1"
    assert sys.path == path_before


def test_functions_with_the_same_app_py_do_not_share_a_module(probe_app: SamApp) -> None:
    # Given two functions whose handlers are both app.py, in different folders
    first = probe_app.resolve("FirstProbe")
    second = probe_app.resolve("SecondProbe")
    # When both are invoked
    first_result = first.invoke({})
    second_result = second.invoke({})
    # Then each ran its own module, with its own state
    assert (first_result["who"], second_result["who"]) == ("first", "second")
    assert second_result["invocations_in_this_container"] == 1


def test_invoke_reports_a_handler_that_does_not_exist(probe_app: SamApp) -> None:
    with pytest.raises(HandlerNotFoundError, match="no callable 'missing'"):
        probe_app.resolve("BrokenProbe").invoke({})


def test_invoke_fails_like_lambda_on_a_response_that_is_not_json(probe_app: SamApp) -> None:
    with pytest.raises(ResponseNotJsonError, match="FirstProbe returned set"):
        probe_app.resolve("FirstProbe").invoke({"return_a_set": True})


def test_context_counts_the_remaining_time_down_on_its_clock(probe_app: SamApp) -> None:
    now = [100.0]
    context = probe_app.resolve("FirstProbe").context(budget_ms=2_000, clock=lambda: now[0])
    assert isinstance(context, FakeLambdaContext)
    assert context.get_remaining_time_in_millis() == 2_000
    now[0] += 1.5
    assert context.get_remaining_time_in_millis() == 500
    now[0] += 10
    assert context.get_remaining_time_in_millis() == 0
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:FirstProbe"
    assert context.memory_limit_in_mb == "128"


# --- copies (SPEC §9) ----------------------------------------------------------------------------------
def vault_policy(translated: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = translated["Resources"][logical_id]
    return resource


def test_the_copier_copies_and_tags_only_in_the_listed_copy_regions(translated: dict[str, Any]) -> None:
    for action in ("ec2:CopyImage", "ec2:CreateTags"):
        copying = [
            s
            for s in statements_granting(translated, "CopierFunction", action)
            if "ec2:CreateAction" in s.get("Condition", {}).get("StringEquals", {})
            or action == "ec2:CopyImage"
        ]
        assert copying, action
        for statement in copying:
            assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"] == {
                "Fn::Split": [",", {"Ref": "CopyRegions"}]
            }


def test_the_copier_tags_copies_only_inside_copy_image_and_sources_only_with_their_copy_record(
    translated: dict[str, Any],
) -> None:
    tagging = statements_granting(translated, "CopierFunction", "ec2:CreateTags")
    inside_copy = [s for s in tagging if "ec2:CreateAction" in s["Condition"].get("StringEquals", {})]
    records = [s for s in tagging if s not in inside_copy]
    assert [s["Condition"]["StringEquals"]["ec2:CreateAction"] for s in inside_copy] == ["CopyImage"]
    assert inside_copy[0]["Condition"]["StringEquals"]["aws:RequestTag/amikeeper:managed-by"] == {
        "Ref": "AWS::StackName"
    }
    [record] = records
    assert record["Condition"]["StringEquals"] == {
        "aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}
    }
    assert record["Condition"]["ForAllValues:StringLike"] == {"aws:TagKeys": ["amikeeper:copied:*"]}


def test_the_vault_role_may_be_assumed_only_when_configured_and_only_that_role(
    translated: dict[str, Any],
) -> None:
    assume = vault_policy(translated, "VaultRoleAssumePolicy")
    assert assume["Condition"] == "HasVaultRole"
    [statement] = assume["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole" and statement["Resource"] == {"Ref": "VaultRoleArn"}
    assert {role["Ref"] for role in assume["Properties"]["Roles"]} == {
        "CopierFunctionRole",
        "RetentionFunctionRole",
        "DeleterFunctionRole",
    }
    assert not any(
        grants(s, "sts:AssumeRole") for fid in FUNCTIONS for s in role_statements(translated, fid)
    ), "no function may assume a role through its own policies"


def test_only_the_copier_may_share_and_only_this_stacks_backups_with_a_vault(
    translated: dict[str, Any],
) -> None:
    share = vault_policy(translated, "CopierShareWithVaultPolicy")
    assert share["Condition"] == "HasVaultRole"
    assert share["Properties"]["Roles"] == [{"Ref": "CopierFunctionRole"}]
    [sharing] = [
        s
        for s in share["Properties"]["PolicyDocument"]["Statement"]
        if "ec2:ModifyImageAttribute" in s["Action"]
    ]
    assert sharing["Condition"]["StringEquals"] == {
        "aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}
    }
    for function_id in FUNCTIONS:
        assert not statements_granting(translated, function_id, "ec2:ModifyImageAttribute")


# --- restore drills ---------------------------------------------------------------------------------


def test_drills_launch_only_this_stacks_backups_into_the_drill_subnets_and_groups_tagged_as_drills(
    translated: dict[str, Any],
) -> None:
    launching = statements_granting(translated, "DrillFunction", "ec2:RunInstances")
    by_resource = {str(s["Resource"]): s.get("Condition", {}) for s in launching}
    conditions = [c for c in by_resource.values() if c]
    # Then the AMI and its snapshots must be this stack's backups
    assert {"StringEquals": {"aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}}} in conditions
    # And the subnet and the group must be the configured drill ones
    assert {"StringEquals": {"ec2:SubnetID": {"Fn::Split": [",", {"Ref": "DrillSubnetIds"}]}}} in conditions
    assert {
        "StringEquals": {"ec2:SecurityGroupID": {"Fn::Split": [",", {"Ref": "DrillSecurityGroupIds"}]}}
    } in conditions
    # And the instance must be tagged as this stack's drill as it is launched
    assert {"StringEquals": {"aws:RequestTag/amikeeper:drill": {"Ref": "AWS::StackName"}}} in conditions
    # And no other function may launch anything
    for function_id in FUNCTIONS:
        if function_id != "DrillFunction":
            assert not statements_granting(translated, function_id, "ec2:RunInstances"), function_id


def test_drills_terminate_only_instances_tagged_as_this_stacks_drills(translated: dict[str, Any]) -> None:
    for function_id in FUNCTIONS:
        terminating = statements_granting(translated, function_id, "ec2:TerminateInstances")
        if function_id not in ("DrillFunction", "DrillCheckerFunction"):
            assert not terminating, function_id
            continue
        [statement] = terminating
        assert statement["Condition"] == {
            "StringEquals": {"aws:ResourceTag/amikeeper:drill": {"Ref": "AWS::StackName"}}
        }


def test_drills_tag_instances_only_at_launch_and_backups_only_with_their_outcome(
    translated: dict[str, Any],
) -> None:
    tagging = statements_granting(translated, "DrillFunction", "ec2:CreateTags")
    at_launch = [s for s in tagging if "ec2:CreateAction" in s["Condition"].get("StringEquals", {})]
    [outcome] = [s for s in tagging if s not in at_launch]
    assert [s["Condition"]["StringEquals"]["ec2:CreateAction"] for s in at_launch] == ["RunInstances"]
    assert outcome["Condition"]["StringEquals"] == {
        "aws:ResourceTag/amikeeper:managed-by": {"Ref": "AWS::StackName"}
    }
    assert outcome["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["amikeeper:restore-drill", "amikeeper:restore-verified"]
    }


def test_one_drill_tick_runs_at_a_time_every_half_hour() -> None:
    properties = function_properties("DrillFunction")
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["Events"]["Tick"]["Properties"]["ScheduleExpression"] == "rate(30 minutes)"
