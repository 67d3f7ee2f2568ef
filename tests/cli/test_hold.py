"""`amikeeper hold AMI` / `amikeeper release AMI`: the legal hold, on this stack's backups only."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3

from amikeeper.backups import is_held
from tests.cli.conftest import Operator
from tests.fixtures.stack import MotoStack, make_backup, run_instances


def _tags(region: str, image_id: str) -> dict[str, str]:
    image = boto3.client("ec2", region_name=region).describe_images(ImageIds=[image_id])["Images"][0]
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


def test_hold_then_release_a_backup_of_this_stack(deployed: MotoStack, operator: Operator) -> None:
    # Given a backup of this stack, which also carries a hold placed under an earlier OptInTagKey
    region = deployed.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    ami = make_backup(region, instance, datetime.now(UTC))
    boto3.client("ec2", region_name=region).create_tags(
        Resources=[ami], Tags=[{"Key": "OldKey:Hold", "Value": "true"}]
    )

    # When the operator holds it
    held = operator.run("hold", ami, "--json")

    # Then it carries Backup:Hold=true, and the operator is told
    assert held.exit_code == 0, held.output
    assert _tags(region, ami)["Backup:Hold"] == "true"
    assert '"held": true' in held.stdout

    # When the operator releases it
    released = operator.run("release", ami)

    # Then no hold key is left, the old one included, so retention may delete it again
    assert released.exit_code == 0, released.output
    tags = _tags(region, ami)
    assert not is_held(tags)
    assert "Backup:Hold" not in tags and "OldKey:Hold" not in tags
    assert tags["amikeeper:managed-by"] == "amikeeper"
    assert f"{ami}: removed Backup:Hold, OldKey:Hold" in released.stdout


def test_hold_refuses_an_ami_of_another_stack_or_one_amikeeper_did_not_make(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a backup made by another amikeeper stack, and an AMI made by hand
    region = deployed.region
    instance = run_instances(region, tags={"Backup": "true"})[0]
    theirs = make_backup(region, instance, datetime.now(UTC), stack_name="staging")
    ec2 = boto3.client("ec2", region_name=region)
    by_hand = ec2.create_image(InstanceId=instance, Name="by-hand")["ImageId"]
    before = {ami: _tags(region, ami) for ami in (theirs, by_hand)}

    # When the operator tries to hold or release them, or an AMI that does not exist
    results = {
        "theirs": operator.run("hold", theirs),
        "theirs-release": operator.run("release", theirs),
        "by-hand": operator.run("hold", by_hand),
        "missing": operator.run("hold", "ami-0123456789abcdef0"),
    }

    # Then each is refused with one line and exit code 2, and no tag changed anywhere
    assert {name: result.exit_code for name, result in results.items()} == dict.fromkeys(results, 2)
    assert results["theirs"].stderr == (
        f"amikeeper: error: {theirs} (eu-west-1) belongs to amikeeper stack 'staging', not 'amikeeper' "
        "(see --stack)\n"
    )
    assert results["by-hand"].stderr == (
        f"amikeeper: error: {by_hand} (eu-west-1) was not made by amikeeper: only backups of stack "
        "'amikeeper' qualify\n"
    )
    missing = "amikeeper: error: no AMI ami-0123456789abcdef0 in this account in eu-west-1\n"
    assert results["missing"].stderr == missing
    assert all(result.stdout == "" for result in results.values())
    assert {ami: _tags(region, ami) for ami in (theirs, by_hand)} == before
