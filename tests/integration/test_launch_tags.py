"""The launch configuration travels on the AMI: written by CreateImage's own TagSpecifications, for a
scheduled backup (planner → worker) and a stop backup (instance-state handler → worker)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.cli.conftest import Configured, configured_instance
from tests.fixtures.stack import MotoStack, instance_event, managed_images
from tests.sam_local import ResolvedFunction

TICK = {"scheduled_time": "2026-11-29T10:00:00Z", "execution_id": "test-tick"}


def _only_backup_tags(stack: MotoStack) -> dict[str, str]:
    [image] = managed_images(stack.region)
    return {tag["Key"]: tag["Value"] for tag in image["Tags"]}


def _expected(instance: Configured) -> Mapping[str, Any]:
    return {
        "amikeeper:launch-type": "m5.large",
        "amikeeper:launch-subnet": instance.subnet_id,
        "amikeeper:launch-az": instance.availability_zone,
        "amikeeper:launch-security-groups": ",".join(instance.security_group_ids),
        "amikeeper:launch-profile": instance.profile_arn,
        "amikeeper:launch-key": "ops",
        "amikeeper:launch-ebs-optimized": "true",
    }


def test_a_scheduled_backup_records_the_instance_launch_configuration(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an opted-in instance in its own subnet, with security groups, a profile and a key
    instance = configured_instance(stack.region, {"Name": "web-1", "Backup": "true"})
    # When the planner ticks and the worker drains the queue
    functions["PlannerFunction"].invoke(TICK)
    assert stack.drain(functions["WorkerFunction"].invoke) == [{"batchItemFailures": []}]
    # Then the AMI carries the launch configuration as tags, set by CreateImage itself
    tags = _only_backup_tags(stack)
    assert {key: tags.get(key) for key in _expected(instance)} == _expected(instance)


def test_a_stop_backup_records_the_same_launch_configuration(
    functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given an instance that asks for a backup when it stops
    instance = configured_instance(stack.region, {"Backup": "true", "Backup:OnStop": "true"})
    # When it stops and the worker drains the queue
    functions["InstanceStateFunction"].invoke(instance_event(stack, instance.instance_id, "stopped"))
    assert stack.drain(functions["WorkerFunction"].invoke) == [{"batchItemFailures": []}]
    # Then its stop backup records the same configuration
    tags = _only_backup_tags(stack)
    assert {key: tags.get(key) for key in _expected(instance)} == _expected(instance)
