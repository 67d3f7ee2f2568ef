"""Heartbeat metrics: silence is never the only sign that amikeeper stopped running (SPEC §7).

Every planner invocation that completes publishes ``PlannerRuns`` = 1 and every completed daily report
``DailyReports`` = 1; the template's alarms fire when they stop. An invocation that did not complete
(here: an event refused before anything ran) publishes no heartbeat.
"""

from __future__ import annotations

import pytest

from amikeeper.events import InvalidEventError
from tests.fixtures.logs import emitted_metric_documents
from tests.fixtures.stack import MotoStack, run_instances
from tests.sam_local import ResolvedFunction

TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "tick"}


def heartbeats(capsys: pytest.CaptureFixture[str], name: str) -> list[float]:
    return [document[name] for document in emitted_metric_documents(capsys) if name in document]


def test_every_completed_planner_run_publishes_its_heartbeat(
    functions: dict[str, ResolvedFunction], stack: MotoStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a due instance, and a planner that ran once and found it, and once more with nothing left to do
    run_instances(stack.region, tags={"Backup": "true"})
    planner = functions["PlannerFunction"]
    capsys.readouterr()
    planner.invoke(TICK)
    planner.invoke(TICK | {"scheduled_time": "2026-11-29T10:15:00Z"}, fresh=True)
    # Then each invocation published PlannerRuns = 1
    assert heartbeats(capsys, "PlannerRuns") == [1, 1]


def test_a_refused_planner_event_publishes_no_heartbeat(
    functions: dict[str, ResolvedFunction], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with pytest.raises(InvalidEventError):
        functions["PlannerFunction"].invoke(TICK | {"dryRun": True})
    assert heartbeats(capsys, "PlannerRuns") == []


def test_every_completed_daily_report_publishes_its_heartbeat(
    functions: dict[str, ResolvedFunction], stack: MotoStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an opted-in instance, and a daily report that ran
    run_instances(stack.region, tags={"Backup": "true"})
    capsys.readouterr()
    functions["ReportFunction"].invoke(TICK | {"scheduled_time": "2026-11-29T07:00:00Z"})
    # Then it published DailyReports = 1 (next to its RPO counts)
    assert heartbeats(capsys, "DailyReports") == [1]
