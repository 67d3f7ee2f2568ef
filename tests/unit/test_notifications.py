"""The shared notification envelope: SNS-safe subjects, readable text, one JSON object for machines."""

from __future__ import annotations

import json

from amikeeper.notifications import Notification


def make(subject: str = "amikeeper: 3 backup(s) queued in eu-west-1") -> Notification:
    return Notification(
        event="backup.summary",
        severity="info",
        subject=subject,
        summary="Planner run: 3 backup(s) queued.",
        table=[["region", "queued"], ["eu-west-1", "3"]],
        payload={"regions": [{"region": "eu-west-1", "enqueued": 3}]},
    )


def test_sns_message_has_text_for_email_and_json_for_machines() -> None:
    # Given a summary / When rendered for SNS MessageStructure=json
    structure = json.loads(make().sns_message())
    # Then email gets a readable table and every machine protocol the same JSON object
    assert "eu-west-1  3" in structure["email"]
    assert set(structure) == {"default", "email"}  # SQS, Lambda and HTTPS fall back to default
    machine = json.loads(structure["default"])
    assert machine["event"] == "backup.summary"
    assert machine["severity"] == "info"
    assert machine["regions"][0]["enqueued"] == 3


def test_subject_is_ascii_single_line_and_under_100_characters() -> None:
    # Given a subject with unicode, a newline and 150 characters
    note = make("amikeeper: ünïcode\nname " + "x" * 150)
    # When the SNS subject is made / Then SNS accepts it
    subject = note.subject_line()
    assert len(subject) < 100
    assert subject.isascii()
    assert "\n" not in subject
    assert subject.endswith("...")


def test_text_table_is_aligned_with_a_rule_under_the_header() -> None:
    lines = make().text().splitlines()
    assert lines[2] == "region     queued"
    assert lines[3] == "---------  ------"
    assert lines[4] == "eu-west-1  3"
