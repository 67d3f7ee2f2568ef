"""The daily report through the template's ReportFunction, against a moto fleet in two regions."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.ec2.models import ec2_backends

from amikeeper import clients
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.logs import emitted_metrics
from tests.fixtures.stack import ACCOUNT, MotoStack, create_stack, make_backup, run_instances
from tests.sam_local import ResolvedFunction, load_event

ROOT = Path(__file__).resolve().parents[2]
WEST, EAST = "eu-west-1", "us-east-1"
TICK = load_event(ROOT / "events" / "report-tick.json")
NOW = datetime.fromisoformat(TICK["scheduled_time"])  # 2026-11-29T07:00:00Z
TODAY_0300 = NOW.replace(hour=3)


def launched(region: str, tags: dict[str, str], when: datetime) -> str:
    """An instance whose LaunchTime is `when` (moto stamps the wall clock; the report reads it)."""
    [instance_id] = run_instances(region, tags=tags)
    ec2_backends[ACCOUNT][region].get_instance(instance_id).launch_time = when.replace(tzinfo=None)
    return instance_id


@pytest.fixture
def stack(aws: Ec2Fidelity) -> MotoStack:
    """The shared stack, configured to back up two regions."""
    return create_stack(WEST, regions=(WEST, EAST))


@pytest.fixture
def report(functions: dict[str, ResolvedFunction]) -> ResolvedFunction:
    return functions["ReportFunction"]


@pytest.fixture
def fleet(stack: MotoStack, aws: Ec2Fidelity) -> dict[str, Any]:
    """A healthy instance, a missed one, one never backed up, a new one and an opted-out one (eu-west-1),
    a healthy one in us-east-1, and a backup stuck in pending for 11 hours."""
    long_ago = NOW - timedelta(days=60)
    ids = {
        "web": launched(WEST, {"Name": "web-1", "Backup": "true"}, long_ago),
        "db": launched(WEST, {"Name": "db-1", "Backup": "true"}, long_ago),
        "lost": launched(WEST, {"Name": "lost-1", "Backup": "true"}, long_ago),
        "fresh": launched(WEST, {"Name": "fresh-1", "Backup": "true"}, NOW - timedelta(minutes=30)),
        "dev": launched(WEST, {"Name": "dev-1", "Backup": "false"}, long_ago),
        "api": launched(EAST, {"Name": "api-1", "Backup": "true"}, long_ago),
    }
    images = {
        "web": make_backup(WEST, ids["web"], TODAY_0300),
        "db": make_backup(WEST, ids["db"], TODAY_0300 - timedelta(days=2)),
        "api": make_backup(EAST, ids["api"], TODAY_0300),
    }
    # db's backup of yesterday failed: it must not count
    images["db-failed"] = make_backup(WEST, ids["db"], TODAY_0300 - timedelta(days=1))
    aws.set_image_state(WEST, images["db-failed"], "failed")
    aws.start_pending()
    images["stuck"] = make_backup(WEST, ids["web"], TODAY_0300 - timedelta(hours=8))
    aws.set_creation_date(WEST, images["stuck"], NOW - timedelta(hours=11))
    return {"ids": ids, "images": images}


def test_report_lists_every_opted_in_instance_and_sends_one_report_and_one_violation(
    report: ResolvedFunction, stack: MotoStack, fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ids, images = fleet["ids"], fleet["images"]
    # When the daily report runs
    result = report.invoke(TICK)
    # Then a subscriber receives exactly one report.daily (warning) and one rpo.violation (error)
    daily, violation = stack.notifications()
    assert (daily.event, daily.severity) == ("report.daily", "warning")
    assert (violation.event, violation.severity) == ("rpo.violation", "error")
    assert stack.notifications() == []
    # And the report lists every opted-in instance of both regions with its newest backup and age
    listed = {i["instance_id"]: i for i in daily.document["instances"]}
    assert set(listed) == {ids[name] for name in ("web", "db", "lost", "fresh", "api")}
    web = listed[ids["web"]]
    assert (web["status"], web["image_id"], web["backup_time"], web["age_seconds"]) == (
        "ok",
        images["web"],
        "2026-11-29T03:00:00Z",
        4 * 3600,
    )
    assert listed[ids["api"]]["region"] == EAST
    assert (listed[ids["db"]]["status"], listed[ids["db"]]["image_id"]) == ("violation", images["db"])
    assert (listed[ids["lost"]]["status"], listed[ids["lost"]]["image_id"]) == ("violation", None)
    assert listed[ids["fresh"]]["status"] == "new"
    # And the pending AMI stuck for 11 hours is listed as stale
    assert [s["image_id"] for s in daily.document["stale_pending"]] == [images["stuck"]]
    assert (
        daily.subject == "amikeeper daily report: 2 RPO violation(s), 1 stale AMI(s) in eu-west-1, us-east-1"
    )
    assert "db-1" in daily.text
    # And the violation message names exactly the two missed instances
    assert {v["instance_id"] for v in violation.document["violations"]} == {ids["db"], ids["lost"]}
    assert violation.subject == "amikeeper: 2 instance(s) missed their RPO in eu-west-1, us-east-1"
    # And the alarm's metrics carry the counts
    metrics = emitted_metrics(capsys)
    assert (metrics["RpoViolations"], metrics["StalePendingAmis"]) == (2, 1)
    assert [(r["region"], r["violations"]) for r in result["regions"]] == [(WEST, 2), (EAST, 0)]


def test_report_tick_delivered_twice_reports_once(
    report: ResolvedFunction, stack: MotoStack, fleet: dict[str, Any]
) -> None:
    # Given the scheduler delivers the same tick twice (at-least-once), the second to a new container
    report.invoke(TICK)
    first = stack.notifications()
    report.invoke(TICK, fresh=True)
    # Then people got the report and the violation once, and the repeat sends nothing
    assert [note.event for note in first] == ["report.daily", "rpo.violation"]
    assert stack.notifications() == []
    # And the next day's tick reports again
    report.invoke(TICK | {"scheduled_time": "2026-11-30T07:00:00Z"})
    assert [note.event for note in stack.notifications()] == ["report.daily", "rpo.violation"]


def test_healthy_fleet_gets_one_info_report_and_no_violation(
    report: ResolvedFunction, stack: MotoStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given every opted-in instance has this morning's backup
    for region in (WEST, EAST):
        instance_id = launched(region, {"Backup": "true"}, NOW - timedelta(days=10))
        make_backup(region, instance_id, TODAY_0300)
    # When the report runs
    report.invoke(TICK)
    # Then one info report is sent, and the violation metric is an explicit zero
    [daily] = stack.notifications()
    assert (daily.event, daily.severity) == ("report.daily", "info")
    assert daily.subject == "amikeeper daily report: all 2 instance(s) within RPO in eu-west-1, us-east-1"
    assert emitted_metrics(capsys)["RpoViolations"] == 0


def test_an_unreadable_region_is_reported_and_the_other_still_checked(
    report: ResolvedFunction, stack: MotoStack, fleet: dict[str, Any]
) -> None:
    # Given DescribeInstances is refused in us-east-1
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeInstances")

    clients.ec2(EAST).meta.events.register("before-call.ec2.DescribeInstances", refuse)
    # When the report runs
    result = report.invoke(TICK)
    # Then the report names the region it could not read, and eu-west-1's violations still go out
    daily, violation = stack.notifications()
    regions = {r["region"]: r for r in daily.document["regions"]}
    assert "UnauthorizedOperation" in regions[EAST]["error"]
    assert regions[WEST]["violations"] == 2
    assert f"Region {EAST} could not be read" in daily.text
    assert violation.document["violations_total"] == 2
    assert result["regions"][1]["error"] == regions[EAST]["error"]


def test_report_tick_events_file_runs_the_report(
    sam_app: Any, report: ResolvedFunction, stack: MotoStack
) -> None:
    [path] = sam_app.events_for("ReportFunction")
    assert report.invoke(load_event(path))["regions"][0]["region"] == WEST
    assert [n.event for n in stack.notifications()] == ["report.daily"]
