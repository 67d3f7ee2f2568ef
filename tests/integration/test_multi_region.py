"""The Regions parameter end to end: every configured region is backed up and pruned, and a region
that fails (access denied, opt-in region not enabled, endpoint unreachable) is reported and never
stops the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import (
    backups_by_instance,
    managed_snapshot_ids,
    snapshots_of_existing_images,
    tick,
)
from tests.fixtures.event_source import EventSource
from tests.fixtures.stack import HOME_REGION, MotoStack, ReceivedNotification, create_stack, run_instances
from tests.fixtures.throttling import Interceptor, Unreachable, simulated_http
from tests.sam_local import ResolvedFunction, SamApp

OTHER_REGION = "us-east-1"
REGIONS = (HOME_REGION, OTHER_REGION)
DAY_ONE = datetime(2026, 11, 28, 3, 5, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)


@dataclass
class Regions:
    stack: MotoStack
    functions: dict[str, ResolvedFunction]

    def day(self, when: datetime) -> tuple[Any, Any]:
        """Planner tick, workers drained, retention an hour later; the two handlers' answers."""
        planned = self.functions["PlannerFunction"].invoke(tick(when))
        EventSource(self.stack, self.functions["WorkerFunction"].invoke).drain()
        pruned = self.functions["RetentionFunction"].invoke(tick(when + timedelta(hours=1), dry_run=False))
        return planned, pruned

    def notes_by_event(self) -> dict[str, list[ReceivedNotification]]:
        grouped: dict[str, list[ReceivedNotification]] = {}
        for note in self.stack.notifications():
            grouped.setdefault(note.event, []).append(note)
        return grouped


@contextmanager
def regions_stack(sam_app: SamApp, *interceptors: Interceptor) -> Iterator[Regions]:
    # Keep one daily backup: the second day deletes the first, so retention visibly does its work.
    stack = create_stack(regions=REGIONS, overrides={"DefaultRetention": "daily=1"})
    stack.env_vars["POWERTOOLS_METRICS_DISABLED"] = "true"
    with simulated_http(*interceptors):
        yield Regions(stack, stack.deploy(sam_app))


def fleet_in(region: str) -> list[str]:
    return run_instances(region, tags={"Backup": "true"}, count=2, data_volumes=1) + run_instances(
        region, tags={"Backup": "true"}, count=2
    )


def rows_of(note: ReceivedNotification) -> dict[str, dict[str, Any]]:
    return {row["region"]: row for row in note.document["regions"]}


def test_every_configured_region_is_backed_up_and_pruned_in_its_own_region(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    with regions_stack(sam_app) as world:
        # Given opted-in instances in both configured regions
        fleets = {region: fleet_in(region) for region in REGIONS}
        # When two daily cycles run
        world.day(DAY_ONE)
        world.notes_by_event()
        world.day(DAY_TWO)
        # Then each region holds exactly the newest backup of its own instances, and their snapshots
        for region, fleet in fleets.items():
            assert backups_by_instance(region) == {iid: ["2026-11-29T03:00:00Z"] for iid in fleet}
            assert managed_snapshot_ids(region) == snapshots_of_existing_images(region)
            assert len(managed_snapshot_ids(region)) == 6
        # And a day on which everything went well mails nobody: the daily report is the message to read
        assert world.notes_by_event() == {}


@pytest.mark.parametrize(
    ("failure", "shows"),
    [
        (Unreachable(OTHER_REGION, "UnauthorizedOperation", 403), "UnauthorizedOperation"),
        (Unreachable(OTHER_REGION, "AuthFailure", 401), "AuthFailure"),
        (Unreachable(OTHER_REGION, code=None), "EndpointConnectionError"),
    ],
    ids=["access-denied", "opt-in-region-disabled", "endpoint-unreachable"],
)
def test_a_failing_region_is_reported_and_the_other_is_fully_processed(
    aws: Ec2Fidelity, sam_app: SamApp, failure: Unreachable, shows: str
) -> None:
    # Given instances in both regions, then EC2 in the other region fails every call
    home = fleet_in(HOME_REGION)
    fleet_in(OTHER_REGION)
    with regions_stack(sam_app, failure) as world:
        # When two daily cycles run
        first_plan, _ = world.day(DAY_ONE)
        world.notes_by_event()
        _, second_prune = world.day(DAY_TWO)
        # Then the home region is fully backed up and pruned to its newest backup
        assert backups_by_instance(HOME_REGION) == {iid: ["2026-11-29T03:00:00Z"] for iid in home}
        assert managed_snapshot_ids(HOME_REGION) == snapshots_of_existing_images(HOME_REGION)
        # And both summaries carry the other region's error, again on the next day while it lasts
        notes = world.notes_by_event()
        [backup], [retention] = notes["backup.summary"], notes["retention.summary"]
        assert backup.severity == "error"
        assert shows in rows_of(backup)[OTHER_REGION]["error"]
        # (each region is planned by a task of its own, and a healthy region is no news)
        assert set(rows_of(backup)) == {OTHER_REGION}
        assert retention.severity == "error"
        assert shows in str(rows_of(retention)[OTHER_REGION])
        # And the handlers answered normally: a task per region, nothing crashed, nothing was handed on
        assert first_plan["regions"] == list(REGIONS) and world.stack.task_failures == []
        assert second_prune["regions"][0]["queued"] > 0 and world.stack.deletion_failures == []
        assert failure.refused > 0
