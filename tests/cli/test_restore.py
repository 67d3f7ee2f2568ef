"""`amikeeper restore INSTANCE`: a new instance from a backup's recorded configuration, or a root volume
replaced in place; through the real entry point, against moto with the fidelity fixture (gaps 10-12)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper_cli import wait
from tests.cli.conftest import Operator, configured_instance
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, make_backup, run_instances

SLOTS = ("2026-11-27T03:00:00Z", "2026-11-28T03:00:00Z", "2026-11-29T03:00:00Z")


@dataclass
class FakeClock:
    """Stands in for time: a sleep advances it and lets the world move on (what EC2 does meanwhile)."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    meanwhile: Callable[[], object] = lambda: None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.meanwhile()

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(wait, "CLOCK", wait.Clock(sleep=fake.sleep, monotonic=fake.monotonic))
    return fake


@dataclass
class Launches:
    """The instances the restore launched, and the status checks EC2 reports for them at first."""

    ids: list[str] = field(default_factory=list)
    checks: str = "ok"


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch, aws: Ec2Fidelity, deployed: MotoStack) -> Launches:
    """Sets the checks of each instance the restore launches right after RunInstances: moto reports every
    instance `ok` at once, and only then can the fixture's set_instance_status name it."""
    seen = Launches()
    original = Ec2Gateway.run_from_backup

    def run_then_set(self: Ec2Gateway, *args: Any, **kwargs: Any) -> str | None:
        instance_id = original(self, *args, **kwargs)
        if instance_id is not None:
            seen.ids.append(instance_id)
            aws.set_instance_status(deployed.region, instance_id, seen.checks)
        return instance_id

    monkeypatch.setattr(Ec2Gateway, "run_from_backup", run_then_set)
    return seen


def _instances(region: str) -> dict[str, dict[str, Any]]:
    ec2: Any = boto3.client("ec2", region_name=region)
    return {
        instance["InstanceId"]: instance
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    }


def _root_volume(region: str, instance_id: str) -> dict[str, Any]:
    instance = _instances(region)[instance_id]
    [mapping] = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]]
    ec2: Any = boto3.client("ec2", region_name=region)
    volume: dict[str, Any] = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"][0]
    return volume


