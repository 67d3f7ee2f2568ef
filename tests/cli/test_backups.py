"""`amikeeper backups INSTANCE`: each backup with what retention does with it and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from tests.cli.conftest import Operator, table_rows
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import make_backup, run_instances


def test_backups_shows_retention_reasons_hold_and_use_of_each_backup(operator: Operator) -> None:
    # Given ten daily backups of one instance that keeps the last 3, the oldest on hold, the one before
    # it launched by a running instance, and a backup of some other instance
    region = operator.region
    instance = run_instances(region, tags={"Backup": "true", "Backup:Retain": "last=3"})[0]
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    amis = [make_backup(region, instance, today - timedelta(days=days)) for days in range(10)]
    ec2 = boto3.client("ec2", region_name=region)
    ec2.create_tags(Resources=[amis[9]], Tags=[{"Key": "Backup:Hold", "Value": "true"}])
    user = run_instances(region, tags={}, image_id=amis[8])[0]
    other = make_backup(region, run_instances(region, tags={"Backup": "true"})[0], today)

    # When the operator lists that instance's backups
    table = operator.run("backups", instance)
    document = operator.json("backups", instance)

    # Then every backup of it is listed, newest first, with retention's verdict and its reasons
    assert table.exit_code == 0, table.output
    listed = document["backups"]
    assert [entry["image_id"] for entry in listed] == amis
    assert other not in table.stdout
    assert listed[0]["action"] == "keep" and "newest backup" in listed[0]["reasons"]
    assert listed[0]["trigger"] == "schedule" and listed[0]["state"] == "available"
    assert [entry["action"] for entry in listed] == ["keep"] * 3 + ["delete"] * 5 + ["keep"] * 2
    assert listed[3]["reasons"] == ["expired"]
    assert (listed[9]["action"], listed[9]["outcome"], listed[9]["held"]) == ("keep", "held", True)
    assert "held" in listed[9]["reasons"]
    assert listed[8]["reasons"] == ["in use"]
    # (once, with its state, though both the listing and DescribeImageReferences found it)
    assert listed[8]["used_by"] == [f"instance {user} (running)"]
    assert document["policy"] == "default" and document["retention"] == "last=3"
    # And the table says the same to a person
    rows = {row[0]: row for row in table_rows(table.stdout)}
    assert (rows[amis[9]][4], rows[amis[9]][6]) == ("keep (held)", "held")
    assert rows[amis[8]][4:] == [
        "keep (kept-in-use)",
        "in use",
        "-",
        f"instance {user} (running)",
        "-",
    ]
    assert rows[amis[0]][4:6] == ["keep (kept)", "last #1; newest backup"]
    assert rows[amis[3]][4:6] == ["delete (expired)", "expired"]


def test_backups_of_an_instance_ec2_no_longer_lists_follow_the_retention_recorded_on_them(
    operator: Operator,
) -> None:
    # Given a backup of an instance id EC2 does not know (terminated long ago)
    region = operator.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    ami = make_backup(region, instance, datetime.now(UTC) - timedelta(hours=2))
    boto3.client("ec2", region_name=region).terminate_instances(InstanceIds=[instance])

    # When the operator lists its backups
    document = operator.json("backups", instance)

    # Then its newest backup is kept, under the grace a terminated instance's newest backup has
    assert document["status"] == "gone"
    assert [entry["image_id"] for entry in document["backups"]] == [ami]
    assert "newest backup" in document["backups"][0]["reasons"]
    assert "gone since" in document["note"]


def test_backups_of_an_unknown_instance_is_bad_input(operator: Operator) -> None:
    # Given an instance id that exists nowhere in the stack's regions
    unknown = "i-0123456789abcdef0"

    # When the operator lists its backups, or passes something that is no instance id at all
    result = operator.run("backups", unknown)
    malformed = operator.run("backups", "web-1")

    # Then one line on stderr says so, nothing on stdout, and the exit code is 2
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"amikeeper: error: unknown instance {unknown}: EC2 does not list it and stack amikeeper "
        "has no backups of it in eu-west-1"
    ]
    assert malformed.exit_code == 2
    assert malformed.stderr == "amikeeper: error: 'web-1' is not an instance id (i-…)\n"


def test_backups_sees_an_instance_launched_from_a_backup_without_describe_image_references(
    aws: Ec2Fidelity, operator: Operator
) -> None:
    # Given a region where DescribeImageReferences is unavailable, and an instance launched from the
    # older of two backups of an instance that keeps only the last one
    aws.disable_image_references(True)
    region = operator.region
    instance = run_instances(region, tags={"Backup": "true", "Backup:Retain": "last=1"})[0]
    today = datetime.now(UTC).replace(microsecond=0)
    newer, older = (make_backup(region, instance, today - timedelta(days=days)) for days in (0, 1))
    user = run_instances(region, tags={}, image_id=older)[0]

    # When the operator lists the backups
    document = operator.json("backups", instance)

    # Then the older one is kept because that instance uses it, as a retention run would keep it
    entries = {entry["image_id"]: entry for entry in document["backups"]}
    assert entries[older]["action"] == "keep"
    assert entries[older]["used_by"] == [f"instance {user} (running)"]
    assert entries[newer]["used_by"] == []
