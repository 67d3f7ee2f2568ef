"""template.yaml, what an operator trusts it with: the named-policies document survives every stack
update, nothing fails quietly (errors, failed asynchronous runs, heartbeats), alarms reach the e-mail
subscription whatever its severity filter, IAM is least privilege, and two stacks never mix metrics."""

from __future__ import annotations

import inspect
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import DynamoDBPersistenceLayer
from moto import mock_aws

if TYPE_CHECKING:
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

from tests.integration.test_template import (
    APP,
    CONTRACT_CALLS,
    FUNCTIONS,
    as_list,
    managed_policy_document,
    resources_of_type,
    role_statements,
    statements_granting,
    translate,
)

REGION = "us-east-1"
TOPIC = {"Ref": "NotificationTopic"}
FAILED_QUEUE_ARN = {"Fn::GetAtt": ["FailedInvocationsQueue", "Arn"]}
ASYNC_EVENT_TYPES = ("ScheduleV2", "EventBridgeRule")


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(APP.template, {"NotificationEmail": "ops@example.com"})


def alarms() -> dict[str, dict[str, Any]]:
    return {name: alarm["Properties"] for name, alarm in resources_of_type("AWS::CloudWatch::Alarm").items()}


def async_functions() -> list[str]:
    return [
        fid
        for fid in FUNCTIONS
        if any(
            event["Type"] in ASYNC_EVENT_TYPES
            for event in APP.function_properties(fid).get("Events", {}).values()
        )
    ]


# --- 1. the named-policies document survives every stack update ------------------------------------

# NEVER CHANGE THIS, nor the resource in template.yaml. CloudFormation re-applies an SSM parameter's Value
# ("{}") whenever anything of the resource's definition changes, which wipes the document operators edit
# in place. The definition is frozen byte for byte as first deployed; even a better description is not
# worth resetting every deployed stack's named policies once.
FROZEN_POLICIES_PARAMETER = {
    "Type": "AWS::SSM::Parameter",
    "Properties": {
        "Name": {"Fn::Sub": "/amikeeper/${AWS::StackName}/policies"},
        "Type": "String",
        "Tier": "Intelligent-Tiering",
        "Value": "{}",
        "Description": (
            "amikeeper named backup policies, one JSON object keyed by policy name, e.g."
            ' {"gold": {"schedule": "every 6h", "retain": "hourly=24 daily=14 monthly=12", "no_reboot": true}}.'
            " Edit it in place (console or aws ssm put-parameter --overwrite); the next run uses it, no"
            " redeploy. A malformed document is reported once per run and ignored. Stack updates keep your"
            " edits."
        ),
    },
}


def referenced_names(node: Any) -> Iterator[str]:
    """Every parameter, pseudo parameter or resource a template value refers to."""
    if isinstance(node, list):
        for item in node:
            yield from referenced_names(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                yield from (
                    name.split(".")[0]
                    for name in re.findall(r"\$\{([^!}][^}]*)\}", text)
                    if name not in variables
                )
                yield from referenced_names(variables)
            else:
                yield from referenced_names(value)


def test_the_policies_parameter_definition_is_frozen_as_first_deployed() -> None:
    assert APP.resources["PoliciesParameter"] == FROZEN_POLICIES_PARAMETER


def test_no_stack_parameter_can_ever_update_the_policies_parameter() -> None:
    # Only the stack name, which never changes for a stack: no parameter change can touch the resource.
    resource = APP.resources["PoliciesParameter"]
    assert set(referenced_names(resource)) == {"AWS::StackName"}
    assert set(resource) == {"Type", "Properties"}  # no Condition, DependsOn or policies either


# --- 2. nothing goes quiet ---------------------------------------------------------------------------


def test_every_alarm_publishes_to_the_topic() -> None:
    assert all(alarm["AlarmActions"] == [TOPIC] for alarm in alarms().values())


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_has_an_errors_alarm(function_id: str) -> None:
    watching = [
        alarm
        for alarm in alarms().values()
        if alarm["Namespace"] == "AWS/Lambda"
        and alarm["MetricName"] == "Errors"
        and alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    ]
    assert len(watching) == 1
    (alarm,) = watching
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )


