"""`amikeeper restore INSTANCE --from-copy REGION`: a new instance from a backup's disaster-recovery copy in
another region, in the subnet and security groups the operator names there; through the real entry point,
against moto with the fidelity fixture (copies as the copier makes them, gap 9)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from amikeeper_cli import wait
from amikeeper_cli.aws import Aws
from tests.cli.conftest import FRANKFURT, Configured, Operator, configured_instance, network, table_rows
from tests.fixtures.stack import MotoStack, make_backup, make_copy, run_instances

SLOTS = ("2026-11-27T03:00:00Z", "2026-11-28T03:00:00Z", "2026-11-29T03:00:00Z")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wait, "CLOCK", wait.Clock(sleep=lambda _: None, monotonic=lambda: 0.0))


def _instances(region: str) -> dict[str, dict[str, Any]]:
    ec2: Any = boto3.client("ec2", region_name=region)
    return {
        instance["InstanceId"]: instance
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    }


def _restored(region: str) -> list[str]:
    """The instances a restore launched in ``region``."""
    return [
        instance_id
        for instance_id, instance in _instances(region).items()
        if any(tag["Key"] == "amikeeper:restored-from" for tag in instance.get("Tags", []))
    ]


def _lose_the_source_region(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Every EC2 call to ``region`` fails as a region that is down does (CloudFormation and Lambda, where
    the CLI discovers the stack, still answer)."""
    original = Aws.ec2

    def ec2(self: Aws, asked: str) -> Any:
        if asked == region:
            raise EndpointConnectionError(endpoint_url=f"https://ec2.{region}.amazonaws.com")
        return original(self, asked)

    monkeypatch.setattr(Aws, "ec2", ec2)


def _backed_up_and_copied(
    region: str, slots: tuple[str, ...] = SLOTS[-1:]
) -> tuple[Configured, list[str], list[str]]:
    original = configured_instance(region, {"Name": "db-2", "Backup": "true", "team": "data"})
    backups = [make_backup(region, original.instance_id, slot) for slot in slots]
    return original, backups, [make_copy(region, backup, FRANKFURT) for backup in backups]


