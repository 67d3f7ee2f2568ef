"""Every notification amikeeper sends, as people and programs see it (SPEC §7, docs/notifications.md).

Each event type is built by the code that really sends it, with awkward input (long, non-ASCII names,
the longest region names, missing values), and checked for: an SNS-safe subject under 100 characters
that says what happened and where, a readable text table, and one JSON document that matches the
schema documented in docs/notifications.md. The documented examples must match those schemas too.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from amikeeper.ami_events import ami_failed
from amikeeper.backups import build_work_item
from amikeeper.copies import copy_failed
from amikeeper.drills import restore_failed
from amikeeper.instance_events import TerminatedInstance, instance_terminated
from amikeeper.model import (
    INSTANCE_ID,
    MANAGED_BY,
    POLICY,
    SLOT,
    TRIGGER,
    CopyTask,
    Image,
    Instance,
    Stack,
    TagKeys,
)
from amikeeper.naming import format_slot
from amikeeper.notifications import Event, Notification
from amikeeper.planner import (
    BackupPlan,
    InvalidInstance,
    RegionCounts,
    backup_summary,
    document_invalid,
    invalid_tag,
)
from amikeeper.policies import build_catalog
from amikeeper.report import DailyReport, assess_region, report_notifications
from amikeeper.retention_result import ItemError, RegionOutcome, RetentionResult
from amikeeper.retention_summary import retention_summary
from amikeeper.worker import backup_failed

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
REGION = "ap-southeast-2"  # among the longest region names
NOW = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
SLOT_0300 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
INSTANCE_ID_ = "i-0123456789abcdef0"
IMAGE_ID = "ami-0fedcba9876543210"
# Non-ASCII, far longer than any table column or subject could hold
LONG_NAME = "Ünïcødé primary database — production (Zürich) " * 4
CATALOG = build_catalog("daily@03:00", "daily=7 weekly=4 monthly=6", ZoneInfo("UTC"), None)
STACK = Stack("amikeeper", TagKeys("Backup"))


# --- what the documentation says ------------------------------------------------------------------------


def documented() -> dict[str, dict[str, Any]]:
    """{event: {"schema": ..., "examples": [...]}} from the fenced blocks under each '## `event`' heading."""
    sections: dict[str, dict[str, Any]] = {}
    for heading, body in re.findall(r"^## `([a-z.]+)`\n(.*?)(?=^## |\Z)", DOC.read_text(), re.M | re.S):
        blocks = re.findall(r"^```json (schema|example)\n(.*?)^```$", body, re.M | re.S)
        sections[heading] = {
            "schema": next(json.loads(text) for kind, text in blocks if kind == "schema"),
            "examples": [json.loads(text) for kind, text in blocks if kind == "example"],
        }
    return sections


DOCUMENTED = documented()


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(DOCUMENTED[document["event"]]["schema"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_every_event_type_is_documented_with_a_valid_schema_and_an_example() -> None:
    assert set(DOCUMENTED) == set(get_args(Event))
    for event, section in DOCUMENTED.items():
        Draft202012Validator.check_schema(section["schema"])
        assert section["examples"], event
        for example in section["examples"]:
            assert example["event"] == event
            assert schema_errors(example) == []


# --- what the code sends ----------------------------------------------------------------------------------


def image(state: str = "failed", *, tags: dict[str, str] | None = None) -> Image:
    return Image(
        image_id=IMAGE_ID,
        name=f"amikeeper-i-0123456789abcdef0-schedule-{SLOT_0300:%Y%m%dT%H%MZ}",
        state=state,
        created=SLOT_0300 + timedelta(minutes=4),
        tags={
            MANAGED_BY: "amikeeper",
            INSTANCE_ID: INSTANCE_ID_,
            POLICY: "default",
            TRIGGER: "schedule",
            SLOT: format_slot(SLOT_0300),
            "Name": LONG_NAME,
        }
        if tags is None
        else tags,
        state_reason="Client.InternalError: Snapshot creation failed for volume vol-0123456789abcdef0",
    )


def planner_notes() -> list[Notification]:
    broken = build_catalog("daily@03:00", "daily=7", ZoneInfo("UTC"), '{"gold": {"retain": "forever"}}')
    plan = BackupPlan(
        region=REGION,
        seen=12,
        opted_in=10,
        not_due=7,
        enqueued=2,
        invalid=[
            InvalidInstance(
                REGION, INSTANCE_ID_, LONG_NAME, "Backup:Schedule", "every 5h", "N must divide 24"
            )
        ],
    )
    failed = BackupPlan(region="eu-central-1", error="ClientError: RequestLimitExceeded")
    assert broken.document_error is not None
    return [
        *(invalid_tag(invalid) for invalid in plan.invalid),
        document_invalid(broken.document_error),
        backup_summary([RegionCounts.of(plan), RegionCounts.of(failed)], NOW),
    ]


def worker_note() -> Notification:
    instance = Instance(INSTANCE_ID_, "running", {"Name": LONG_NAME, "Backup": "true"})
    item = build_work_item(instance, CATALOG.default, region=REGION, stack=STACK, trigger="stop", slot=NOW)
    return backup_failed(
        item, "An error occurred (UnauthorizedOperation) when calling CreateImage", attempts=5
    )


def terminated_notes() -> list[Notification]:
    facts = TerminatedInstance(
        region=REGION,
        instance_id=INSTANCE_ID_,
        name=LONG_NAME,
        state="terminated",
        terminated_at=NOW,
        newest=image("available"),
        available_backups=7,
        policy="default",
        retention="daily=7 weekly=4 monthly=6",
        orphan_grace_days=30,
    )
    return [
        instance_terminated(facts),
        instance_terminated(replace(facts, newest=None, available_backups=0, name=None)),
    ]


def report_notes() -> list[Notification]:
    instances = [
        Instance(f"i-{n:017x}", "running", {"Name": LONG_NAME, "Backup": "true"}, NOW - timedelta(days=9))
        for n in range(3)
    ]
    images = [
        Image(
            f"ami-{n:017x}",
            "x",
            "available" if n else "pending",
            NOW - timedelta(days=2 + n),
            {MANAGED_BY: "amikeeper", INSTANCE_ID: f"i-{n:017x}"},
        )
        for n in range(3)
    ]
    region = assess_region(
        REGION,
        instances,
        images,
        CATALOG,
        TagKeys("Backup"),
        now=NOW,
        tick=timedelta(minutes=15),
        pending_timeout=timedelta(hours=6),
    )
    report = DailyReport(NOW, (region,), timedelta(minutes=15), timedelta(hours=6))
    return report_notifications(report)


def retention_note() -> Notification:
    outcome = RegionOutcome(
        REGION,
        reference_check="DescribeImageReferences",
        deleted=["ami-0aaaaaaaaaaaaaaaa"],
        snapshots_deleted=["snap-0bbbbbbbbbbbbbbbb"],
        errors=[ItemError("ami-0ccccccccccccccccc", "DeregisterImage", "RequestLimitExceeded")],
    )
    return retention_summary(RetentionResult(time=NOW, dry_run=False, regions=(outcome,)))


def copy_notes() -> list[Notification]:
    started = CopyTask(
        source_region=REGION,
        source_image_id="ami-0a1b2c3d4e5f60718",
        destination="222233334444/eu-central-1",
        stage="check",
        copy_image_id="ami-0f9e8d7c6b5a43210",
    )
    refused = CopyTask(source_region=REGION, source_image_id="ami-0a1b2c3d4e5f60718", destination="us-east-1")
    return [
        copy_failed(
            started, "copy ami-0f9e8d7c6b5a43210 in 222233334444/eu-central-1 ended failed: " + LONG_NAME
        ),
        copy_failed(refused, "CopyImage to us-east-1 refused (InvalidParameterValue): bad key"),
    ]


def drill_notes() -> list[Notification]:
    return [
        restore_failed(REGION, INSTANCE_ID_, IMAGE_ID, "i-0f9e8d7c6b5a43210: instance status check impaired"),
        restore_failed(REGION, INSTANCE_ID_, IMAGE_ID, "cannot run in eu-west-1: " + LONG_NAME),
    ]


def every_notification() -> list[Any]:
    notes = [
        *planner_notes(),
        worker_note(),
        ami_failed(REGION, image(), "Client.InternalError: Snapshot creation failed"),
        ami_failed(REGION, image(tags={}), "EC2 gave no reason"),
        *terminated_notes(),
        *report_notes(),
        retention_note(),
        *copy_notes(),
        *drill_notes(),
    ]
    return [pytest.param(note, id=f"{note.event}-{index}") for index, note in enumerate(notes)]


def test_every_event_type_is_exercised_here() -> None:
    assert {param.values[0].event for param in every_notification()} == set(get_args(Event))


@pytest.mark.parametrize("note", every_notification())
def test_document_matches_its_documented_schema(note: Notification) -> None:
    document = json.loads(json.dumps(note.document(), default=str))
    assert schema_errors(document) == []


@pytest.mark.parametrize("note", every_notification())
def test_subject_is_one_ascii_line_under_100_characters_naming_what_and_where(note: Notification) -> None:
    subject = note.subject_line()
    assert len(subject) < 100
    assert subject.isascii()
    assert "\n" not in subject
    assert subject.startswith("amikeeper")
    # Where: every single-region message names its region, and is short enough not to be cut
    if note.event != "policy.invalid" or note.payload.get("scope") == "instance":
        assert REGION in subject
    assert not subject.endswith("...")


@pytest.mark.parametrize("note", every_notification())
def test_text_is_a_summary_then_an_aligned_table_then_the_event(note: Notification) -> None:
    lines = note.text().splitlines()
    assert lines[0].strip()
    assert lines[-1] == f"event: {note.event} · severity: {note.severity}"
    if not note.table:
        return
    # the table comes last (a summary may hold a small table of its own, e.g. stale AMIs)
    header_at = max(i for i, line in enumerate(lines) if re.fullmatch(r"-+( {2}-+)*", line)) - 1
    rule = lines[header_at + 1]
    starts = [match.start() for match in re.finditer(r"-+", rule)]
    assert len(starts) == len(note.table[0])
    for row in lines[header_at : header_at + len(note.table) + 1]:
        for start in starts[1:]:
            # every column starts where its rule starts, two spaces after the previous one
            assert len(row) <= start or (row[start - 2 : start] == "  " and row[start] != " "), row


@pytest.mark.parametrize("note", every_notification())
def test_email_gets_the_text_and_machines_get_one_json_object(note: Notification) -> None:
    structure = json.loads(note.sns_message())
    assert structure["email"] == note.text()
    # SQS, Lambda, HTTP(S) and email-json subscribers get "default": the one JSON document
    assert set(structure) == {"default", "email"}
    document = json.loads(structure["default"])
    assert document["event"] == note.event
    assert document["severity"] == note.severity
    assert document["subject"] == note.subject_line()


def test_severities_say_who_needs_to_act() -> None:
    severities = {
        (param.values[0].event, param.values[0].payload.get("scope"), param.values[0].severity)
        for param in every_notification()
    }
    assert ("backup.failed", None, "error") in severities
    assert ("rpo.violation", None, "error") in severities
    assert ("report.daily", None, "warning") in severities
    assert ("policy.invalid", "instance", "warning") in severities
    assert ("policy.invalid", "document", "error") in severities
    assert {("instance.terminated", None, "info"), ("instance.terminated", None, "warning")} <= severities
