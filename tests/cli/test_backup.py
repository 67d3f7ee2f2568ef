"""`amikeeper backup INSTANCE`: an on-demand backup through the stack's work queue and its worker."""

from __future__ import annotations

import boto3

from amikeeper.model import WorkItem
from tests.cli.conftest import Operator
from tests.fixtures.stack import MotoStack, managed_images, run_instances
from tests.sam_local import SamApp


def test_backup_queues_a_manual_work_item_that_the_worker_turns_into_an_ami(
    deployed: MotoStack, sam_app: SamApp, operator: Operator
) -> None:
    # Given an opted-in instance under the default policy
    instance = run_instances(deployed.region, tags={"Backup": "true", "Name": "db-1"})[0]

    # When the operator asks for a backup now
    result = operator.run("backup", instance, "--json")

    # Then one manual work item is on the work queue, built as the planner builds its own
    assert result.exit_code == 0, result.output
    messages = deployed.work_messages()
    assert len(messages) == 1
    item = WorkItem.model_validate_json(messages[0]["body"])
    assert (item.instance_id, item.region, item.trigger, item.policy) == (
        instance,
        deployed.region,
        "manual",
        "default",
    )
    assert item.image_name.startswith(f"amikeeper-{instance}-manual-")
    assert item.tags["amikeeper:trigger"] == "manual" and item.tags["Name"] == "db-1"
    # And the operator was told which AMI name it will have
    assert '"image_name": "' + item.image_name + '"' in result.stdout

    # When the deployed worker consumes it
    worker = deployed.deploy(sam_app)["WorkerFunction"]
    worker.invoke({"Records": messages})

    # Then the AMI exists, tagged as a manual backup of this stack
    (image,) = managed_images(deployed.region)
    tags = {tag["Key"]: tag["Value"] for tag in image["Tags"]}
    assert image["Name"] == item.image_name
    assert tags["amikeeper:trigger"] == "manual" and tags["amikeeper:instance-id"] == instance


def test_backup_of_an_instance_that_is_not_opted_in_or_unknown_is_refused(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given an instance that opted out, a terminated one, and an id that exists nowhere
    opted_out = run_instances(deployed.region, tags={"Backup": "no"})[0]
    terminated = run_instances(deployed.region, tags={"Backup": "true"})[0]
    boto3.client("ec2", region_name=deployed.region).terminate_instances(InstanceIds=[terminated])
    unknown = "i-0123456789abcdef0"

    # When the operator asks to back each up
    refused = operator.run("backup", opted_out)
    gone = operator.run("backup", terminated)
    missing = operator.run("backup", unknown)

    # Then each is one clear line with exit code 2, and nothing was queued
    assert refused.exit_code == 2
    assert refused.stderr == f"amikeeper: error: {opted_out} is not opted in: tag it Backup=true first\n"
    assert gone.exit_code == 2
    assert gone.stderr == f"amikeeper: error: {terminated} is terminated: EC2 can no longer image it\n"
    assert missing.exit_code == 2
    assert missing.stderr == f"amikeeper: error: unknown instance {unknown} in eu-west-1\n"
    assert deployed.work_messages() == []