def test_a_terminated_instance_comes_back_from_its_copy_in_the_subnet_and_groups_given(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a backed-up instance whose backup was copied to Frankfurt, since terminated
    region = deployed.region
    original, [backup], [copy] = _backed_up_and_copied(region)
    boto3.client("ec2", region_name=region).terminate_instances(InstanceIds=[original.instance_id])
    # And a subnet, two security groups and the key pair prepared in Frankfurt
    there = network(FRANKFURT)

    # When the operator restores it from the copy there
    result = operator.run(
        "restore", original.instance_id, "--from-copy", FRANKFURT, *there.options(), "--yes", "--json"
    )

    # Then one instance runs in Frankfurt from the copy, in the subnet (and its zone) and groups given,
    # with the recorded type, profile, key and EBS optimization
    assert result.exit_code == 0, result.output
    [new] = _instances(FRANKFURT).values()
    assert (new["ImageId"], new["InstanceType"], new["SubnetId"]) == (copy, "m5.large", there.subnet_id)
    assert new["Placement"]["AvailabilityZone"] == there.availability_zone
    assert {group["GroupId"] for group in new["SecurityGroups"]} == set(there.security_group_ids)
    assert new["IamInstanceProfile"]["Arn"] == original.profile_arn
    assert (new["KeyName"], new["EbsOptimized"]) == ("ops", True)
    # And it carries the Name the copy carried and the copy it came from
    tags = {tag["Key"]: tag["Value"] for tag in new["Tags"]}
    assert tags == {"Name": "db-2", "amikeeper:restored-from": copy}
    # And the command says which copy of which backup, where, and that it is up
    document = result.stdout[: result.stdout.rindex("}") + 1]
    for field in (
        f'"image_id": "{copy}"',
        f'"copy_of": "{backup}"',
        f'"source_region": "{region}"',
        f'"region": "{FRANKFURT}"',
        f'"restored_instance_id": "{new["InstanceId"]}"',
        '"status": "ok"',
    ):
        assert field in document


def test_it_needs_nothing_from_the_source_region_once_that_is_lost(
    deployed: MotoStack, operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copied backup whose source was since deregistered, and the source region's EC2 down
    region = deployed.region
    original, [backup], [copy] = _backed_up_and_copied(region)
    boto3.client("ec2", region_name=region).deregister_image(ImageId=backup)
    there = network(FRANKFURT)
    _lose_the_source_region(monkeypatch, region)

    # When the operator restores from the copy, newest first, then naming the source backup
    newest = operator.run(
        "restore", original.instance_id, "--from-copy", FRANKFURT, *there.options(), "--yes"
    )
    named = operator.run(
        "restore",
        original.instance_id,
        "--from-copy",
        FRANKFURT,
        "--backup",
        backup,
        *there.options(),
        "--yes",
    )

    # Then both launch the copy in Frankfurt
    assert (newest.exit_code, named.exit_code) == (0, 0), newest.output + named.output
    assert [instance["ImageId"] for instance in _instances(FRANKFURT).values()] == [copy, copy]


def test_dry_run_shows_the_copy_and_what_changed_and_launches_nothing(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a copied backup and a network in Frankfurt
    region = deployed.region
    original, [backup], [copy] = _backed_up_and_copied(region)
    there = network(FRANKFURT)

    # When the operator dry-runs the restore from the copy, with another instance type
    result = operator.run(
        "restore",
        original.instance_id,
        "--from-copy",
        FRANKFURT,
        *there.options(),
        "--instance-type",
        "m5.xlarge",
        "--dry-run",
    )

    # Then EC2's DryRun passed and the plan shows the copy, its source and both regions, and each setting
    # given with the value recorded
    assert result.exit_code == 0, result.output
    assert "Dry run: EC2 says the request would succeed; nothing was changed." in result.stdout
    rows = {row[0]: row[1] for row in table_rows(result.stdout)}
    assert rows["AMI"] == copy
    assert rows["copy of"] == f"{backup} in {region}"
    assert rows["region"] == FRANKFURT
    assert rows["instance type"] == "m5.xlarge (recorded: m5.large)"
    assert rows["subnet"] == f"{there.subnet_id} (recorded: {original.subnet_id})"
    assert rows["availability zone"] == f"{there.availability_zone} (recorded: {original.availability_zone})"
    assert rows["security groups"].startswith(", ".join(there.security_group_ids) + " (recorded: ")
    assert rows["key pair"] == "ops"
    # And nothing runs in Frankfurt
    assert _instances(FRANKFURT) == {}


def test_at_and_backup_pick_the_copy_of_the_backup_they_would_pick(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given three daily backups of an instance, each copied to Frankfurt
    region = deployed.region
    original, backups, copies = _backed_up_and_copied(region, SLOTS)
    options = [original.instance_id, "--from-copy", FRANKFURT, *network(FRANKFURT).options(), "--dry-run"]

    # When the operator asks (dry run) for several times, for a backup by its id, and for a copy by its id
    picked = {
        at: operator.json("restore", *options, "--at", at)["image_id"]
        for at in ("2026-11-28T15:00:00Z", "2026-11-28T04:00:00+01:00", "2026-11-27T03:00:00Z")
    }
    newest = operator.json("restore", *options)["image_id"]
    by_backup = operator.json("restore", *options, "--backup", backups[0])
    by_copy = operator.json("restore", *options, "--backup", copies[1])

    # Then each is the copy of the backup restore would pick in the source region
    assert picked == {
        "2026-11-28T15:00:00Z": copies[1],
        "2026-11-28T04:00:00+01:00": copies[1],
        "2026-11-27T03:00:00Z": copies[0],
    }
    assert newest == copies[2]
    assert (by_backup["image_id"], by_backup["copy_of"]) == (copies[0], backups[0])
    assert (by_copy["image_id"], by_copy["copy_of"]) == (copies[1], backups[1])


def test_bad_input_is_one_line_exit_2_and_launches_nothing(deployed: MotoStack, operator: Operator) -> None:
    # Given a copied backup, a backup that was not copied, and another stack's copy of the same instance
    region = deployed.region
    original, _, _ = _backed_up_and_copied(region)
    instance = original.instance_id
    uncopied = make_backup(region, instance, SLOTS[0])
    theirs = make_copy(region, make_backup(region, instance, SLOTS[1], stack_name="staging"), FRANKFURT)
    # And a network in Frankfurt, a group of another VPC there, and one without the recorded key pair
    there = network(FRANKFURT)
    stray = boto3.client("ec2", region_name=FRANKFURT).create_security_group(
        GroupName="stray", Description="x"
    )
    keyless = network("eu-west-3", key_name=None)
    make_copy(region, uncopied, "eu-west-3")
    subnet = ["--subnet", there.subnet_id]
    copy_options = ["--from-copy", FRANKFURT, *there.options()]

    # When the operator restores from a copy without a subnet or groups, from a region without a copy (or
    # with backups only), in place, from a backup not copied there, from another stack's copy, from a
    # region that does not exist, with a group outside the subnet's VPC, where the recorded key pair is
    # missing, or gives a subnet without --from-copy
    results = {
        "no subnet": operator.run("restore", instance, "--from-copy", FRANKFURT, "--yes"),
        "no groups": operator.run("restore", instance, "--from-copy", FRANKFURT, *subnet, "--yes"),
        "backups, no copy": operator.run(
            "restore", instance, "--from-copy", region, *there.options(), "--yes"
        ),
        "no copy there": operator.run(
            "restore", instance, "--from-copy", "us-east-1", *there.options(), "--yes"
        ),
        "in place": operator.run("restore", instance, *copy_options, "--mode", "replace-root", "--yes"),
        "not copied": operator.run("restore", instance, *copy_options, "--backup", uncopied, "--yes"),
        "theirs": operator.run("restore", instance, *copy_options, "--backup", theirs, "--yes"),
        "no region": operator.run(
            "restore", instance, "--from-copy", "eu-nowhere-9", *there.options(), "--yes"
        ),
        "other vpc": operator.run(
            "restore",
            instance,
            "--from-copy",
            FRANKFURT,
            *subnet,
            "--security-group",
            stray["GroupId"],
            "--yes",
        ),
        "no key": operator.run("restore", instance, "--from-copy", "eu-west-3", *keyless.options(), "--yes"),
        "no from-copy": operator.run("restore", instance, *subnet, "--yes"),
    }

    # Then each is one line on stderr with exit code 2, and nothing runs anywhere
    assert {name: r.exit_code for name, r in results.items()} == dict.fromkeys(results, 2)
    assert {name: r.stderr.count("\n") for name, r in results.items()} == dict.fromkeys(results, 1)
    errors = {name: r.stderr.removeprefix("amikeeper: error: ").rstrip("\n") for name, r in results.items()}
    for name in ("no subnet", "no groups"):
        assert "give --subnet SUBNET_ID and --security-group SG_ID (repeatable)" in errors[name]
    assert errors["no copy there"] == f"no copy of {instance} by stack 'amikeeper' in us-east-1"
    assert errors["backups, no copy"] == f"no copy of {instance} by stack 'amikeeper' in {region}"
    assert errors["in place"].startswith("--from-copy restores as a new instance only")
    assert errors["not copied"] == f"no copy of {uncopied} by stack 'amikeeper' in {FRANKFURT}"
    assert (
        errors["theirs"]
        == f"{theirs} ({FRANKFURT}) belongs to amikeeper stack 'staging', not 'amikeeper' (see --stack)"
    )
    assert errors["no region"] == "--from-copy 'eu-nowhere-9' is not an EC2 region"
    assert f"security group {stray['GroupId']} (" in errors["other vpc"]
    assert f"is not in the VPC of {there.subnet_id}" in errors["other vpc"]
    assert errors["no key"] == (
        "the recorded key pair 'ops' does not exist in eu-west-3 (key pairs are regional): import its public "
        "key there under that name, or pass --key-name NAME or --no-key"
    )
    assert errors["no from-copy"].endswith("go with --from-copy")
    assert all(_restored(where) == [] for where in (region, FRANKFURT, "eu-west-3", "us-east-1"))


def test_no_key_launches_without_the_key_pair_the_destination_lacks(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a copy in a region where the recorded key pair was never imported
    region = deployed.region
    original, _, [copy] = _backed_up_and_copied(region)
    there = network(FRANKFURT, key_name=None)
    # When the operator restores it there without a key
    result = operator.run(
        "restore", original.instance_id, "--from-copy", FRANKFURT, *there.options(), "--no-key", "--yes"
    )
    # Then the instance runs from the copy with no key pair
    assert result.exit_code == 0, result.output
    [new] = _instances(FRANKFURT).values()
    assert new["ImageId"] == copy and "KeyName" not in new


def test_an_instance_never_copied_anywhere_is_told_so(deployed: MotoStack, operator: Operator) -> None:
    # Given a backed-up instance whose backups were never copied
    region = deployed.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    make_backup(region, instance, SLOTS[-1])
    # When the operator restores it from Frankfurt
    result = operator.run(
        "restore", instance, "--from-copy", FRANKFURT, *network(FRANKFURT).options(), "--yes"
    )
    # Then it is told there is no copy there
    assert result.exit_code == 2
    assert result.stderr == f"amikeeper: error: no copy of {instance} by stack 'amikeeper' in {FRANKFURT}\n"