def _root_tasks(region: str) -> list[Any]:
    ec2 = boto3.client("ec2", region_name=region)
    return list(ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"])


def test_a_terminated_instance_comes_back_with_its_configuration_and_tags(
    deployed: MotoStack, operator: Operator, clock: FakeClock, launches: Launches, aws: Ec2Fidelity
) -> None:
    # Given a backed-up instance with a subnet, security groups, a profile, a key and a data volume,
    # which has since been terminated
    region = deployed.region
    original = configured_instance(region, {"Name": "web-1", "Backup": "true"}, data_volumes=1)
    ami = make_backup(region, original.instance_id, SLOTS[-1])
    boto3.client("ec2", region_name=region).terminate_instances(InstanceIds=[original.instance_id])
    before = set(_instances(region))
    # And EC2 reports the new instance's checks initializing until the first poll has waited
    launches.checks = "initializing"
    clock.meanwhile = lambda: aws.set_instance_status(region, launches.ids[0], "ok")

    # When the operator restores it
    result = operator.run("restore", original.instance_id, "--yes", "--json")

    # Then one new instance runs from that AMI in the original subnet and zone, with its groups,
    # profile, key, type and EBS optimization, its Name and the AMI it came from as tags
    assert result.exit_code == 0, result.output
    [new_id] = set(_instances(region)) - before
    new = _instances(region)[new_id]
    assert (new["ImageId"], new["InstanceType"], new["SubnetId"]) == (ami, "m5.large", original.subnet_id)
    assert new["Placement"]["AvailabilityZone"] == original.availability_zone
    assert {group["GroupId"] for group in new["SecurityGroups"]} == set(original.security_group_ids)
    assert new["IamInstanceProfile"]["Arn"] == original.profile_arn
    assert (new["KeyName"], new["EbsOptimized"]) == ("ops", True)
    tags = {tag["Key"]: tag["Value"] for tag in new["Tags"]}
    assert tags == {"Name": "web-1", "amikeeper:restored-from": ami}
    # And every volume of the backup came back (root and data volume)
    assert len([m for m in new["BlockDeviceMappings"] if "Ebs" in m]) == 2
    # And the command waited one poll for the checks and says how long it took
    document = result.stdout[: result.stdout.rindex("}") + 1]
    assert '"status": "ok"' in document and f'"restored_instance_id": "{new_id}"' in document
    assert clock.sleeps == [wait.POLL_SECONDS]
    assert '"seconds": 10' in document


def test_at_picks_the_newest_backup_at_or_before_the_time_offset_included(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given three daily backups of an instance
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    amis = [make_backup(region, instance, slot) for slot in SLOTS]
    # When the operator asks (dry run) for the state at several times
    picked = {
        at: operator.json("restore", instance, "--at", at, "--dry-run")["image_id"]
        for at in ("2026-11-28T15:00:00Z", "2026-11-28T04:00:00+01:00", "2026-11-27T03:00:00Z")
    }
    newest = operator.json("restore", instance, "--dry-run")["image_id"]
    # Then each is the newest backup taken at or before it, the offset honoured, and by default the newest
    assert picked == {
        "2026-11-28T15:00:00Z": amis[1],
        "2026-11-28T04:00:00+01:00": amis[1],
        "2026-11-27T03:00:00Z": amis[0],
    }
    assert newest == amis[2]


def test_dry_run_changes_nothing_in_either_mode(deployed: MotoStack, operator: Operator) -> None:
    # Given a running, backed-up instance
    region = deployed.region
    instance = configured_instance(region, {"Name": "db-1", "Backup": "true"}).instance_id
    ami = make_backup(region, instance, SLOTS[-1])
    before = _instances(region)
    root = _root_volume(region, instance)["VolumeId"]

    # When the operator dry-runs both modes
    new = operator.run("restore", instance, "--dry-run")
    in_place = operator.json("restore", instance, "--mode", "replace-root", "--dry-run")

    # Then both show the plan, EC2's DryRun passed, and no instance, task or volume changed
    assert new.exit_code == 0, new.output
    assert "Dry run: EC2 says the request would succeed; nothing was changed." in new.stdout
    assert "m5.large" in new.stdout and ami in new.stdout
    assert (in_place["status"], in_place["image_id"], in_place["task_id"]) == ("dry-run", ami, None)
    assert set(_instances(region)) == set(before)
    assert _root_tasks(region) == []
    assert _root_volume(region, instance)["VolumeId"] == root


def test_replace_root_keeps_the_instance_and_gives_it_a_root_from_the_backup(
    deployed: MotoStack, operator: Operator, clock: FakeClock, aws: Ec2Fidelity
) -> None:
    # Given a running instance with a backup, whose root volume has been in use since
    region = deployed.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    ami = make_backup(region, instance, SLOTS[-1])
    old_root = _root_volume(region, instance)["VolumeId"]
    ami_root = boto3.client("ec2", region_name=region).describe_images(ImageIds=[ami])["Images"][0]
    root_snapshot = ami_root["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    # And EC2 finishes the task while the command waits
    clock.meanwhile = lambda: aws.finish_replace_root_volume_tasks(region, "succeeded")

    # When the operator restores it in place
    result = operator.json("restore", instance, "--mode", "replace-root", "--yes")

    # Then the same instance has a new root volume made from the backup's root snapshot, the old one kept
    new_root = _root_volume(region, instance)
    assert new_root["VolumeId"] != old_root and new_root["SnapshotId"] == root_snapshot
    assert boto3.client("ec2", region_name=region).describe_volumes(VolumeIds=[old_root])["Volumes"]
    [task] = _root_tasks(region)
    assert (task["InstanceId"], task["ImageId"], task["DeleteReplacedRootVolume"]) == (instance, ami, False)
    assert (result["status"], result["restored_instance_id"], result["task_id"]) == (
        "ok",
        instance,
        task["ReplaceRootVolumeTaskId"],
    )


def test_a_failed_replace_root_task_exits_1_with_the_reason(
    deployed: MotoStack, operator: Operator, clock: FakeClock, aws: Ec2Fidelity
) -> None:
    # Given a backed-up running instance, and a task EC2 fails
    region = deployed.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    make_backup(region, instance, SLOTS[-1])
    old_root = _root_volume(region, instance)["VolumeId"]
    clock.meanwhile = lambda: aws.finish_replace_root_volume_tasks(region, "failed")
    # When the operator restores it in place
    result = operator.run("restore", instance, "--mode", "replace-root", "--yes")
    # Then the command fails naming the task, and the root is untouched
    [task] = _root_tasks(region)
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"amikeeper: restore failed: replace-root-volume task {task['ReplaceRootVolumeTaskId']} failed\n"
    )
    assert _root_volume(region, instance)["VolumeId"] == old_root


def test_a_restored_instance_that_fails_its_status_checks_exits_1_naming_the_check(
    deployed: MotoStack, operator: Operator, clock: FakeClock, launches: Launches
) -> None:
    # Given a backup, and EC2 reporting the launched instance impaired
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    make_backup(region, instance, SLOTS[-1])
    launches.checks = "impaired"
    # When the operator restores it
    result = operator.run("restore", instance, "--yes", "--json")
    # Then it exits 1 and names the failed checks
    assert result.exit_code == 1
    assert "instance status check impaired (reachability failed)" in result.stderr
    assert "system status check impaired (reachability failed)" in result.stderr
    assert '"status": "failed"' in result.stdout


def test_a_restore_still_initializing_at_the_timeout_exits_1_saying_what_is_pending(
    deployed: MotoStack, operator: Operator, clock: FakeClock, launches: Launches
) -> None:
    # Given a backup, and a launched instance whose checks never leave `initializing`
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    make_backup(region, instance, SLOTS[-1])
    launches.checks = "initializing"
    # When the operator restores it with a 30-second timeout
    result = operator.run("restore", instance, "--yes", "--timeout", "30")
    # Then it gives up after 30 seconds of polling and says what it was still waiting for
    assert result.exit_code == 1
    assert sum(clock.sleeps) == 30
    assert "timed out after 30s, still waiting for" in result.stderr
    assert "instance status check (initializing)" in result.stderr


def test_no_wait_returns_once_the_instance_is_launched(
    deployed: MotoStack, operator: Operator, clock: FakeClock, launches: Launches
) -> None:
    # Given a backup, and a launched instance whose checks have not passed yet
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    make_backup(region, instance, SLOTS[-1])
    launches.checks = "initializing"
    # When the operator restores it without waiting
    result = operator.json("restore", instance, "--yes", "--no-wait")
    # Then the command returns at once with the new instance's id
    assert (result["status"], result["restored_instance_id"]) == ("started", launches.ids[0])
    assert clock.sleeps == []


def test_answering_no_changes_nothing(deployed: MotoStack, operator: Operator) -> None:
    # Given a backed-up instance
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    ami = make_backup(region, instance, SLOTS[-1])
    before = set(_instances(region))
    # When the operator is shown the plan and answers no
    result = operator.run("restore", instance, input="n\n")
    # Then the plan was shown, nothing was launched, and the exit code says it was not done
    assert result.exit_code == 1
    assert ami in result.stdout and "subnet" in result.stdout
    assert result.stderr.endswith("amikeeper: error: cancelled: nothing was changed\n")
    assert set(_instances(region)) == before


def test_bad_input_is_one_line_exit_2_and_changes_nothing(deployed: MotoStack, operator: Operator) -> None:
    # Given a backed-up instance, another backed-up instance, and a backup made by another stack
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    make_backup(region, instance, SLOTS[1])
    other = run_instances(region, tags={"Backup": "true"})[0]
    others = make_backup(region, other, SLOTS[1])
    theirs = make_backup(region, instance, SLOTS[2], stack_name="staging")
    before = set(_instances(region))

    # When the operator names an unknown instance, another stack's AMI, another instance's AMI, a time
    # before the first backup, a time without an offset, or both a backup and a time
    results = {
        "unknown": operator.run("restore", "i-0123456789abcdef0", "--yes"),
        "theirs": operator.run("restore", instance, "--backup", theirs, "--yes"),
        "others": operator.run("restore", instance, "--backup", others, "--yes"),
        "too early": operator.run("restore", instance, "--at", "2026-11-01T00:00:00Z", "--yes"),
        "no offset": operator.run("restore", instance, "--at", "2026-11-28T04:00:00", "--yes"),
        "both": operator.run("restore", instance, "--backup", others, "--at", SLOTS[1], "--yes"),
    }

    # Then each is one line on stderr, exit code 2, nothing on stdout, and no instance launched
    assert {name: r.exit_code for name, r in results.items()} == dict.fromkeys(results, 2)
    assert {name: r.stderr.count("\n") for name, r in results.items()} == dict.fromkeys(results, 1)
    assert all(r.stdout == "" for r in results.values())
    assert results["unknown"].stderr == (
        "amikeeper: error: no backups of i-0123456789abcdef0 by stack 'amikeeper' in eu-west-1\n"
    )
    assert "belongs to amikeeper stack 'staging', not 'amikeeper'" in results["theirs"].stderr
    assert (
        results["others"].stderr == f"amikeeper: error: {others} is a backup of {other}, not of {instance}\n"
    )
    assert (
        f"no available backup of {instance} at or before 2026-11-01T00:00:00Z" in results["too early"].stderr
    )
    assert "has no offset" in results["no offset"].stderr
    assert results["both"].stderr == "amikeeper: error: give --backup or --at, not both\n"
    assert set(_instances(region)) == before
    assert _root_tasks(region) == []


def test_a_backup_that_does_not_record_its_launch_configuration_is_refused_as_a_new_instance(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a backup whose security groups and profile were not recorded (made before they were, or
    # longer than a tag holds)
    region = deployed.region
    instance = configured_instance(region, {"Backup": "true"}).instance_id
    ami = make_backup(region, instance, SLOTS[-1])
    missing = ["amikeeper:launch-security-groups", "amikeeper:launch-profile"]
    boto3.client("ec2", region_name=region).delete_tags(Resources=[ami], Tags=[{"Key": k} for k in missing])
    before = set(_instances(region))
    # When the operator restores it as a new instance
    result = operator.run("restore", instance, "--yes")
    # Then it is refused, naming what the backup does not say, and nothing is launched
    assert result.exit_code == 2
    assert result.stderr == (
        f"amikeeper: error: {ami} does not record amikeeper:launch-security-groups, amikeeper:launch-profile "
        "(made before amikeeper recorded launch settings, or a value too long for a tag): it cannot be "
        "launched as the original was\n"
    )
    assert set(_instances(region)) == before
