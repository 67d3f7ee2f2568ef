"""The launch configuration recorded on each backup (AMI tags set by CreateImage) and read back by restore."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from amikeeper.backups import (
    EC2_TAG_LIMIT,
    RESERVED_TAGS,
    TAG_VALUE_MAX,
    recorded_launch,
    tags_of,
)
from amikeeper.copy_destinations import MAX_DESTINATIONS, CopyDestination
from amikeeper.model import (
    COPIED_PREFIX,
    COPY_TO,
    GONE_SINCE,
    LAUNCH_PROFILE,
    LAUNCH_SECURITY_GROUPS,
    LAUNCH_TAGS,
    RESTORE_DRILL,
    RESTORE_VERIFIED,
    Instance,
    LaunchConfig,
    Stack,
    TagKeys,
)
from amikeeper.policies import build_catalog

SLOT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
POLICY = build_catalog("daily@03:00", "7", ZoneInfo("UTC"), None).default
LAUNCH = LaunchConfig(
    instance_type="m7g.large",
    subnet_id="subnet-0123456789abcdef0",
    availability_zone="eu-west-1b",
    security_group_ids=("sg-0123456789abcdef0", "sg-0fedcba9876543210"),
    instance_profile_arn="arn:aws:iam::123456789012:instance-profile/app",
    key_name="ops",
    ebs_optimized=True,
)


def test_launch_configuration_round_trips_through_the_tags() -> None:
    # Given an instance read from DescribeInstances with a full launch configuration
    instance = Instance("i-00000000000000001", "running", {"Name": "web-1"}, launch=LAUNCH)
    # When its backup's tags are built and read back
    tags = tags_of(instance, POLICY, Stack("amikeeper", TagKeys("Backup")), "schedule", SLOT).tags
    recorded = recorded_launch(tags)
    # Then every setting comes back as it was, and nothing is unknown
    assert recorded.config == LAUNCH
    assert recorded.unknown == ()
    assert tags[LAUNCH_SECURITY_GROUPS] == "sg-0123456789abcdef0,sg-0fedcba9876543210"


def test_an_instance_without_profile_or_key_records_them_as_empty_not_unknown() -> None:
    # Given an instance with no instance profile and no key pair
    launch = LaunchConfig("t3.micro", "subnet-0123456789abcdef0", "eu-west-1a", ("sg-0123456789abcdef0",))
    instance = Instance("i-00000000000000001", "running", launch=launch)
    # When its tags are built and read back
    tags = tags_of(instance, POLICY, Stack("amikeeper", TagKeys("Backup")), "schedule", SLOT).tags
    recorded = recorded_launch(tags)
    # Then "none" is known: the tags are there, empty, and the restore launches without them
    assert tags[LAUNCH_PROFILE] == ""
    assert recorded.unknown == ()
    assert recorded.config.instance_profile_arn is None and recorded.config.key_name is None


def test_a_value_longer_than_a_tag_holds_is_left_out_and_read_back_as_unknown() -> None:
    # Given an instance with so many security groups that their ids exceed 256 characters
    groups = tuple(f"sg-{index:017x}" for index in range(13))
    assert len(",".join(groups)) > TAG_VALUE_MAX
    launch = LaunchConfig("t3.micro", "subnet-0123456789abcdef0", "eu-west-1a", groups)
    instance = Instance("i-00000000000000001", "running", launch=launch)
    # When its tags are built and read back
    tags = tags_of(instance, POLICY, Stack("amikeeper", TagKeys("Backup")), "schedule", SLOT).tags
    # Then the groups are not written cut short; the restore knows it does not know them
    assert LAUNCH_SECURITY_GROUPS not in tags
    assert recorded_launch(tags).unknown == (LAUNCH_SECURITY_GROUPS,)


def test_a_maximal_backup_still_fits_ec2s_fifty_tags() -> None:
    # Given an instance with a full launch configuration and more copyable tags than an AMI has room for
    instance_tags = {"Name": "web-1"} | {f"Copy{index}": "v" for index in range(60)}
    stack = Stack("amikeeper", TagKeys("Backup"), copy_tags=tuple(f"Copy{index}" for index in range(60)))
    instance = Instance("i-00000000000000001", "running", instance_tags, launch=LAUNCH)
    # and a policy copying to as many destinations as a policy may name
    destinations = tuple(CopyDestination(region=f"eu-west-{n}") for n in range(1, MAX_DESTINATIONS + 1))
    policy = replace(POLICY, copies=destinations)
    # When its tags are built
    built = tags_of(instance, policy, stack, "schedule", SLOT)
    # Then amikeeper's own keys, with those added later (gone-since, restore-verified, restore-drill, one per completed
    # copy, an operator's hold), stay within the reserved ones, every launch key is there, and the whole
    # still fits EC2's 50
    own = {key for key in built.tags if key.startswith("amikeeper:")}
    later = {GONE_SINCE, RESTORE_VERIFIED, RESTORE_DRILL, "Backup:Hold"} | {
        COPIED_PREFIX + d.key for d in destinations
    }
    assert built.tags[COPY_TO] == ",".join(d.key for d in destinations)
    assert set(LAUNCH_TAGS) <= own
    assert len(own | later) <= RESERVED_TAGS
    assert len(built.tags) + len(later) <= EC2_TAG_LIMIT
    assert built.dropped
