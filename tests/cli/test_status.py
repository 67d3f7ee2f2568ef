"""`amikeeper status`: every opted-in instance against its RPO, as the daily report judges it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.model import RESTORE_VERIFIED, Instance
from tests.cli.conftest import Operator, deploy, launched_at, table_rows
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import create_stack, make_backup, run_instances
from tests.sam_local import SamApp


def test_status_lists_each_opted_in_instance_with_its_rpo_status_and_last_verified_restore(
    operator: Operator,
) -> None:
    # Given a fresh backup, a three-day-old one of an instance launched long ago, an instance with no
    # backup yet, one not opted in, and a restore drill recorded on the fresh backup
    region = operator.region
    now = datetime.now(UTC)
    fresh, stale, new = (run_instances(region, tags={"Backup": "true", "Name": n})[0] for n in "abc")
    run_instances(region, tags={"Backup": "false", "Name": "opted-out"})
    fresh_ami = make_backup(region, fresh, now - timedelta(hours=1))
    make_backup(region, stale, now - timedelta(days=3))
    launched_at(region, stale, now - timedelta(days=30))
    boto3.client("ec2", region_name=region).create_tags(
        Resources=[fresh_ami], Tags=[{"Key": RESTORE_VERIFIED, "Value": "2026-11-29T05:10:00Z"}]
    )

    # When the operator asks for the status, for people and for scripts
    table = operator.run("status")
    document = operator.json("status")

    # Then each opted-in instance appears once with the report's verdict; the opted-out one does not
    assert table.exit_code == 0, table.output
    by_id = {entry["instance_id"]: entry for entry in document["instances"]}
    assert set(by_id) == {fresh, stale, new}
    assert by_id[fresh]["status"] == "ok"
    assert by_id[fresh]["image_id"] == fresh_ami
    assert by_id[fresh]["policy"] == "default"
    assert by_id[fresh]["schedule"] == "daily@03:00"
    assert by_id[fresh]["last_verified_restore"] == "2026-11-29T05:10:00Z"
    assert by_id[stale]["status"] == "violation"
    assert by_id[stale]["last_verified_restore"] is None
    assert by_id[new]["status"] == "new"
    assert by_id[new]["image_id"] is None
    # And the table shows the same, a violation first, with "never" where no restore was verified
    assert "┃ last verified restore ┃" in table.stdout
    rows = table_rows(table.stdout)
    assert [row[1] for row in rows] == [stale, new, fresh]
    # (and "-" for copies: the default policy copies nothing)
    assert [row[-3:] for row in rows] == [
        ["violation", "-", "never"],
        ["new", "-", "never"],
        ["ok", "-", "2026-11-29T05:10:00Z"],
    ]
    assert rows[2][5] == fresh_ami
    assert f"{stale}: newest available backup is 3d 00h old" in table.stdout


def test_status_covers_every_configured_region_with_the_stacks_own_opt_in_key(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given a stack deployed with OptInTagKey=Protect over two regions
    stack = create_stack(regions=("eu-west-1", "us-west-2"), overrides={"OptInTagKey": "Protect"})
    deploy(stack, sam_app)
    here = run_instances("eu-west-1", tags={"Protect": "true"})[0]
    there = run_instances("us-west-2", tags={"Protect": "true"})[0]
    run_instances("eu-west-1", tags={"Backup": "true"})

    # When the operator asks for the status
    document = Operator(stack.region).json("status")

    # Then both regions are read, and only instances carrying that stack's key are listed
    assert [region["region"] for region in document["regions"]] == ["eu-west-1", "us-west-2"]
    assert {(i["region"], i["instance_id"]) for i in document["instances"]} == {
        ("eu-west-1", here),
        ("us-west-2", there),
    }


def test_status_shows_the_regions_it_could_read_and_fails_for_one_it_could_not(
    aws: Ec2Fidelity, sam_app: SamApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack over two regions, where the operator may not describe instances in us-west-2
    stack = create_stack(regions=("eu-west-1", "us-west-2"))
    deploy(stack, sam_app)
    here = run_instances("eu-west-1", tags={"Backup": "true"})[0]
    listing = Ec2Gateway.opted_in_instances

    def denied_in_us_west_2(gateway: Ec2Gateway, opt_in_tag_key: str) -> Iterator[Instance]:
        if gateway._client.meta.region_name == "us-west-2":
            raise ClientError(
                {"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeInstances"
            )
        return listing(gateway, opt_in_tag_key)

    monkeypatch.setattr(Ec2Gateway, "opted_in_instances", denied_in_us_west_2)

    # When the operator asks for the status
    result = Operator(stack.region).run("status")

    # Then the readable region is shown, the other is named on stderr, and the exit code is 1
    assert result.exit_code == 1
    assert [row[1] for row in table_rows(result.stdout)] == [here]
    assert result.stderr.startswith("amikeeper: region us-west-2 could not be read: ClientError:")
