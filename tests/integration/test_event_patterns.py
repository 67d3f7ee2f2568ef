"""events/: every sample is shaped like what AWS really delivers, and the template's EventBridge rules
deliver each EC2 event to exactly the function that owns it (matched by moto's EventBridge matcher)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from hypothesis import given
from hypothesis import strategies as st
from moto.events.models import EventPattern
from moto.events.utils import EventMessageType

from amikeeper.events import ScheduledTick, WorkRecord
from amikeeper.model import WorkItem
from tests.sam_local import SamApp, load_event

ROOT = Path(__file__).resolve().parents[2]
APP = SamApp.load(ROOT / "template.yaml")
FUNCTIONS = APP.function_ids()
OWNER = {path.name: function_id for function_id in FUNCTIONS for path in APP.events_for(function_id)}
EVENT_FILES = sorted((ROOT / "events").glob("*.json"))
EVENTBRIDGE_FILES = [path for path in EVENT_FILES if "detail-type" in load_event(path)]
# Samples that show what must NOT reach a function.
DELIVERED_BY_NO_RULE = {"instance-state-running.json"}

ENVELOPE_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
DETAIL_KEYS = {
    "EC2 Instance State-change Notification": {"instance-id", "state"},
    "EC2 AMI State Change": {"RequestId", "ImageId", "State", "ErrorMessage"},
}
INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
AMI_STATES = ["pending", "available", "failed", "deregistered", "disabled"]
UTC_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def rules() -> list[tuple[str, EventPattern]]:
    """Every EventBridgeRule event of the template, as (function, pattern) pairs."""
    found = []
    for function_id in FUNCTIONS:
        for event in APP.function_properties(function_id).get("Events", {}).values():
            if event["Type"] == "EventBridgeRule":
                found.append((function_id, EventPattern.load(json.dumps(event["Properties"]["Pattern"]))))
    return found


RULES = rules()


def functions_receiving(event: dict[str, Any]) -> set[str]:
    message = cast(EventMessageType, event)
    return {function_id for function_id, pattern in RULES if pattern.matches_event(message)}


def ec2_event(detail_type: str, detail: dict[str, Any], source: str = "aws.ec2") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "11111111-2222-3333-4444-555555555555",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-29T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def scheduler_input(function_id: str) -> dict[str, Any]:
    events = APP.function_properties(function_id)["Events"].values()
    (schedule,) = [event for event in events if event["Type"] == "ScheduleV2"]
    parsed: dict[str, Any] = json.loads(schedule["Properties"]["Input"])
    return parsed


# --- rules deliver each EC2 event to its owner only ------------------------------------------------


def test_the_template_has_one_rule_for_instance_states_and_one_for_ami_states() -> None:
    assert [function_id for function_id, _ in RULES] == ["InstanceStateFunction", "AmiStateFunction"]


@pytest.mark.parametrize("path", EVENTBRIDGE_FILES, ids=lambda path: path.name)
def test_each_ec2_event_file_reaches_its_own_function_and_no_other(path: Path) -> None:
    # Given an EC2 event as EventBridge would put it on the default bus
    event = load_event(path)
    # When every rule of the template is matched against it
    receivers = functions_receiving(event)
    # Then only the function owning the file receives it (or none, for the samples no rule delivers)
    expected = set() if path.name in DELIVERED_BY_NO_RULE else {OWNER[path.name]}
    assert receivers == expected


def test_a_running_instance_triggers_nothing() -> None:
    assert functions_receiving(load_event(ROOT / "events" / "instance-state-running.json")) == set()


def test_every_rule_has_an_event_file_it_delivers() -> None:
    delivered = {
        function_id for path in EVENTBRIDGE_FILES for function_id in functions_receiving(load_event(path))
    }
    assert delivered == {function_id for function_id, _ in RULES}


@given(state=st.sampled_from(INSTANCE_STATES) | st.text(max_size=20))
def test_instance_events_are_delivered_only_for_stopped_shutting_down_and_terminated(state: str) -> None:
    event = ec2_event(
        "EC2 Instance State-change Notification", {"instance-id": "i-0a1b2c3d4e5f60718", "state": state}
    )
    expected = {"InstanceStateFunction"} if state in {"stopped", "shutting-down", "terminated"} else set()
    assert functions_receiving(event) == expected


@given(state=st.sampled_from(AMI_STATES) | st.text(max_size=20))
def test_ami_events_are_delivered_only_for_available_and_failed(state: str) -> None:
    detail = {"RequestId": "r", "ImageId": "ami-0c9d8e7f6a5b43210", "State": state, "ErrorMessage": ""}
    expected = {"AmiStateFunction"} if state in {"available", "failed"} else set()
    assert functions_receiving(ec2_event("EC2 AMI State Change", detail)) == expected


@pytest.mark.parametrize("path", EVENTBRIDGE_FILES, ids=lambda path: path.name)
@pytest.mark.parametrize(
    ("field", "other"),
    [("source", "aws.autoscaling"), ("detail-type", "EC2 Spot Instance Interruption Warning")],
)
def test_events_from_another_source_or_of_another_type_reach_nothing(
    path: Path, field: str, other: str
) -> None:
    event = load_event(path) | {field: other}
    assert functions_receiving(event) == set()


# --- the samples are shaped like the real thing ----------------------------------------------------


def test_every_event_file_belongs_to_a_function() -> None:
    assert sorted(OWNER) == [path.name for path in EVENT_FILES]


@pytest.mark.parametrize("path", EVENTBRIDGE_FILES, ids=lambda path: path.name)
def test_ec2_event_files_have_eventbridges_envelope_and_ec2s_detail(path: Path) -> None:
    event = load_event(path)
    assert set(event) == ENVELOPE_KEYS
    model = EventBridgeModel.model_validate(event)
    assert (model.version, model.source, model.account) == ("0", "aws.ec2", "123456789012")
    assert UTC_TIMESTAMP.match(event["time"])
    detail = event["detail"]
    assert set(detail) == DETAIL_KEYS[event["detail-type"]]
    # The one resource is the ARN of the instance or image the detail names, in the event's region.
    (resource,) = event["resources"]
    if "instance-id" in detail:
        assert (
            resource == f"arn:aws:ec2:{event['region']}:{event['account']}:instance/{detail['instance-id']}"
        )
    else:
        assert resource == f"arn:aws:ec2:{event['region']}::image/{detail['ImageId']}"
        assert bool(detail["ErrorMessage"]) == (detail["State"] == "failed")


@pytest.mark.parametrize("function_id", ["PlannerFunction", "RetentionFunction", "ReportFunction"])
def test_tick_files_carry_what_the_scheduler_input_sends(function_id: str) -> None:
    for path in APP.events_for(function_id):
        event = load_event(path)
        assert set(event) == set(scheduler_input(function_id)), path.name
        assert UTC_TIMESTAMP.match(event["scheduled_time"])
        tick = ScheduledTick.model_validate(event)
        assert tick.scheduled_time is not None and tick.scheduled_time.tzinfo is not None


def test_the_retention_samples_are_a_real_run_and_a_dry_run() -> None:
    assert load_event(ROOT / "events" / "retention-tick.json")["dry_run"] is False
    assert load_event(ROOT / "events" / "retention-dry-run.json")["dry_run"] is True


@pytest.mark.parametrize(("name", "count"), [("worker-one-item.json", 1), ("worker-batch.json", 3)])
def test_worker_files_are_sqs_batches_of_work_items(name: str, count: int) -> None:
    records = load_event(ROOT / "events" / name)["Records"]
    assert len(records) == count
    assert len({record["messageId"] for record in records}) == count
    items = []
    for record in records:
        SqsRecordModel.model_validate(record)
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert re.match(r"^arn:aws:sqs:[a-z0-9-]+:\d{12}:.+$", record["eventSourceARN"])
        items.append(WorkRecord.model_validate(record).body)
    assert len({item.instance_id for item in items}) == count


@pytest.mark.parametrize("name", ["worker-one-item.json", "worker-batch.json"])
def test_work_items_carry_the_amikeeper_tags_of_their_backup(name: str) -> None:
    for record in load_event(ROOT / "events" / name)["Records"]:
        item = WorkItem.model_validate_json(record["body"])
        slot = item.slot.astimezone(UTC)
        assert slot == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
        assert {key: value for key, value in item.tags.items() if key.startswith("amikeeper:")} == {
            "amikeeper:managed-by": "amikeeper",
            "amikeeper:instance-id": item.instance_id,
            "amikeeper:policy": item.policy,
            "amikeeper:trigger": item.trigger,
            "amikeeper:slot": "2026-11-29T03:00:00Z",
        }
        assert item.instance_id in item.image_name and item.trigger in item.image_name