def test_the_asynchronously_invoked_functions_are_the_scheduled_and_event_driven_ones() -> None:
    assert async_functions() == [
        "PlannerFunction",
        "RetentionFunction",
        "DrillFunction",
        "InstanceStateFunction",
        "AmiStateFunction",
        "ReportFunction",
    ]


@pytest.mark.parametrize("function_id", async_functions())
def test_every_asynchronous_invocation_that_fails_lands_in_the_failed_invocations_queue(
    function_id: str,
) -> None:
    properties = APP.function_properties(function_id)
    # Lambda's on-failure destination, once its retries are spent
    assert properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": FAILED_QUEUE_ARN,
    }
    # and the scheduler's or rule's dead-letter queue, for an invocation it could not deliver
    for event in properties["Events"].values():
        assert event["Properties"]["DeadLetterConfig"] == {"Arn": FAILED_QUEUE_ARN}


def test_the_failed_invocations_queue_is_encrypted_kept_14_days_and_alarmed() -> None:
    queue = APP.resources["FailedInvocationsQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    (alarm,) = [
        alarm
        for alarm in alarms().values()
        if alarm["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailedInvocationsQueue", "QueueName"]}}]
    ]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_every_sender_may_write_to_the_failed_invocations_queue(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    # Lambda writes on-failure destinations with the function's role
    for function_id in async_functions():
        destinations = [
            statement
            for statement in statements_granting(translated, function_id, "sqs:SendMessage")
            if statement["Resource"] == FAILED_QUEUE_ARN
        ]
        assert destinations, function_id
        (config,) = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"
            and r["Properties"]["FunctionName"] == {"Ref": function_id}
        ]
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == FAILED_QUEUE_ARN
    # the schedules with their own roles
    for name, schedule in resources.items():
        if schedule["Type"] == "AWS::Scheduler::Schedule":
            target = schedule["Properties"]["Target"]
            assert target["DeadLetterConfig"] == {"Arn": FAILED_QUEUE_ARN}, name
            role = resources[target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
            granted = [
                statement
                for policy in role["Policies"]
                for statement in policy["PolicyDocument"]["Statement"]
                if "sqs:SendMessage" in as_list(statement["Action"])
            ]
            assert [statement["Resource"] for statement in granted] == [FAILED_QUEUE_ARN], name
    # and the EventBridge rules by the queue's consent, for this stack's rules only
    rules = sorted(name for name, resource in resources.items() if resource["Type"] == "AWS::Events::Rule")
    assert rules == ["AmiStateFunctionAmiStateChanged", "InstanceStateFunctionInstanceStateChanged"]
    for rule in rules:
        (target,) = resources[rule]["Properties"]["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": FAILED_QUEUE_ARN}
    (statement,) = resources["FailedInvocationsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert (
        sorted(arn["Fn::GetAtt"][0] for arn in statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == rules
    )


# Heartbeats: a tiny model of how CloudWatch evaluates a static-threshold alarm on a Sum statistic.


def in_alarm_at(alarm: dict[str, Any], datapoints: list[datetime], now: datetime) -> bool:
    period = timedelta(seconds=alarm["Period"])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    end = epoch + ((now - epoch) // period) * period  # the last complete period ends here
    breaching = 0
    for n in range(1, alarm["EvaluationPeriods"] + 1):
        start = end - n * period
        total = sum(1 for point in datapoints if start <= point < start + period)
        # missing data (no run completed) counts as breaching with TreatMissingData breaching
        breaching += total < alarm["Threshold"]
    return breaching >= int(alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))


def test_heartbeat_alarms_treat_silence_as_breaching_within_cloudwatch_limits() -> None:
    for name in ("PlannerHeartbeatAlarm", "ReportHeartbeatAlarm"):
        alarm = alarms()[name]
        assert alarm["TreatMissingData"] == "breaching"
        assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "Sum",
            "LessThanThreshold",
            1,
        )
        # PutMetricAlarm: at most 7 days in all, 1 day for periods under an hour; periods of 10, 20, 30
        # seconds or a multiple of 60
        total = alarm["Period"] * alarm["EvaluationPeriods"]
        assert total <= (604_800 if alarm["Period"] >= 3600 else 86_400)
        assert alarm["Period"] % 60 == 0
        assert 1 <= alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]) <= alarm["EvaluationPeriods"]


