"""`amikeeper plan`: retention's dry run, the very plan the retention function then carries out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from tests.cli.conftest import Operator, table_rows
from tests.fixtures.ec2_fidelity import Ec2Fidelity
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


def test_plan_lists_orphan_snapshots_and_gone_since_tags_and_writes_nothing(
    aws: Ec2Fidelity, deployed: MotoStack, operator: Operator
) -> None:
    # Given a terminated instance with a backup, and a two-day-old snapshot whose AMI was deregistered by hand
    region = deployed.region
    ec2 = boto3.client("ec2", region_name=region)
    gone = run_instances(region, tags={"Backup": "true"})[0]
    kept = make_backup(region, gone, datetime.now(UTC) - timedelta(hours=3))
    ec2.terminate_instances(InstanceIds=[gone])
    other = run_instances(region, tags={"Backup": "true"})[0]
    deregistered = make_backup(region, other, datetime.now(UTC) - timedelta(days=2))
    (snapshot,) = ec2.describe_images(ImageIds=[deregistered])["Images"][0]["BlockDeviceMappings"]
    orphan = snapshot["Ebs"]["SnapshotId"]
    ec2.deregister_image(ImageId=deregistered)
    aws.set_snapshot_start_time(region, orphan, datetime.now(UTC) - timedelta(days=2))

    # When the operator asks for the plan
    table = operator.run("plan")
    (planned,) = operator.json("plan")["regions"]

    # Then the orphan and the gone-since tag a real run would write are listed, for people and scripts
    assert table.exit_code == 0, table.output
    assert [entry["snapshot_id"] for entry in planned["orphan_snapshots"]] == [orphan]
    assert [(entry["image_id"], entry["instance_id"]) for entry in planned["gone_since_tags"]] == [
        (kept, gone)
    ]
    assert (
        "Orphan snapshots to delete" in table.stdout and "Gone-since tags a run would write" in table.stdout
    )
    assert [orphan, deregistered] in [row[1:3] for row in table_rows(table.stdout)]
    # And nothing was changed: the snapshot is still there, and no tag was written
    assert ec2.describe_snapshots(SnapshotIds=[orphan])["Snapshots"]
    tags = ec2.describe_images(ImageIds=[kept])["Images"][0]["Tags"]
    assert "amikeeper:instance-gone-since" not in {tag["Key"] for tag in tags}
