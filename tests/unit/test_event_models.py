"""Every event model refuses keys it does not know, and says so in one line that names the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from amikeeper.ec2_events import AmiStateChange, InstanceStateChange, describe_validation_error
from amikeeper.events import InvalidEventError, RegionTaskEvent, ScheduledTick, WorkRecord, parse_or_refuse

ROOT = Path(__file__).resolve().parents[2]
TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "manual"}


def event_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return loaded


def reason(model: type[BaseModel], event: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(event)
    return describe_validation_error(refused.value, model)


# --- scheduled ticks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("typo", ["dryRun", "dry-run", "DryRun", "dry_run "])
def test_a_mistyped_dry_run_is_refused_not_read_as_a_real_run(typo: str) -> None:
    assert reason(ScheduledTick, TICK | {typo: True}) == (
        f"unknown key '{typo}' (allowed: scheduled_time, execution_id, dry_run)"
    )


def test_a_tick_without_an_offset_is_refused() -> None:
    # A wall time in no zone would be read as UTC by one function and compared to aware times by another.
    assert reason(ScheduledTick, {"scheduled_time": "2026-11-29T10:00:00"}).startswith(
        "scheduled_time: Input should have timezone info"
    )


def test_every_key_the_scheduler_sends_and_an_empty_manual_event_still_parse() -> None:
    assert ScheduledTick.model_validate(TICK | {"dry_run": True}).dry_run is True
    assert ScheduledTick.model_validate({}) == ScheduledTick()


def test_a_region_task_is_one_record_whose_body_names_its_region_and_tick() -> None:
    event = event_file("region-planner-task.json")
    [record] = RegionTaskEvent.model_validate(event).Records
    assert (record.body.region, record.body.scheduled_time.isoformat()) == (
        "us-east-1",
        "2026-11-29T03:00:00+00:00",
    )
    # The queue's event source mapping delivers one task per invocation (BatchSize 1).
    assert reason(RegionTaskEvent, {"Records": event["Records"] * 2}).startswith(
        "Records: List should have at most 1"
    )


def test_a_nested_unknown_key_names_its_path_and_the_keys_allowed_there() -> None:
    event = event_file("region-planner-task.json")
    [record] = event["Records"]
    body = json.loads(record["body"]) | {"regoin": "eu-west-1"}
    assert reason(RegionTaskEvent, {"Records": [record | {"body": json.dumps(body)}]}) == (
        "unknown key 'Records.0.body.regoin' (allowed: version, region, scheduled_time, execution_id)"
    )
    wall_time = json.loads(record["body"]) | {"scheduled_time": "2026-11-29T03:00:00"}
    assert reason(RegionTaskEvent, {"Records": [record | {"body": json.dumps(wall_time)}]}).startswith(
        "Records.0.body.scheduled_time: Input should have timezone info"
    )


def test_parse_or_refuse_raises_one_line_before_the_handler_runs() -> None:
    calls: list[ScheduledTick] = []

    @parse_or_refuse(ScheduledTick)
    def handler(tick: ScheduledTick, context: LambdaContext) -> str:
        calls.append(tick)
        return "ran"

    with pytest.raises(InvalidEventError) as refused:
        handler({"dryRun": True, "dry_run": "perhaps"}, LambdaContext())
    assert str(refused.value) == (
        "dry_run: Input should be a valid boolean, unable to interpret input; "
        "unknown key 'dryRun' (allowed: scheduled_time, execution_id, dry_run)"
    )
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert calls == []
    assert handler({"dry_run": True}, LambdaContext()) == "ran"
    assert calls == [ScheduledTick(dry_run=True)]


# --- EC2 events --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (InstanceStateChange, "instance-state-stopped.json"),
        (InstanceStateChange, "instance-state-terminated.json"),
        (AmiStateChange, "ami-state-available.json"),
        (AmiStateChange, "ami-state-failed.json"),
    ],
)
def test_ec2_events_refuse_unknown_keys_in_the_envelope_and_in_the_detail(
    model: type[BaseModel], name: str
) -> None:
    event = event_file(name)
    model.model_validate(event)
    model.model_validate(event | {"replay-name": "archive-replay"})
    assert reason(model, event | {"detail-typ": "x"}).startswith(
        "unknown key 'detail-typ' (allowed: version,"
    )
    detail_keys = (
        "instance-id, state" if model is InstanceStateChange else "ImageId, State, ErrorMessage, RequestId"
    )
    assert reason(model, event | {"detail": event["detail"] | {"new": 1}}) == (
        f"unknown key 'detail.new' (allowed: {detail_keys})"
    )


# --- work records ------------------------------------------------------------------------------------


def test_a_work_record_refuses_unknown_keys_in_the_record_and_in_its_body() -> None:
    [record, *_] = event_file("worker-batch.json")["Records"]
    WorkRecord.model_validate(record)
    assert reason(WorkRecord, record | {"extra": 1}).startswith("unknown key 'extra' (allowed: messageId,")
    body = json.loads(record["body"]) | {"retries": 3}
    assert reason(WorkRecord, record | {"body": json.dumps(body)}).startswith(
        "unknown key 'body.retries' (allowed: version, region, instance_id,"
    )
    newer = json.loads(record["body"]) | {"version": 2}
    assert reason(WorkRecord, record | {"body": json.dumps(newer)}).startswith(
        "body.version: Input should be 1"
    )