def heartbeat_matches_what_the_handler_publishes(alarm: dict[str, Any], metric: str) -> None:
    assert alarm["MetricName"] == metric
    assert alarm["Namespace"] == {"Fn::Sub": "Amikeeper/${AWS::StackName}"}
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]


@pytest.mark.parametrize("rate_minutes", [5, 15, 30, 45, 60])
def test_planner_heartbeat_stays_quiet_while_the_planner_runs_and_fires_two_to_three_hours_after_it_stops(
    rate_minutes: int,
) -> None:
    alarm = alarms()["PlannerHeartbeatAlarm"]
    heartbeat_matches_what_the_handler_publishes(alarm, "PlannerRuns")
    assert APP.parameters["PlannerRate"]["MaxValue"] == 60  # the slowest cadence the periods allow for
    rng = random.Random(rate_minutes)
    start = datetime(2026, 3, 1, 0, 7, 31, tzinfo=UTC)
    # A healthy planner: one run every PlannerRate minutes, each completing up to its 10-minute timeout later
    ticks = [start + timedelta(minutes=rate_minutes * n) for n in range(3 * 24 * 60 // rate_minutes)]
    completed = [tick + timedelta(seconds=rng.uniform(1, 600)) for tick in ticks]
    checks = [start + timedelta(hours=3, minutes=m) for m in range(0, 2 * 24 * 60, 5)]
    assert [now for now in checks if in_alarm_at(alarm, completed, now)] == []
    # Then the planner stops: silence is an alarm about two hours later
    last = completed[len(completed) // 2]
    stopped = [point for point in completed if point <= last]
    after = [
        minutes
        for minutes in range(0, 6 * 60, 5)
        if in_alarm_at(alarm, stopped, last + timedelta(minutes=minutes))
    ]
    assert 120 <= after[0] <= 180


def test_report_heartbeat_stays_quiet_with_a_daily_report_across_daylight_saving_and_fires_after_26_hours() -> (
    None
):
    alarm = alarms()["ReportHeartbeatAlarm"]
    heartbeat_matches_what_the_handler_publishes(alarm, "DailyReports")
    rng = random.Random(7)
    # A healthy daily report at 07:00 in a zone with daylight saving (a 23- and a 25-hour day), each
    # completing up to its 10-minute timeout later, for a year
    paris = ZoneInfo("Europe/Paris")
    days = [datetime(2026, 1, 1, 7, tzinfo=paris) + timedelta(days=n) for n in range(365)]
    completed = [day.astimezone(UTC) + timedelta(seconds=rng.uniform(1, 600)) for day in days]
    checks = [completed[1] + timedelta(hours=h) for h in range(0, 360 * 24)]
    assert [now for now in checks if in_alarm_at(alarm, completed, now)] == []
    # Then the report stops
    last = completed[100]
    stopped = completed[:101]
    after = [hours for hours in range(0, 48) if in_alarm_at(alarm, stopped, last + timedelta(hours=hours))]
    assert 26 <= after[0] <= 27


# --- 3. the e-mail filter ----------------------------------------------------------------------------


def email_filter_policy(severity: str) -> Any:
    subscription = APP.resources["NotificationEmailSubscription"]["Properties"]
    assert subscription["Protocol"] == "email"
    assert subscription.get("FilterPolicyScope", "MessageAttributes") == "MessageAttributes"
    return APP.evaluate(subscription["FilterPolicy"], {"NotificationEmailSeverity": severity})


def test_the_email_severity_parameter_offers_info_warning_error_defaulting_to_warning() -> None:
    parameter = APP.parameters["NotificationEmailSeverity"]
    assert parameter["AllowedValues"] == ["info", "warning", "error"]
    assert parameter["Default"] == "warning"


@pytest.mark.parametrize(
    ("severity", "delivered"),
    [
        ("info", {"info", "warning", "error", "alarm", "event-only"}),
        ("warning", {"warning", "error", "alarm", "event-only"}),
        ("error", {"error", "alarm", "event-only"}),
    ],
)
def test_the_email_filter_delivers_the_chosen_severities_and_every_alarm(
    severity: str, delivered: set[str]
) -> None:
    # moto evaluates SNS filter policies, "$or" and "exists" included, but cannot read an e-mail inbox:
    # an SQS subscription with the e-mail subscription's resolved policy stands in for it.
    policy = email_filter_policy(severity)
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="amikeeper")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"FilterPolicy": json.dumps(policy), "RawMessageDelivery": "true"},
        )

        def attribute(value: str) -> MessageAttributeValueTypeDef:
            return {"DataType": "String", "StringValue": value}

        for level in ("info", "warning", "error"):
            sns.publish(
                TopicArn=topic,
                Message=level,
                MessageAttributes={"event": attribute("backup.summary"), "severity": attribute(level)},
            )
        # What CloudWatch publishes for an alarm: no message attributes at all
        sns.publish(TopicArn=topic, Message="alarm", Subject="ALARM: amikeeper")
        sns.publish(TopicArn=topic, Message="event-only", MessageAttributes={"event": attribute("x")})
        received = set()
        while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                received.add(message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert received == delivered


def test_the_email_filter_is_an_or_of_the_severities_and_no_severity_at_all() -> None:
    assert email_filter_policy("warning") == {
        "$or": [{"severity": ["warning", "error"]}, {"severity": [{"exists": False}]}]
    }


# --- 4. least privilege --------------------------------------------------------------------------------


@pytest.mark.parametrize("tag_key", ["Backup", "backup-policy"])
def test_the_worker_may_image_only_instances_carrying_the_opt_in_tag_not_set_to_false(
    translated: dict[str, Any], tag_key: str
) -> None:
    policy = APP.resources["WorkerCreateImageOfOptedInInstancesPolicy"]
    assert {"Ref": "WorkerCreateImageOfOptedInInstancesPolicy"} in translated["Resources"][
        "WorkerFunctionRole"
    ]["Properties"]["ManagedPolicyArns"]
    document = json.loads(APP.evaluate(policy["Properties"]["PolicyDocument"], {"OptInTagKey": tag_key}))
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "ec2:CreateImage"
    assert statement["Resource"] == "arn:aws:ec2:*:123456789012:instance/*"
    key = f"aws:ResourceTag/{tag_key}"
    assert statement["Condition"] == {
        "Null": {key: "false"},
        "StringNotEqualsIgnoreCase": {key: ["false", "no", "off"]},
    }


def test_create_image_on_the_new_image_and_snapshots_is_not_conditioned_on_the_instance_tag(
    translated: dict[str, Any],
) -> None:
    statements = statements_granting(translated, "WorkerFunction", "ec2:CreateImage")
    on_instances = [s for s in statements if "instance/" in json.dumps(s["Resource"])]
    on_outputs = [s for s in statements if s not in on_instances]
    assert len(on_instances) == 1 and "Condition" in on_instances[0]
    (outputs,) = on_outputs
    assert "Condition" not in outputs
    assert [APP.evaluate(r) for r in as_list(outputs["Resource"])] == [
        "arn:aws:ec2:*::image/*",
        "arn:aws:ec2:*::snapshot/*",
    ]


def dynamodb_grants(translated: dict[str, Any], function_id: str) -> list[tuple[list[str], Any]]:
    return [
        (sorted(as_list(statement["Action"])), statement["Resource"])
        for statement in role_statements(translated, function_id)
        if any(action.startswith("dynamodb:") for action in as_list(statement["Action"]))
    ]


def powertools_idempotency_calls() -> set[str]:
    """The DynamoDB calls Powertools' idempotency persistence layer makes, as IAM actions."""
    calls = re.findall(r"self\.client\.(\w+)\(", inspect.getsource(DynamoDBPersistenceLayer))
    return {"dynamodb:" + "".join(part.title() for part in call.split("_")) for call in calls}


@pytest.mark.parametrize(
    "function_id", [fid for fid in FUNCTIONS if "dynamodb:GetItem" in CONTRACT_CALLS[fid]]
)
def test_every_function_that_records_notices_may_make_exactly_the_calls_of_powertools_idempotency_on_the_table(
    translated: dict[str, Any], function_id: str
) -> None:
    expected = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert sorted(powertools_idempotency_calls()) == expected
    assert dynamodb_grants(translated, function_id) == [
        (expected, {"Fn::GetAtt": ["IdempotencyTable", "Arn"]})
    ]


def test_only_this_accounts_alarms_may_use_the_topic_key() -> None:
    statements = APP.resources["NotificationKey"]["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_every_managed_policy_of_the_template_is_valid_json() -> None:
    for policy in resources_of_type("AWS::IAM::ManagedPolicy").values():
        assert managed_policy_document(policy)["Version"] == "2012-10-17"


# --- 5. two stacks in one account never mix metrics ----------------------------------------------


def published(stack: str, function_id: str) -> tuple[str, list[dict[str, str]]]:
    """The namespace and dimensions a function's Powertools metrics carry, in stack `stack`."""
    resolved = APP.resolve(function_id, {"AWS::StackName": stack}, {"Parameters": DEPLOYED})
    provider = AmazonCloudWatchEMFProvider(
        namespace=resolved.environment["POWERTOOLS_METRICS_NAMESPACE"],
        service=resolved.environment["POWERTOOLS_SERVICE_NAME"],
    )
    provider.add_metric("PlannerRuns", "Count", 1)
    blob: dict[str, Any] = dict(provider.serialize_metric_set())
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    dimensions = [
        {"Name": name, "Value": blob[name]}
        for dimension_set in directive["Dimensions"]
        for name in dimension_set
    ]
    return directive["Namespace"], dimensions


DEPLOYED = {
    "AMIKEEPER_POLICIES_PARAMETER": "/amikeeper/x/policies",
    "AMIKEEPER_WORK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "AMIKEEPER_PLANNER_TASK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/planner-tasks.fifo",
    "AMIKEEPER_DELETE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/deletions.fifo",
    "AMIKEEPER_DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/d",
    "AMIKEEPER_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
    "AMIKEEPER_IDEMPOTENCY_TABLE": "t",
    "AMIKEEPER_COPY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/c",
    "AMIKEEPER_DRILL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/d",
}
STACKS = ("amikeeper-prod", "amikeeper-test")


def test_two_stacks_publish_to_different_namespaces_and_services() -> None:
    for function_id in FUNCTIONS:
        prod, test = (published(stack, function_id) for stack in STACKS)
        assert prod[0] != test[0]
        assert prod[1] != test[1]
        assert prod == ("Amikeeper/amikeeper-prod", [{"Name": "service", "Value": "amikeeper-prod"}])


@pytest.mark.parametrize("stack", STACKS)
def test_every_alarm_on_amikeeper_metrics_watches_what_the_functions_publish(stack: str) -> None:
    publishes = [published(stack, function_id) for function_id in FUNCTIONS]
    namespace, dimensions = publishes[0]
    assert all(publishing == publishes[0] for publishing in publishes)
    own = {
        name: alarm for name, alarm in alarms().items() if alarm["Namespace"] not in ("AWS/Lambda", "AWS/SQS")
    }
    assert {"RpoViolationsAlarm", "PlannerHeartbeatAlarm", "ReportHeartbeatAlarm"} <= set(own)
    for alarm in own.values():
        assert APP.evaluate(alarm["Namespace"], {"AWS::StackName": stack}) == namespace
        assert APP.evaluate(alarm["Dimensions"], {"AWS::StackName": stack}) == dimensions


@pytest.mark.parametrize("stack", STACKS)
def test_every_dashboard_widget_shows_this_stacks_metrics(stack: str) -> None:
    namespace, dimensions = published(stack, "PlannerFunction")
    body_template, _ = APP.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = json.loads(
        re.sub(r"\$\{[^}]*\}", "placeholder", body_template.replace("${AWS::StackName}", stack))
    )
    metrics = [metric for widget in body["widgets"] for metric in widget["properties"]["metrics"]]
    own = [metric for metric in metrics if not metric[0].startswith("AWS/")]
    assert own
    for metric in own:
        assert metric[0] == namespace
        assert metric[2:4] == [dimensions[0]["Name"], dimensions[0]["Value"]]
