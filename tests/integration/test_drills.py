"""Restore drills (SPEC §10) through the template's functions against moto: DrillFunction's tick launches
the newest backup of each instance due into the drill subnet, DrillCheckerFunction follows it on the drill
queue until it is up or failed, terminates it and records the outcome on the backup; the sweeper ends any
drill that outlived its limit. Status checks come from the fidelity fixture (set_instance_status)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from amikeeper.model import DRILL, DRILL_OF, INSTANCE_ID, RESTORE_DRILL, RESTORE_VERIFIED
from amikeeper.naming import parse_slot
from tests.fixtures.call_counter import counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import tags_of
from tests.fixtures.stack import MotoStack, create_stack, make_backup, run_instances
from tests.fixtures.throttling import Attempt, Forward, response, simulated_http
from tests.sam_local import ResolvedFunction, SamApp

HOME = "eu-west-1"
STACK = "amikeeper"


@dataclass(frozen=True)
class Network:
    subnet_id: str
    group_id: str
    vpc_id: str


def drill_network(region: str = HOME) -> Network:
    """An isolated subnet and a security group with no inbound rules, as an operator would make them."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="drills", Description="no ingress", VpcId=vpc)["GroupId"]
    return Network(subnet, group, vpc)


@dataclass
class Drills:
    aws: Ec2Fidelity
    stack: MotoStack
    functions: dict[str, ResolvedFunction]
    network: Network
    # The status checks EC2 reports for each drill instance once it is listed (default: ok).
    checks: dict[str, str] = field(default_factory=dict)
    default_checks: str = "ok"

    def tick(self, when: datetime) -> dict[str, Any]:
        answer: dict[str, Any] = self.functions["DrillFunction"].invoke(
            {"scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "execution_id": f"tick-{when:%H%M%S}"}
        )
        return answer

    def follow(self) -> list[Any]:
        """The drill queue delivered to the checker until empty, EC2 reporting each drill's checks first."""
        return self.stack.deliver_drills(self.functions["DrillCheckerFunction"].invoke, between=self._report)

    def _report(self) -> None:
        for instance in drill_instances(states=("pending", "running")):
            checks = self.checks.get(instance["InstanceId"], self.default_checks)
            self.aws.set_instance_status(HOME, instance["InstanceId"], checks)


def drill_instances(*, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name=HOME)
    filters: list[Any] = [{"Name": f"tag:{DRILL}", "Values": [STACK]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    reservations: list[dict[str, Any]] = ec2.describe_instances(Filters=filters)["Reservations"]  # type: ignore[assignment]
    return [i for r in reservations for i in r["Instances"]]


def image_tags(image_id: str) -> dict[str, str]:
    [image] = boto3.client("ec2", region_name=HOME).describe_images(ImageIds=[image_id])["Images"]
    return tags_of(image)


def now() -> datetime:
    # The checker reads the real clock (as Lambda does); the tick gets the same "now" as its scheduled time.
    return datetime.now(UTC).replace(microsecond=0)


def backed_up(tags: dict[str, str], *, days: int = 2) -> tuple[str, list[str]]:
    """An instance with ``days`` daily backups (newest last)."""
    [instance] = run_instances(HOME, tags=tags, data_volumes=1)
    today = now().replace(hour=0, minute=0, second=0)
    images = [make_backup(HOME, instance, today - timedelta(days=n)) for n in range(days, 0, -1)]
    return instance, images


def make_drills(aws: Ec2Fidelity, sam_app: SamApp, **overrides: str) -> Drills:
    network = drill_network()
    parameters = {
        "VerifySchedule": "daily@00:00",
        "DrillSubnetIds": network.subnet_id,
        "DrillSecurityGroupIds": network.group_id,
    } | overrides
    stack = create_stack(overrides=parameters, policies={"nodrill": {"verify": "off"}})
    return Drills(aws, stack, stack.deploy(sam_app), network)


@pytest.fixture
def drills(aws: Ec2Fidelity, sam_app: SamApp) -> Drills:
    return make_drills(aws, sam_app)


def test_a_due_backup_is_booted_in_the_drill_network_verified_and_terminated(drills: Drills) -> None:
    # Given an opted-in instance with two backups and a daily verify schedule
    instance, [older, newest] = backed_up({"Backup": "true", "Name": "web-1"})
    # When the drill tick runs and the checker follows the drill until it is up
    started = drills.tick(now())
    [launched] = drill_instances()
    answers = drills.follow()
    # Then the newest backup was launched into the drill subnet and group, small, with no key or profile
    assert started["started"] == [instance] and started["failed"] == []
    assert launched["ImageId"] == newest
    assert launched["SubnetId"] == drills.network.subnet_id
    assert [g["GroupId"] for g in launched["SecurityGroups"]] == [drills.network.group_id]
    [image] = boto3.client("ec2", region_name=HOME).describe_images(ImageIds=[newest])["Images"]
    assert launched["InstanceType"] == {"x86_64": "t3.micro", "arm64": "t4g.micro"}[image["Architecture"]]
    assert "KeyName" not in launched and "IamInstanceProfile" not in launched
    assert tags_of(launched)[DRILL_OF] == newest and tags_of(launched)[INSTANCE_ID] == instance
    # And it was terminated once verified, and the backup says so (the older one is untouched)
    assert answers[-1] == {"batchItemFailures": []}
    assert drill_instances(states=("pending", "running", "stopping", "stopped")) == []
    tags = image_tags(newest)
    assert tags[RESTORE_DRILL].startswith("verified ") and "running=" in tags[RESTORE_DRILL]
    assert parse_slot(tags[RESTORE_VERIFIED]) <= now()
    assert RESTORE_DRILL not in image_tags(older)
    # And nobody is mailed for a drill that passed
    assert drills.stack.notifications() == []


def test_a_verified_instance_is_not_drilled_again_before_its_next_verify_slot(drills: Drills) -> None:
    # Given an instance whose drill passed this verify slot
    backed_up({"Backup": "true"})
    drills.tick(now())
    drills.follow()
    # When the tick runs again within the same slot
    again = drills.tick(now() + timedelta(minutes=30))
    # Then nothing is started
    assert again["started"] == [] and again["waiting"] == []
    assert len(drill_instances()) == 1


def test_a_drill_that_fails_its_status_checks_is_reported_once_terminated_and_not_retried(
    drills: Drills,
) -> None:
    # Given an instance whose backup boots into an instance that fails its status checks
    instance, [_, newest] = backed_up({"Backup": "true"})
    drills.default_checks = "impaired"
    # When the drill runs, and the tick comes again within the same verify slot
    drills.tick(now())
    drills.follow()
    again = drills.tick(now() + timedelta(minutes=30))
    # Then one restore.failed names the instance, the backup and the failing check
    [note] = drills.stack.notifications()
    assert (note.event, note.severity) == ("restore.failed", "error")
    assert note.document["instance_id"] == instance and note.document["image_id"] == newest
    assert "status check impaired" in note.document["reason"]
    # And the drill instance is terminated, the backup records the failure, and nothing is retried
    assert drill_instances(states=("pending", "running", "stopping", "stopped")) == []
    assert image_tags(newest)[RESTORE_DRILL].startswith("failed ")
    assert RESTORE_VERIFIED not in image_tags(newest)
    assert again["started"] == [] and drills.stack.notifications() == []


def test_a_crashed_drill_leaves_no_instance_once_the_sweeper_has_run(drills: Drills) -> None:
    # Given a drill that was launched but whose checker never ran (its messages lost)
    instance, [_, newest] = backed_up({"Backup": "true"})
    start = now()
    drills.tick(start)
    lost = drills.stack.drill_messages()
    assert len(lost) == 1
    [drill] = drill_instances()
    # When the tick runs after DrillMaxMinutes (20) plus the sweeper's grace (10) have passed
    ec2_backends[DEFAULT_ACCOUNT_ID][HOME].get_instance(drill["InstanceId"]).launch_time = start - timedelta(
        minutes=31
    )
    swept = drills.tick(start + timedelta(minutes=1))
    # Then the drill instance is terminated and the drill reported failed, once
    assert swept["swept"] == [drill["InstanceId"]]
    assert drill_instances(states=("pending", "running", "stopping", "stopped")) == []
    [note] = drills.stack.notifications()
    assert note.event == "restore.failed" and "terminated by the sweeper" in note.document["reason"]
    assert note.document["instance_id"] == instance
    assert image_tags(newest)[RESTORE_DRILL].startswith("failed ")
    # And the next tick has nothing left to sweep or to say
    assert drills.tick(start + timedelta(minutes=2))["swept"] == []
    assert drills.stack.notifications() == []


def test_drills_past_the_concurrency_cap_wait_for_a_later_tick(drills: Drills) -> None:
    # Given three instances due a drill and MaxConcurrentDrills at its default of 2
    instances = sorted(backed_up({"Backup": "true"})[0] for _ in range(3))
    # When the tick runs
    first = drills.tick(now())
    # Then two drills run and the third waits
    assert len(first["started"]) == 2 and len(first["waiting"]) == 1
    assert sorted(first["started"] + first["waiting"]) == instances
    # And once those are done, the next tick starts the third
    drills.follow()
    second = drills.tick(now() + timedelta(minutes=30))
    assert second["started"] == first["waiting"]


def test_drills_stop_at_the_days_minutes(aws: Ec2Fidelity, sam_app: SamApp) -> None:
    # Given a day's budget of one drill's longest run, and two instances due
    drills = make_drills(aws, sam_app, DrillMinutesPerDay="20", MaxConcurrentDrills="5")
    for _ in range(2):
        backed_up({"Backup": "true"})
    # When the tick runs
    result = drills.tick(now())
    # Then one drill runs and the other waits for minutes
    assert len(result["started"]) == 1 and len(result["waiting"]) == 1
    assert len(drill_instances()) == 1


def test_a_drill_group_that_lets_traffic_in_is_refused_and_reported(drills: Drills) -> None:
    # Given a drill group someone opened to SSH
    boto3.client("ec2", region_name=HOME).authorize_security_group_ingress(
        GroupId=drills.network.group_id, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    instance, [_, newest] = backed_up({"Backup": "true"})
    # When the tick runs
    result = drills.tick(now())
    # Then no drill instance is launched, and restore.failed names the group
    assert result["failed"] == [instance] and drill_instances() == []
    [note] = drills.stack.notifications()
    assert drills.network.group_id in note.document["reason"] and "inbound" in note.document["reason"]
    assert image_tags(newest)[RESTORE_DRILL].startswith("failed ")


def test_without_a_drill_network_a_due_drill_is_reported_once_per_verify_slot(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given drills asked for but no drill subnet or group configured
    drills = make_drills(aws, sam_app, DrillSubnetIds="", DrillSecurityGroupIds="")
    backed_up({"Backup": "true"})
    # When the tick runs twice in the same verify slot
    drills.tick(now())
    drills.tick(now() + timedelta(minutes=30))
    # Then one restore.failed says what to configure, and nothing is launched
    [note] = drills.stack.notifications()
    assert "DrillSubnetIds" in note.document["reason"]
    assert drill_instances() == []


def test_an_instance_whose_policy_turns_verify_off_is_not_drilled(drills: Drills) -> None:
    # Given one instance on the stack default (verify daily) and one on a policy with verify off
    drilled, _ = backed_up({"Backup": "true"})
    backed_up({"Backup": "nodrill"})
    # When the tick runs
    result = drills.tick(now())
    # Then only the first is drilled
    assert result["started"] == [drilled]


def test_a_drill_deletes_every_volume_it_made(drills: Drills) -> None:
    # Given an instance whose backup has a root and a data volume
    backed_up({"Backup": "true"})
    volumes_before = {
        v["VolumeId"] for v in boto3.client("ec2", region_name=HOME).describe_volumes()["Volumes"]
    }
    # When the drill runs to the end
    drills.tick(now())
    drills.follow()
    # Then no volume of the drill is left behind
    after = {v["VolumeId"] for v in boto3.client("ec2", region_name=HOME).describe_volumes()["Volumes"]}
    assert after <= volumes_before


def report(drills: Drills, when: datetime) -> Any:
    drills.functions["ReportFunction"].invoke(
        {"scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "execution_id": f"report-{when:%H%M%S}"}
    )
    [note] = [n for n in drills.stack.notifications() if n.event == "report.daily"]
    return note


def test_the_daily_report_shows_the_days_drills_and_flags_a_failed_one(drills: Drills) -> None:
    # Given two instances drilled today, one verified and one whose drill failed
    passed, [_, passed_backup] = backed_up({"Backup": "true", "Name": "web-1"})
    broken, _ = backed_up({"Backup": "true", "Name": "web-2"})
    drills.tick(now())
    for instance in drill_instances(states=("pending", "running")):
        if tags_of(instance)[INSTANCE_ID] == broken:
            drills.checks[instance["InstanceId"]] = "impaired"
    drills.follow()
    drills.stack.notifications()  # the restore.failed already went out
    # When the daily report runs
    note = report(drills, now() + timedelta(minutes=5))
    # Then it counts and lists both drills, and asks for attention because of the failed one
    assert note.severity == "warning"
    assert (note.document["drills_verified_total"], note.document["drills_failed_total"]) == (1, 1)
    listed = {i["instance_id"]: i["drill"] for i in note.document["instances"]}
    assert listed[passed]["state"] == "verified" and listed[passed]["image_id"] == passed_backup
    assert listed[broken]["state"] == "failed" and "impaired" in listed[broken]["detail"]
    assert "Restore drills" in note.document["text"] and "failed or overdue restore drill" in note.subject


def test_a_drill_not_run_within_a_day_of_its_slot_is_overdue_in_the_report(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given a weekly verify whose slot passed two days ago, and no drill since (the drills never ran)
    slot = now() - timedelta(days=2)
    drills = make_drills(aws, sam_app, VerifySchedule=f"weekly@{slot:%a}".lower() + f" {slot:%H}:00")
    instance, _ = backed_up({"Backup": "true"})
    # When the daily report runs
    note = report(drills, now())
    # Then the instance's drill is overdue, and the report asks for attention
    [listed] = note.document["instances"]
    assert listed["instance_id"] == instance and listed["drill"]["state"] == "overdue"
    assert note.document["drills_overdue_total"] == 1 and note.severity == "warning"


def test_a_drill_costs_one_launch_one_termination_one_tag_and_a_look_a_minute(drills: Drills) -> None:
    # Given one instance due a drill
    backed_up({"Backup": "true"})
    # When a tick starts its drill and the checker follows it (up by its second look)
    looks = iter(["initializing", "ok"])
    drills.default_checks = "initializing"

    def next_look() -> None:
        drills.default_checks = next(looks, "ok")

    def between() -> None:
        next_look()
        drills._report()

    # (one counter throughout: the functions' clients, once made, keep the handlers it installed)
    with counting() as counter:
        drills.tick(now())
        after_tick = counter.tally()
        drills.stack.deliver_drills(drills.functions["DrillCheckerFunction"].invoke, between=between)
        check = (counter.tally() - after_tick).calls
    tick = {key: count for key, count in after_tick.calls.items() if key.startswith("ec2:")}
    # Then the tick read the region once each for its drills and its fleet, its backups and its drill
    # network, and launched once
    assert tick == {
        "ec2:DescribeInstances": 2,
        "ec2:DescribeImages": 1,
        "ec2:DescribeSubnets": 1,
        "ec2:DescribeSecurityGroups": 1,
        "ec2:RunInstances": 1,
    }
    # And the checker looked once per delivery, terminated once and tagged the backup once
    assert check["ec2:DescribeInstanceStatus"] == 2
    assert check["ec2:TerminateInstances"] == 1 and check["ec2:CreateTags"] == 1


def test_a_tick_delivered_twice_launches_one_drill(drills: Drills) -> None:
    # Given an instance due a drill
    instance, _ = backed_up({"Backup": "true"})
    # When the scheduler delivers the same tick twice (at least once delivery), before any look
    first = drills.tick(now())
    second = drills.tick(now())
    # Then one drill instance runs, and the second tick sees it as in flight
    assert first["started"] == [instance] and second["started"] == []
    assert len(drill_instances()) == 1


def refuse_run_instances(attempt: Attempt, forward: Forward) -> Any:
    """EC2 out of capacity for the drill type, as it answers RunInstances."""
    if attempt.key == "ec2:RunInstances":
        body = (
            "<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not "
            "have sufficient t3.micro capacity.</Message></Error></Errors></Response>"
        )
        return response(500, body, {"Content-Type": "text/xml"})
    return forward()


def test_a_launch_ec2_refuses_is_reported_and_gives_its_minutes_back(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given two instances due a drill, a day's budget of one drill's longest run, and EC2 refusing launches
    drills = make_drills(aws, sam_app, DrillMinutesPerDay="20", MaxConcurrentDrills="5")
    first, [_, first_backup] = backed_up({"Backup": "true"})
    second, _ = backed_up({"Backup": "true"})
    # When the tick tries to start their drills
    with simulated_http(refuse_run_instances):
        result = drills.tick(now())
    # Then nothing runs, and each refusal is a restore.failed naming EC2's answer, recorded on the backup
    assert sorted(result["failed"]) == sorted([first, second]) and drill_instances() == []
    notes = drills.stack.notifications()
    assert [note.event for note in notes] == ["restore.failed"] * 2
    assert all("InsufficientInstanceCapacity" in note.document["reason"] for note in notes)
    assert image_tags(first_backup)[RESTORE_DRILL].startswith("failed ")
    # And the first refusal gave its minutes back: the second was tried, not left waiting for minutes
    assert result["waiting"] == []
