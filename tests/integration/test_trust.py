"""Trust (issue: no surprise deletions, no silent failures, no storms), through the template's handlers.

- a backup's retention travels with it: a gone or opted-out instance keeps its Backup:Retain override;
- a legal hold survives a change of OptInTagKey;
- CopyTags can never make a backup fail: copied tags are capped, values cut to EC2's limit;
- a quiet day sends one message (the daily report), a day with one failed backup two;
- a malformed policies document is mailed once a day, not on every tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from amikeeper.backups import EC2_TAG_LIMIT
from amikeeper.config import load_settings
from amikeeper.model import GONE_SINCE, RESTORE_DRILL, RESTORE_VERIFIED, tag_map
from amikeeper.runtime import Runtime
from tests.conftest import ROOT
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.retention_fleet import Fleet, day
from tests.fixtures.stack import MotoStack, instance_event, managed_images, run_instances
from tests.sam_local import ResolvedFunction, SamApp, load_event

pytestmark = pytest.mark.usefixtures("without_public_amis")

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def tick(when: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "execution_id": f"t-{when:%m%d%H%M}",
    } | extra


def fleet_of(function: ResolvedFunction, aws: Ec2Fidelity) -> Fleet:
    runtime = Runtime(load_settings(function.runtime_environment()))
    return Fleet(runtime.settings.home_region, runtime.stack, runtime.catalog(), aws)


# --- 1. the retention a backup was made under travels with it ---------------------------------------------
@pytest.mark.parametrize("goes", ["terminated", "opted-out"])
def test_a_gone_instance_keeps_the_retention_recorded_on_its_backups(
    functions: dict[str, ResolvedFunction], stack: MotoStack, aws: Ec2Fidelity, goes: str
) -> None:
    # Given 60 daily backups of an instance with Backup:Retain=daily=60, under the default
    # daily=7 weekly=4 monthly=6, made the way the planner makes them
    retention = functions["RetentionFunction"]
    fleet = fleet_of(retention, aws)
    web = fleet.launch({"Name": "web", "Backup:Retain": "daily=60"}, data_volumes=0)
    backups = {fleet.back_up(web, day(n), policy=None) for n in range(60)}
    assert {tag_map(fleet.images()[b]["Tags"])["amikeeper:retain"] for b in backups} == {"daily=60"}
    # While it runs, retention keeps all 60
    retention.invoke(tick(NOW))
    assert fleet.image_ids_of(web) == backups
    # When it is terminated (or opted out) and retention runs the next hour
    if goes == "terminated":
        fleet.terminate(web)
    else:
        fleet.tag(web, Backup="false")
    retention.invoke(tick(NOW + timedelta(hours=1)))
    # Then still none of the 60 is deleted: the expression recorded on them governs, not the default
    assert fleet.image_ids_of(web) == backups


def test_the_termination_notice_says_which_retention_will_apply(
    functions: dict[str, ResolvedFunction], stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given an instance whose backups were made under Backup:Retain=daily=60
    fleet = fleet_of(functions["RetentionFunction"], aws)
    web = fleet.launch({"Name": "web", "Backup:Retain": "daily=60"}, data_volumes=0)
    newest, *_ = [fleet.back_up(web, day(n), policy=None) for n in range(3)]
    fleet.terminate(web)
    # When its termination is notified
    functions["InstanceStateFunction"].invoke(instance_event(stack, web, "terminated"))
    # Then the notice names the recorded expression and where it comes from, not the default policy's
    [note] = stack.notifications()
    assert note.document["retention"] == "daily=60"
    assert note.document["retention_source"] == f"recorded on {newest}"
    assert "retention 'daily=60' (recorded on" in note.text


# --- 3. a legal hold survives a change of OptInTagKey -----------------------------------------------------
def test_a_hold_placed_under_an_earlier_opt_in_key_still_holds(
    sam_app: SamApp, stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given four backups made under OptInTagKey=Backup, the oldest held with Backup:Hold=true
    before = stack.deploy(sam_app)["RetentionFunction"]
    fleet = fleet_of(before, aws)
    db = fleet.launch(data_volumes=0)
    backups = [fleet.back_up(db, day(n)) for n in range(4)]
    fleet.tag(backups[3], **{"Backup:Hold": "true"})
    # When the stack is updated to OptInTagKey=Protect, the instance re-tagged to keep only the newest,
    stack.parameter_overrides["OptInTagKey"] = "Protect"
    after = stack.deploy(sam_app)["RetentionFunction"]
    fleet.tag(db, Protect="true", **{"Protect:Retain": "last=1"})
    # and retention runs
    after.invoke(tick(NOW))
    # Then the held AMI is still there; the unheld expired ones are gone
    assert fleet.image_ids_of(db) == {backups[0], backups[3]}


# --- 5. CopyTags can never make a backup fail -------------------------------------------------------------
def test_copy_tags_beyond_the_ami_tag_limit_are_left_out_and_named_once(
    sam_app: SamApp, stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given CopyTags naming 48 keys, all carried by an instance, one of them with an over-long value
    keys = [f"Cost{index:02d}" for index in range(48)]
    stack.parameter_overrides["CopyTags"] = ",".join(keys)
    functions = stack.deploy(sam_app)
    tags = dict.fromkeys(keys, "team") | {"Cost00": "x" * 300, "Name": "web", "Backup": "true"}
    [web] = run_instances(stack.region, tags=tags)
    # When the planner ticks and the worker drains the queue
    functions["PlannerFunction"].invoke(tick(NOW))
    failures = stack.drain(functions["WorkerFunction"].invoke)
    # Then the backup exists (no TagLimitExceeded), with every amikeeper tag and room to spare
    assert failures == [{"batchItemFailures": []}]
    [image] = managed_images(stack.region)
    written = tag_map(image["Tags"])
    assert written["amikeeper:instance-id"] == web and written["Name"] == "web"
    # (room left for the keys added later: gone-since, restore-verified, restore-drill, an operator's hold)
    assert len(written) + len({GONE_SINCE, RESTORE_VERIFIED, RESTORE_DRILL, "Backup:Hold"}) <= EC2_TAG_LIMIT
    assert len(written["Cost00"]) == 256
    # And one warning names the keys that were left out
    [summary] = stack.notifications()
    assert (summary.event, summary.severity) == ("backup.summary", "warning")
    left_out = set(keys) - set(written)
    assert left_out and set(summary.document["tags_not_copied"]) == left_out
    # And a later tick sends nothing more
    functions["PlannerFunction"].invoke(tick(NOW + timedelta(minutes=15)))
    assert stack.notifications() == []


# --- 8. messages per day ----------------------------------------------------------------------------------
DAY_START = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


def run_a_day(
    functions: Mapping[str, ResolvedFunction], stack: MotoStack, aws: Ec2Fidelity, *, fail_first: bool = False
) -> Counter[tuple[str, str]]:
    """96 planner ticks with the workers, 24 retention runs and the daily report, at the defaults."""
    received: Counter[tuple[str, str]] = Counter()
    planner, worker = functions["PlannerFunction"], functions["WorkerFunction"]
    for quarter in range(96):
        now = DAY_START + timedelta(minutes=15 * quarter + 1)
        aws.start_pending(fail_first and quarter == 12)
        planner.invoke(tick(now))
        stack.drain(worker.invoke)
        if fail_first and quarter == 12:
            # The 03:00 backup is registered, then EC2 fails it; the AMI-state rule delivers that
            [image] = [i for i in managed_images(stack.region) if i["State"] == "pending"]
            aws.set_image_state(stack.region, image["ImageId"], "failed", reason="volume went away")
            event = load_event(ROOT / "events" / "ami-state-failed.json")
            event["region"] = stack.region
            event["detail"] = event["detail"] | {"ImageId": image["ImageId"]}
            functions["AmiStateFunction"].invoke(event)
        if quarter % 4 == 0:
            functions["RetentionFunction"].invoke(tick(now + timedelta(minutes=4)))
        if quarter == 28:
            functions["ReportFunction"].invoke(tick(now.replace(minute=0)))
        received.update((note.event, note.severity) for note in stack.notifications())
    return received


def an_instance_with_a_week_of_backups(functions: Mapping[str, ResolvedFunction], aws: Ec2Fidelity) -> str:
    fleet = fleet_of(functions["RetentionFunction"], aws)
    web = fleet.launch(data_volumes=0)
    for offset in range(1, 8):
        fleet.back_up(web, day(offset))
    return web


def test_a_quiet_day_sends_one_message_the_daily_report(
    functions: dict[str, ResolvedFunction], stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given one opted-in instance with a week of backups, at the default schedules and retention
    web = an_instance_with_a_week_of_backups(functions, aws)
    # When a whole day runs: 96 planner ticks, 24 retention runs, the report
    received = run_a_day(functions, stack, aws)
    # Then the only message of the day is the daily report, and today's backup was made
    assert received == Counter({("report.daily", "info"): 1})
    assert len(fleet_of(functions["RetentionFunction"], aws).image_ids_of(web)) >= 8


def test_a_day_with_one_failed_backup_sends_that_failure_and_the_report(
    functions: dict[str, ResolvedFunction], stack: MotoStack, aws: Ec2Fidelity
) -> None:
    # Given the same instance, and EC2 failing its 03:00 AMI
    an_instance_with_a_week_of_backups(functions, aws)
    # When the day runs
    received = run_a_day(functions, stack, aws, fail_first=True)
    # Then people get the failure once and the report (all well again: the next tick retried the slot)
    assert received == Counter({("backup.failed", "error"): 1, ("report.daily", "info"): 1})
    states = Counter(image["State"] for image in managed_images(stack.region))
    assert states["available"] == 8 and states["failed"] <= 1


# --- a malformed policies document --------------------------------------------------------------------
def test_a_malformed_policies_document_is_mailed_once_a_day_not_every_tick(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an operator's document that is not JSON, and an instance naming a policy
    boto3.client("ssm", region_name=stack.region).put_parameter(
        Name=stack.policies_parameter, Value="{gold: oops", Type="String", Overwrite=True
    )
    run_instances(stack.region, tags={"Backup": "true"})
    planner = functions["PlannerFunction"]
    # When the planner ticks, again 15 minutes later, and the next day
    received = []
    for when in (NOW, NOW + timedelta(minutes=15), NOW + timedelta(days=1)):
        planner.invoke(tick(when))
        received.append([(n.event, n.severity, n.document.get("scope")) for n in stack.notifications()])
    # Then it is reported on the first tick, not on the second, and again a day later while unfixed
    assert received == [
        [("policy.invalid", "error", "document")],
        [],
        [("policy.invalid", "error", "document")],
    ]
