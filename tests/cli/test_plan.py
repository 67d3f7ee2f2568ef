"""`amikeeper plan`: retention's dry run, the very plan the retention function then carries out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from tests.cli.conftest import Operator, table_rows
from tests.fixtures.stack import MotoStack, make_backup, managed_images, run_instances
from tests.sam_local import SamApp


def test_plan_lists_exactly_what_the_retention_function_then_deletes(
    deployed: MotoStack, sam_app: SamApp, operator: Operator
) -> None:
    # Given two instances with fifteen days of daily backups each, one of them keeping only the last 2,
    # a held backup, and an AMI another tool made
    region = deployed.region
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    default = run_instances(region, tags={"Backup": "true"})[0]
    short = run_instances(region, tags={"Backup": "true", "Backup:Retain": "last=2"})[0]
    backups = {
        instance: [make_backup(region, instance, today - timedelta(days=days)) for days in range(15)]
        for instance in (default, short)
    }
    ec2 = boto3.client("ec2", region_name=region)
    ec2.create_tags(Resources=[backups[short][10]], Tags=[{"Key": "Backup:Hold", "Value": "yes"}])
    foreign = ec2.create_image(InstanceId=short, Name="someone-elses")["ImageId"]

    # When the operator asks for the plan
    table = operator.run("plan")
    document = operator.json("plan")

    # Then it judges every AMI of this stack (and nothing else), and deletes only what the rules let go
    assert table.exit_code == 0, table.output
    (planned,) = document["regions"]
    verdicts = {entry["image_id"]: entry for entry in planned["verdicts"]}
    assert set(verdicts) == set(backups[default]) | set(backups[short])
    assert foreign not in table.stdout
    to_delete = {image_id for image_id, entry in verdicts.items() if entry["action"] == "delete"}
    assert to_delete >= set(backups[short][2:10]) | set(backups[short][11:])
    assert backups[short][10] not in to_delete and verdicts[backups[short][10]]["outcome"] == "held"
    assert not to_delete & set(backups[default][:7])
    # And the table shows the same plan to a person, one row per AMI
    rows = {row[1]: row for row in table_rows(table.stdout)}
    assert {image_id for image_id, row in rows.items() if row[5] == "delete"} == to_delete
    assert f"{len(to_delete)} AMI(s) to delete, {30 - len(to_delete)} kept" in table.stdout

    # When the retention function runs for real, as deployed
    retention = deployed.deploy(sam_app)["RetentionFunction"]
    retention.invoke({"dry_run": False})

    # Then it deleted exactly the planned AMIs and kept the rest
    remaining = {image["ImageId"] for image in managed_images(region)}
    assert remaining == set(verdicts) - to_delete
