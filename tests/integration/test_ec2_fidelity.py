"""The EC2 fidelity extension answers plain boto3 calls the way EC2 does (see tests/fixtures/README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.responses.amis import AmisResponse
from mypy_boto3_ec2 import EC2Client
from mypy_boto3_ec2.literals import InstanceTypeType
from mypy_boto3_ec2.type_defs import (
    LaunchPermissionModificationsTypeDef,
    LaunchPermissionTypeDef,
    ResourceTypeOptionTypeDef,
    TagSpecificationTypeDef,
    TagTypeDef,
)

from tests.fixtures.ec2_fidelity import (
    FAKE_REGION,
    Ec2Fidelity,
    FidelityAlreadyActiveError,
    InvalidImageStateError,
    InvalidInstanceStatusError,
    InvalidReturnCodeError,
    InvalidTaskStateError,
    NaiveDatetimeError,
    UnknownImageError,
    UnknownInstanceError,
    UnknownSnapshotError,
    _page,
    aws,  # noqa: F401 - pytest fixture, used by name
    aws_credentials,  # noqa: F401 - pytest fixture, used by name
    real_ec2_semantics,
)

MANAGED: TagTypeDef = {"Key": "amikeeper:managed-by", "Value": "amikeeper"}
IMAGE_AND_SNAPSHOT_TAGS: list[TagSpecificationTypeDef] = [
    {"ResourceType": "image", "Tags": [MANAGED]},
    {"ResourceType": "snapshot", "Tags": [MANAGED]},
]


@pytest.fixture
def ec2(aws: Ec2Fidelity) -> EC2Client:  # noqa: F811 - the imported fixture, requested by name
    return boto3.client("ec2", region_name=FAKE_REGION)


@pytest.fixture
def base_image(ec2: EC2Client) -> str:
    return ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]


def launch(ec2: EC2Client, image_id: str, **extra: Any) -> str:
    return ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, **extra)["Instances"][0]["InstanceId"]


def image_of(ec2: EC2Client, image_id: str) -> Any:
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


def snapshot_ids(image: Any) -> list[str]:
    return [mapping["Ebs"]["SnapshotId"] for mapping in image["BlockDeviceMappings"]]


def existing_snapshots(ec2: EC2Client, ids: list[str]) -> set[str]:
    owned = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return {snapshot["SnapshotId"] for snapshot in owned} & set(ids)


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


# --- Gaps 1 and 2: CreateImage ---------------------------------------------------------------------------
def test_create_image_snapshots_every_attached_volume_at_its_size(ec2: EC2Client, base_image: str) -> None:
    # Given an instance launched with a data volume and given a second one by AttachVolume
    instance_id = launch(
        ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20}}]
    )
    extra = ec2.create_volume(Size=50, AvailabilityZone=f"{FAKE_REGION}a")["VolumeId"]
    ec2.attach_volume(VolumeId=extra, InstanceId=instance_id, Device="/dev/sdg")

    # When it is imaged
    image = image_of(ec2, ec2.create_image(InstanceId=instance_id, Name="three-volumes")["ImageId"])

    # Then the AMI maps root and both data devices to their own snapshot, sized like the volume
    sizes = {m["DeviceName"]: m["Ebs"]["VolumeSize"] for m in image["BlockDeviceMappings"]}
    assert sizes == {image["RootDeviceName"]: 8, "/dev/sdf": 20, "/dev/sdg": 50}
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(image))["Snapshots"]
    assert sorted(s["VolumeSize"] for s in snapshots) == [8, 20, 50]
    assert len(set(snapshot_ids(image))) == 3
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert image["RootDeviceName"] == instance["RootDeviceName"]
    assert image["RootDeviceType"] == "ebs"


def test_create_image_tags_the_ami_and_every_snapshot_in_the_same_call(
    ec2: EC2Client, base_image: str
) -> None:
    # Given an instance with root and one data volume
    instance_id = launch(
        ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10}}]
    )

    # When CreateImage carries tag specifications for the image and its snapshots
    image_id = ec2.create_image(
        InstanceId=instance_id,
        Name="tagged-backup",
        TagSpecifications=IMAGE_AND_SNAPSHOT_TAGS,
    )["ImageId"]

    # Then the AMI and each of its snapshots carry the tag
    image = image_of(ec2, image_id)
    assert MANAGED in image["Tags"]
    snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids(image))["Snapshots"]
    assert len(snapshots) == 2
    assert all(MANAGED in snapshot["Tags"] for snapshot in snapshots)


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [("k" * 128, "v" * 256, True), ("k" * 129, "v", False), ("k", "v" * 257, False)],
    ids=["longest-allowed", "key-too-long", "value-too-long"],
)
def test_create_image_refuses_tags_longer_than_ec2_allows(
    ec2: EC2Client, base_image: str, key: str, value: str, accepted: bool
) -> None:
    # Given an instance
    instance_id = launch(ec2, base_image)
    tags: Any = [{"ResourceType": "image", "Tags": [{"Key": key, "Value": value}]}]
    # When it is imaged with a tag at or past EC2's limits (key 128, value 256 characters)
    if accepted:
        image_id = ec2.create_image(InstanceId=instance_id, Name="long-tags", TagSpecifications=tags)[
            "ImageId"
        ]
        # Then the longest allowed tag is kept whole
        assert {"Key": key, "Value": value} in image_of(ec2, image_id)["Tags"]
        return
    with pytest.raises(ClientError) as refused:
        ec2.create_image(InstanceId=instance_id, Name="long-tags", TagSpecifications=tags)
    # Then EC2 refuses the call and makes no AMI
    assert error_code(refused) == "InvalidParameterValue"
    assert (
        ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["long-tags"]}])["Images"]
        == []
    )


def test_instance_launched_with_only_data_volumes_still_has_its_root(ec2: EC2Client, base_image: str) -> None:
    # Given / When an instance is launched with a data volume mapping only
    instance_id = launch(
        ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdh", "Ebs": {"VolumeSize": 30}}]
    )

    # Then it has its root device too, as EC2 merges launch mappings into the AMI's
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    devices = {mapping["DeviceName"] for mapping in instance["BlockDeviceMappings"]}
    assert devices == {instance["RootDeviceName"], "/dev/sdh"}


# --- Gap 3: AMI names --------------------------------------------------------------------------------------
def test_create_image_with_a_name_in_use_raises_duplicate(ec2: EC2Client, base_image: str) -> None:
    # Given an AMI named "nightly-web"
    instance_id = launch(ec2, base_image)
    first = ec2.create_image(InstanceId=instance_id, Name="nightly-web")["ImageId"]

    # When a second CreateImage asks for the same name
    with pytest.raises(ClientError) as error:
        ec2.create_image(InstanceId=instance_id, Name="nightly-web")

    # Then EC2 refuses it and names the AMI holding the name
    assert error_code(error) == "InvalidAMIName.Duplicate"
    assert first in error.value.response["Error"]["Message"]


def test_name_of_a_deregistered_ami_can_be_used_again(ec2: EC2Client, base_image: str) -> None:
    # Given an AMI that was deregistered
    instance_id = launch(ec2, base_image)
    ec2.deregister_image(ImageId=ec2.create_image(InstanceId=instance_id, Name="reused")["ImageId"])

    # When its name is used again
    second = ec2.create_image(InstanceId=instance_id, Name="reused")["ImageId"]

    # Then a new AMI gets it
    assert image_of(ec2, second)["Name"] == "reused"


def test_malformed_ami_name_is_rejected(ec2: EC2Client, base_image: str) -> None:
    # Given / When a name with a character EC2 does not allow
    with pytest.raises(ClientError) as error:
        ec2.create_image(InstanceId=launch(ec2, base_image), Name="web#1 backup")

    # Then
    assert error_code(error) == "InvalidAMIName.Malformed"


# --- Gap 4: DeregisterImage(DeleteAssociatedSnapshots) ----------------------------------------------------
@pytest.fixture
def two_snapshot_image(ec2: EC2Client, base_image: str) -> str:
    instance_id = launch(
        ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10}}]
    )
    return ec2.create_image(InstanceId=instance_id, Name="to-expire")["ImageId"]


def test_deregister_with_delete_associated_snapshots_leaves_no_snapshot(
    ec2: EC2Client, two_snapshot_image: str
) -> None:
    # Given an AMI with two snapshots
    owned = snapshot_ids(image_of(ec2, two_snapshot_image))

    # When it is deregistered with DeleteAssociatedSnapshots
    response = ec2.deregister_image(ImageId=two_snapshot_image, DeleteAssociatedSnapshots=True)

    # Then each snapshot is reported deleted and none is left
    assert sorted(response["DeleteSnapshotResults"], key=lambda r: r["SnapshotId"]) == [
        {"SnapshotId": snapshot_id, "ReturnCode": "success"} for snapshot_id in sorted(owned)
    ]
    assert existing_snapshots(ec2, owned) == set()
    assert ec2.describe_images(Owners=["self"])["Images"] == []


def test_deregister_without_the_flag_keeps_the_snapshots(ec2: EC2Client, two_snapshot_image: str) -> None:
    # Given an AMI with two snapshots
    owned = snapshot_ids(image_of(ec2, two_snapshot_image))

    # When it is deregistered without DeleteAssociatedSnapshots
    response = ec2.deregister_image(ImageId=two_snapshot_image)

    # Then its snapshots stay (and can now be deleted one by one)
    assert "DeleteSnapshotResults" not in response
    assert existing_snapshots(ec2, owned) == set(owned)


def test_snapshot_still_backing_another_ami_is_skipped(ec2: EC2Client, two_snapshot_image: str) -> None:
    # Given a second AMI registered from the first AMI's root snapshot
    root_snapshot = snapshot_ids(image_of(ec2, two_snapshot_image))[0]
    other = ec2.register_image(
        Name="restored-root",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": root_snapshot}}],
    )["ImageId"]

    # When the first AMI is deregistered with DeleteAssociatedSnapshots
    results = ec2.deregister_image(ImageId=two_snapshot_image, DeleteAssociatedSnapshots=True)[
        "DeleteSnapshotResults"
    ]

    # Then the shared snapshot is skipped and kept; it still cannot be deleted directly
    codes = {result["SnapshotId"]: result["ReturnCode"] for result in results}
    assert codes[root_snapshot] == "skipped"
    assert sorted(codes.values()) == ["skipped", "success"]
    assert existing_snapshots(ec2, [root_snapshot]) == {root_snapshot}
    with pytest.raises(ClientError) as error:
        ec2.delete_snapshot(SnapshotId=root_snapshot)
    assert error_code(error) == "InvalidSnapshot.InUse"
    assert snapshot_ids(image_of(ec2, other)) == [root_snapshot]


def test_injected_deletion_failure_is_reported_and_the_snapshot_kept(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    two_snapshot_image: str,
) -> None:
    # Given EC2 will fail to delete the AMI's data snapshot
    root_snapshot, data_snapshot = snapshot_ids(image_of(ec2, two_snapshot_image))
    aws.fail_snapshot_deletion(data_snapshot, "missing-permissions")

    # When the AMI is deregistered with DeleteAssociatedSnapshots
    results = ec2.deregister_image(ImageId=two_snapshot_image, DeleteAssociatedSnapshots=True)[
        "DeleteSnapshotResults"
    ]

    # Then the AMI is gone, the failing snapshot is reported and left behind
    assert {r["SnapshotId"]: r["ReturnCode"] for r in results} == {
        root_snapshot: "success",
        data_snapshot: "missing-permissions",
    }
    assert existing_snapshots(ec2, [root_snapshot, data_snapshot]) == {data_snapshot}
    assert ec2.describe_images(Owners=["self"])["Images"] == []


def test_snapshot_of_a_registered_ami_cannot_be_deleted(ec2: EC2Client, two_snapshot_image: str) -> None:
    # Given / When a snapshot of a registered AMI is deleted directly
    with pytest.raises(ClientError) as error:
        ec2.delete_snapshot(SnapshotId=snapshot_ids(image_of(ec2, two_snapshot_image))[1])

    # Then
    assert error_code(error) == "InvalidSnapshot.InUse"


# --- Gap 5: pagination and OwnerIds -----------------------------------------------------------------------
def test_describe_images_paginator_yields_several_pages_and_every_image(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
) -> None:
    # Given 250 AMIs of this account
    registered = set()
    for number in range(250):
        image = ec2.register_image(Name=f"fleet-{number:03d}")["ImageId"]
        registered.add(image)

    # When a paginator reads them 100 at a time
    pages = list(
        ec2.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 100})
    )

    # Then there are three pages and together they hold every AMI once
    assert [len(page["Images"]) for page in pages] == [100, 100, 50]
    seen = [image["ImageId"] for page in pages for image in page["Images"]]
    assert sorted(seen) == sorted(registered)


def test_describe_images_without_max_results_returns_everything_at_once(ec2: EC2Client) -> None:
    # Given 12 AMIs
    for number in range(12):
        ec2.register_image(Name=f"small-{number:02d}")

    # When DescribeImages is called without MaxResults
    response = ec2.describe_images(Owners=["self"])

    # Then one answer holds them all and no NextToken
    assert len(response["Images"]) == 12
    assert "NextToken" not in response


def test_deleting_between_pages_skips_nothing(ec2: EC2Client) -> None:
    # Given 12 AMIs read 5 per page
    for number in range(12):
        ec2.register_image(Name=f"churn-{number:02d}")
    first = ec2.describe_images(Owners=["self"], MaxResults=5)

    # When the first page's AMIs are deregistered before reading on
    for image in first["Images"]:
        ec2.deregister_image(ImageId=image["ImageId"])
    rest = []
    token = first.get("NextToken")
    while token:
        page = ec2.describe_images(Owners=["self"], MaxResults=5, NextToken=token)
        rest += [image["ImageId"] for image in page["Images"]]
        token = page.get("NextToken")

    # Then the remaining seven all arrive
    assert len(rest) == 7


def test_describe_snapshots_scopes_to_owner_self_and_pages(ec2: EC2Client, base_image: str) -> None:
    # Given 7 snapshots of this account among the public ones moto serves
    volume = ec2.create_volume(Size=4, AvailabilityZone=f"{FAKE_REGION}a")["VolumeId"]
    mine = {ec2.create_snapshot(VolumeId=volume)["SnapshotId"] for _ in range(7)}
    assert len(ec2.describe_snapshots()["Snapshots"]) > 7

    # When they are listed with OwnerIds=["self"], 5 per page
    pages = list(
        ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], PaginationConfig={"PageSize": 5})
    )

    # Then only this account's snapshots arrive, over two pages
    assert [len(page["Snapshots"]) for page in pages] == [5, 2]
    assert {s["SnapshotId"] for page in pages for s in page["Snapshots"]} == mine
    assert {s["OwnerId"] for page in pages for s in page["Snapshots"]} == {"123456789012"}


def test_describe_instances_pages_with_max_results_and_not_without(ec2: EC2Client, base_image: str) -> None:
    # Given 120 reservations
    for _ in range(120):
        launch(ec2, base_image)

    # When described without MaxResults, and by a paginator with pages of 50
    unpaginated = ec2.describe_instances()
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 50}))

    # Then the first answer holds all 120 and the paginator gets 50, 50, 20
    assert len(unpaginated["Reservations"]) == 120
    assert "NextToken" not in unpaginated
    assert [len(page["Reservations"]) for page in pages] == [50, 50, 20]


def test_max_results_below_five_is_refused(ec2: EC2Client) -> None:
    # Given / When a page size EC2 does not accept
    with pytest.raises(ClientError) as error:
        ec2.describe_snapshots(OwnerIds=["self"], MaxResults=2)

    # Then
    assert error_code(error) == "InvalidParameterValue"


def test_launch_templates_and_versions_page_past_fifteen(ec2: EC2Client, base_image: str) -> None:
    # Given 20 launch templates
    for number in range(20):
        ec2.create_launch_template(
            LaunchTemplateName=f"tpl-{number:02d}", LaunchTemplateData={"ImageId": base_image}
        )

    # When both are read by paginators
    templates = [
        t["LaunchTemplateId"]
        for page in ec2.get_paginator("describe_launch_templates").paginate(PaginationConfig={"PageSize": 8})
        for t in page["LaunchTemplates"]
    ]
    versions = [
        v
        for page in ec2.get_paginator("describe_launch_template_versions").paginate(
            Versions=["$Latest"], PaginationConfig={"PageSize": 8}
        )
        for v in page["LaunchTemplateVersions"]
    ]

    # Then all 20 arrive each time
    assert len(set(templates)) == 20
    assert {v["LaunchTemplateId"] for v in versions} == set(templates)


# --- Gap 6: DescribeImageReferences and $Default/$Latest versions ------------------------------------------
def test_describe_image_references_names_instances_and_templates(ec2: EC2Client, base_image: str) -> None:
    # Given an AMI used by an instance, by a template's $Default version and by nothing else
    instance_id = launch(ec2, base_image)
    image_id = ec2.create_image(InstanceId=instance_id, Name="golden")["ImageId"]
    user = launch(ec2, image_id)
    template = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": image_id})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(
        LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": base_image}
    )
    unused = ec2.create_image(InstanceId=instance_id, Name="unused")["ImageId"]

    # When references of both AMIs are asked for
    references = ec2.describe_image_references(
        ImageIds=[image_id, unused],
        ResourceTypes=[{"ResourceType": "ec2:Instance"}, {"ResourceType": "ec2:LaunchTemplate"}],
    )["ImageReferences"]

    # Then the instance and the template are listed against the used AMI only
    prefix = f"arn:aws:ec2:{FAKE_REGION}:123456789012"
    assert sorted((r["ImageId"], r["ResourceType"], r["Arn"]) for r in references) == sorted(
        [
            (image_id, "ec2:Instance", f"{prefix}:instance/{user}"),
            (image_id, "ec2:LaunchTemplate", f"{prefix}:launch-template/{template_id}"),
        ]
    )


def test_image_references_look_only_at_the_version_depth_newest_versions(
    ec2: EC2Client, base_image: str
) -> None:
    # Given a template whose version 1 uses the AMI, followed by 10 newer versions that do not
    image_id = ec2.register_image(Name="old-golden")["ImageId"]
    template_id = ec2.create_launch_template(
        LaunchTemplateName="deep", LaunchTemplateData={"ImageId": image_id}
    )["LaunchTemplate"]["LaunchTemplateId"]
    for _ in range(10):
        ec2.create_launch_template_version(
            LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": base_image}
        )

    def referencing_templates(depth: str | None) -> list[str]:
        options: list[ResourceTypeOptionTypeDef] = (
            [{"OptionName": "version-depth", "OptionValues": [depth]}] if depth else []
        )
        return [
            r["Arn"]
            for r in ec2.describe_image_references(
                ImageIds=[image_id],
                ResourceTypes=[{"ResourceType": "ec2:LaunchTemplate", "ResourceTypeOptions": options}],
            )["ImageReferences"]
        ]

    # When / Then the default depth (10) misses it; a depth of 11 finds it
    assert referencing_templates(None) == []
    assert referencing_templates("11") == [
        f"arn:aws:ec2:{FAKE_REGION}:123456789012:launch-template/{template_id}"
    ]


def test_disabled_image_references_answer_like_an_account_without_the_api(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    base_image: str,
) -> None:
    # Given DescribeImageReferences is switched off
    aws.disable_image_references(True)

    # When a caller asks for references
    with pytest.raises(ClientError) as error:
        ec2.describe_image_references(ImageIds=[base_image], IncludeAllResourceTypes=True)

    # Then it gets InvalidAction and can fall back
    assert error_code(error) == "InvalidAction"


def test_default_and_latest_versions_of_all_templates(ec2: EC2Client, base_image: str) -> None:
    # Given two templates, one with a newer non-default version
    other = ec2.register_image(Name="other-image")["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="a", LaunchTemplateData={"ImageId": base_image})
    b = ec2.create_launch_template(LaunchTemplateName="b", LaunchTemplateData={"ImageId": base_image})
    ec2.create_launch_template_version(
        LaunchTemplateId=b["LaunchTemplate"]["LaunchTemplateId"], LaunchTemplateData={"ImageId": other}
    )

    # When $Default and $Latest of every template are described without a template id
    versions = ec2.describe_launch_template_versions(Versions=["$Default", "$Latest"])[
        "LaunchTemplateVersions"
    ]

    # Then both versions of "b" and version 1 of "a" are there, with their images
    described = {
        (v["LaunchTemplateName"], v["VersionNumber"], v["LaunchTemplateData"]["ImageId"]) for v in versions
    }
    assert described == {("a", 1, base_image), ("b", 1, base_image), ("b", 2, other)}


# --- Gaps 7 and 8: AMI state and age -----------------------------------------------------------------------
def test_pending_ami_becomes_available(aws: Ec2Fidelity, ec2: EC2Client, base_image: str) -> None:  # noqa: F811
    # Given new AMIs start pending
    aws.start_pending(True)
    image_id = ec2.create_image(InstanceId=launch(ec2, base_image), Name="slow")["ImageId"]
    pending = image_of(ec2, image_id)
    assert pending["State"] == "pending"
    assert ec2.describe_snapshots(SnapshotIds=snapshot_ids(pending))["Snapshots"][0]["State"] == "pending"

    # When EC2 finishes it
    aws.set_image_state(FAKE_REGION, image_id, "available")

    # Then AMI and snapshots are complete
    image = image_of(ec2, image_id)
    assert image["State"] == "available"
    assert "StateReason" not in image
    assert ec2.describe_snapshots(SnapshotIds=snapshot_ids(image))["Snapshots"][0]["State"] == "completed"


def test_failed_ami_carries_its_state_reason(aws: Ec2Fidelity, ec2: EC2Client, base_image: str) -> None:  # noqa: F811
    # Given a pending AMI
    aws.start_pending()
    image_id = ec2.create_image(InstanceId=launch(ec2, base_image), Name="doomed")["ImageId"]

    # When creation fails
    aws.set_image_state(FAKE_REGION, image_id, "failed", reason="snapshot copy failed")

    # Then DescribeImages shows failed with the reason, and the state filter finds it
    image = image_of(ec2, image_id)
    assert image["State"] == "failed"
    assert image["StateReason"] == {
        "Code": "Server.InternalError",
        "Message": "Server.InternalError: snapshot copy failed",
    }
    failed = ec2.describe_images(Owners=["self"], Filters=[{"Name": "state", "Values": ["failed"]}])
    assert [i["ImageId"] for i in failed["Images"]] == [image_id]


def test_creation_date_can_be_set_in_the_past(aws: Ec2Fidelity, ec2: EC2Client, base_image: str) -> None:  # noqa: F811
    # Given an AMI
    image_id = ec2.create_image(InstanceId=launch(ec2, base_image), Name="aged")["ImageId"]
    ten_days_ago = datetime(2026, 11, 19, 3, 0, tzinfo=UTC)

    # When ten days pass for it
    aws.set_creation_date(FAKE_REGION, image_id, ten_days_ago)

    # Then DescribeImages reports that date, and its snapshots started then too
    image = image_of(ec2, image_id)
    assert image["CreationDate"] == "2026-11-19T03:00:00.000Z"
    started = ec2.describe_snapshots(SnapshotIds=snapshot_ids(image))["Snapshots"][0]["StartTime"]
    assert started == ten_days_ago


def test_snapshot_start_time_can_be_set(aws: Ec2Fidelity, ec2: EC2Client) -> None:  # noqa: F811
    # Given an orphan snapshot
    volume = ec2.create_volume(Size=1, AvailabilityZone=f"{FAKE_REGION}a")["VolumeId"]
    snapshot_id = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    long_ago = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=5)

    # When it is backdated
    aws.set_snapshot_start_time(FAKE_REGION, snapshot_id, long_ago)

    # Then
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["StartTime"] == long_ago


# --- Gap 9: CopyImage to another region ------------------------------------------------------------------------
DESTINATION_REGION = "eu-west-1"


@pytest.fixture
def destination(aws: Ec2Fidelity) -> EC2Client:  # noqa: F811 - the imported fixture, requested by name
    return boto3.client("ec2", region_name=DESTINATION_REGION)


@pytest.fixture
def backup(ec2: EC2Client, base_image: str) -> str:
    instance_id = launch(
        ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20}}]
    )
    return ec2.create_image(InstanceId=instance_id, Name="nightly-web")["ImageId"]


def copy_of(destination: EC2Client, source_id: str, name: str = "nightly-web", **extra: Any) -> str:
    return destination.copy_image(SourceRegion=FAKE_REGION, SourceImageId=source_id, Name=name, **extra)[
        "ImageId"
    ]


def devices(image: Any) -> dict[str, int]:
    return {m["DeviceName"]: m["Ebs"]["VolumeSize"] for m in image["BlockDeviceMappings"]}


def test_copy_image_gets_its_own_snapshots_in_the_destination_region(
    ec2: EC2Client, destination: EC2Client, backup: str
) -> None:
    # Given a two-volume backup in the source region
    source = image_of(ec2, backup)

    # When it is copied by a call to the destination region
    copy = image_of(destination, copy_of(destination, backup))

    # Then the copy maps the same devices and sizes to new snapshots that live in the destination region,
    # so deleting the source's snapshots cannot break it
    assert devices(copy) == devices(source) == {source["RootDeviceName"]: 8, "/dev/sdf": 20}
    assert copy["RootDeviceName"] == source["RootDeviceName"]
    assert copy["RootDeviceType"] == "ebs"
    assert not set(snapshot_ids(copy)) & set(snapshot_ids(source))
    copied = destination.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert sorted(s["VolumeSize"] for s in copied) == [8, 20]
    assert existing_snapshots(destination, snapshot_ids(copy)) == set(snapshot_ids(copy))


def test_copy_image_tags_the_copy_and_each_of_its_snapshots(
    ec2: EC2Client, destination: EC2Client, backup: str
) -> None:
    # Given a backup / When it is copied with image and snapshot tag specifications
    copy = image_of(destination, copy_of(destination, backup, TagSpecifications=IMAGE_AND_SNAPSHOT_TAGS))

    # Then the copy and both of its snapshots carry the tag, with no window in which they are untagged
    assert MANAGED in copy["Tags"]
    snapshots = destination.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert len(snapshots) == 2
    assert all(MANAGED in snapshot["Tags"] for snapshot in snapshots)

    # And a resource type CopyImage cannot tag is refused before anything is made
    with pytest.raises(ClientError) as refused:
        copy_of(
            destination,
            backup,
            "other-name",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [MANAGED]}],
        )
    assert error_code(refused) == "InvalidParameterValue"
    assert [i["ImageId"] for i in destination.describe_images(Owners=["self"])["Images"]] == [copy["ImageId"]]


def test_copy_image_name_must_be_free_in_the_destination_region(
    ec2: EC2Client, destination: EC2Client, backup: str
) -> None:
    # Given a first copy that keeps the source's name, which is free in the destination region
    first = copy_of(destination, backup, "nightly-web")

    # When a second copy asks for the same name, or for a name EC2 does not allow
    with pytest.raises(ClientError) as duplicate:
        copy_of(destination, backup, "nightly-web")
    with pytest.raises(ClientError) as malformed:
        copy_of(destination, backup, "web#1 copy")

    # Then both are refused, the duplicate naming the AMI that holds the name
    assert error_code(duplicate) == "InvalidAMIName.Duplicate"
    assert first in duplicate.value.response["Error"]["Message"]
    assert error_code(malformed) == "InvalidAMIName.Malformed"


def test_copy_image_retried_with_its_client_token_makes_nothing_new(
    ec2: EC2Client, destination: EC2Client, backup: str
) -> None:
    # Given a copy made with a client token
    first = copy_of(destination, backup, ClientToken="copy-nightly-web-1")

    # When the same request is retried, as after a timeout
    again = copy_of(destination, backup, ClientToken="copy-nightly-web-1")

    # Then it answers with the first copy and no second AMI or snapshot exists
    assert again == first
    assert [i["ImageId"] for i in destination.describe_images(Owners=["self"])["Images"]] == [first]
    assert len(destination.describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 2

    # And the token cannot be reused for a different request
    with pytest.raises(ClientError) as mismatch:
        copy_of(destination, backup, "another-name", ClientToken="copy-nightly-web-1")
    assert error_code(mismatch) == "IdempotentParameterMismatch"


@pytest.mark.parametrize(
    "kms_key_id",
    [None, f"arn:aws:kms:{DESTINATION_REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"],
    ids=["default-ebs-key", "given-key"],
)
def test_encrypted_copy_has_encrypted_snapshots_under_its_key(
    ec2: EC2Client, destination: EC2Client, backup: str, kms_key_id: str | None
) -> None:
    # Given an unencrypted backup
    assert not any(m["Ebs"]["Encrypted"] for m in image_of(ec2, backup)["BlockDeviceMappings"])

    # When it is copied with Encrypted, with or without a key
    key_argument = {"KmsKeyId": kms_key_id} if kms_key_id else {}
    copy = image_of(destination, copy_of(destination, backup, Encrypted=True, **key_argument))

    # Then the snapshots and the AMI's mappings carry that key, or the destination region's EBS key
    expected_key = (
        kms_key_id
        or boto3.client("kms", region_name=DESTINATION_REGION).describe_key(KeyId="alias/aws/ebs")[
            "KeyMetadata"
        ]["Arn"]
    )
    assert {(m["Ebs"]["Encrypted"], m["Ebs"]["KmsKeyId"]) for m in copy["BlockDeviceMappings"]} == {
        (True, expected_key)
    }
    snapshots = destination.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {(s["Encrypted"], s["KmsKeyId"]) for s in snapshots} == {(True, expected_key)}


def test_copy_of_an_encrypted_volume_stays_encrypted_without_being_asked(
    ec2: EC2Client, destination: EC2Client, base_image: str
) -> None:
    # Given a backup whose data volume is encrypted and whose root is not
    instance_id = launch(
        ec2,
        base_image,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20, "Encrypted": True}}],
    )
    backup = ec2.create_image(InstanceId=instance_id, Name="half-encrypted")["ImageId"]

    # When it is copied without Encrypted
    copy = image_of(destination, copy_of(destination, backup))

    # Then EC2 cannot make an unencrypted copy of that snapshot: it is re-encrypted under the
    # destination region's EBS key (the source's key belongs to another region), the root stays plain
    encrypted = {
        m["DeviceName"]: (m["Ebs"]["Encrypted"], "KmsKeyId" in m["Ebs"]) for m in copy["BlockDeviceMappings"]
    }
    assert encrypted == {copy["RootDeviceName"]: (False, False), "/dev/sdf": (True, True)}


def test_kms_key_without_encrypted_is_refused(ec2: EC2Client, destination: EC2Client, backup: str) -> None:
    # Given / When a key is given without asking for encryption
    with pytest.raises(ClientError) as refused:
        copy_of(destination, backup, KmsKeyId="alias/backups")

    # Then EC2 refuses rather than silently copying unencrypted
    assert error_code(refused) == "InvalidParameterDependency"


@pytest.mark.parametrize(("final_state", "snapshot_state"), [("available", "completed"), ("failed", "error")])
def test_copy_starts_pending_and_moves_on_like_a_new_image(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    destination: EC2Client,
    backup: str,
    final_state: str,
    snapshot_state: str,
) -> None:
    # Given new AMIs start pending, as a cross-region copy does on EC2 for minutes or hours
    aws.start_pending(True)
    copy_id = copy_of(destination, backup)
    pending = image_of(destination, copy_id)
    assert pending["State"] == "pending"
    snapshots = destination.describe_snapshots(SnapshotIds=snapshot_ids(pending))["Snapshots"]
    assert {s["State"] for s in snapshots} == {"pending"}

    # When EC2 finishes or fails the copy
    aws.set_image_state(DESTINATION_REGION, copy_id, final_state)

    # Then the copy and every one of its snapshots follow
    assert image_of(destination, copy_id)["State"] == final_state
    snapshots = destination.describe_snapshots(SnapshotIds=snapshot_ids(pending))["Snapshots"]
    assert {s["State"] for s in snapshots} == {snapshot_state}


def test_copy_of_an_image_missing_from_the_source_region_is_not_found(
    ec2: EC2Client, destination: EC2Client
) -> None:
    # Given an AMI that exists only in the destination region
    only_there = destination.register_image(Name="local-only")["ImageId"]

    # When it, and an id that exists nowhere, are copied from the source region
    with pytest.raises(ClientError) as elsewhere:
        copy_of(destination, only_there, "copy-of-local")
    with pytest.raises(ClientError) as nowhere:
        copy_of(destination, "ami-0123456789abcdef0", "copy-of-nothing")

    # Then both are not found, as the source is looked up in SourceRegion, and nothing was made
    assert error_code(elsewhere) == error_code(nowhere) == "InvalidAMIID.NotFound"
    assert [i["ImageId"] for i in destination.describe_images(Owners=["self"])["Images"]] == [only_there]


# --- Gap 14: CopyImage of an AMI owned by another account (the vault) ------------------------------------
VAULT_ACCOUNT = "222233334444"
VAULT_ROLE = f"arn:aws:iam::{VAULT_ACCOUNT}:role/amikeeper-vault-amikeeper"


def vault_client(region: str = DESTINATION_REGION) -> EC2Client:
    """EC2 in the vault account, through the vault role, as the stack reaches it."""
    credentials = boto3.client("sts", region_name=FAKE_REGION).assume_role(
        RoleArn=VAULT_ROLE, RoleSessionName="amikeeper-copy", ExternalId="vault-external-id"
    )["Credentials"]
    return boto3.client(
        "ec2",
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


@pytest.fixture
def vault(aws: Ec2Fidelity) -> EC2Client:  # noqa: F811 - the imported fixture, requested by name
    return vault_client()


def share(
    ec2: EC2Client, image_id: str, *, launch: bool = True, volumes: bool = True, add: bool = True
) -> None:
    """Share (or, with add=False, unshare) a backup with the vault account, as the stack does."""
    operation: Literal["add", "remove"] = "add" if add else "remove"
    if launch:
        vault_only: list[LaunchPermissionTypeDef] = [{"UserId": VAULT_ACCOUNT}]
        change: LaunchPermissionModificationsTypeDef = {"Add": vault_only} if add else {"Remove": vault_only}
        ec2.modify_image_attribute(ImageId=image_id, LaunchPermission=change)
    if volumes:
        for snapshot_id in snapshot_ids(image_of(ec2, image_id)):
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                OperationType=operation,
                UserIds=[VAULT_ACCOUNT],
            )


def vault_copy(vault: EC2Client, source_id: str, name: str = "vault-nightly-web", **extra: Any) -> str:
    return copy_of(vault, source_id, name, **extra)


def encrypted_backup(ec2: EC2Client, base_image: str, name: str, kms_key_id: str | None = None) -> str:
    ebs: dict[str, Any] = {"VolumeSize": 20, "Encrypted": True}
    if kms_key_id:
        ebs["KmsKeyId"] = kms_key_id
    instance_id = launch(ec2, base_image, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": ebs}])
    return ec2.create_image(InstanceId=instance_id, Name=name)["ImageId"]


def source_key(policy_for_vault: bool) -> str:
    """A customer managed key in the source account; its policy lets the vault use it, or only the owner."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Owner",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if policy_for_vault:
        statements.append(
            {
                "Sid": "VaultCopiesSharedSnapshots",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{VAULT_ACCOUNT}:root"},
                "Action": [
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:CreateGrant",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                ],
                "Resource": "*",
            }
        )
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    kms = boto3.client("kms", region_name=FAKE_REGION)
    return kms.create_key(Policy=policy, Description="backups")["KeyMetadata"]["Arn"]


@pytest.mark.parametrize(
    ("launch_shared", "volumes_shared", "expected"),
    [
        (False, False, "InvalidAMIID.NotFound"),
        (False, True, "InvalidAMIID.NotFound"),
        (True, False, "InvalidRequest"),
    ],
    ids=["unshared", "volumes-only", "launch-only"],
)
def test_vault_cannot_copy_a_backup_not_shared_with_it(
    ec2: EC2Client, vault: EC2Client, backup: str, launch_shared: bool, volumes_shared: bool, expected: str
) -> None:
    # Given a backup of the source account shared with the vault partly or not at all
    share(ec2, backup, launch=launch_shared, volumes=volumes_shared)

    # When the vault account copies it
    with pytest.raises(ClientError) as refused:
        vault_copy(vault, backup)

    # Then EC2 refuses: the AMI is invisible without launch permission, its storage unreadable without
    # createVolumePermission on every snapshot; and the vault holds nothing
    assert error_code(refused) == expected
    if expected == "InvalidRequest":
        assert "permission to access the storage" in refused.value.response["Error"]["Message"]
    assert vault.describe_images(Owners=["self"])["Images"] == []
    assert vault.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_vault_copies_a_shared_backup_and_owns_the_copy(
    ec2: EC2Client, vault: EC2Client, backup: str
) -> None:
    # Given a two-volume backup shared with the vault (launch permission and both snapshots)
    share(ec2, backup)

    # When the vault account copies it into its region, tagging in the same call
    copy_id = vault_copy(vault, backup, TagSpecifications=IMAGE_AND_SNAPSHOT_TAGS)

    # Then the copy and its snapshots belong to the vault account, not to the source account
    copy = image_of(vault, copy_id)
    assert copy["OwnerId"] == VAULT_ACCOUNT
    assert devices(copy) == devices(image_of(ec2, backup))
    assert [i["ImageId"] for i in vault.describe_images(Owners=["self"])["Images"]] == [copy_id]
    snapshots = vault.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert {s["SnapshotId"] for s in snapshots} == set(snapshot_ids(copy))
    assert {s["OwnerId"] for s in snapshots} == {VAULT_ACCOUNT}
    assert all(MANAGED in s["Tags"] for s in snapshots)
    assert MANAGED in copy["Tags"]
    # And the source account cannot see, let alone delete, it in that region
    source_in_destination = boto3.client("ec2", region_name=DESTINATION_REGION)
    assert source_in_destination.describe_images(Owners=["self"])["Images"] == []
    with pytest.raises(ClientError) as invisible:
        source_in_destination.deregister_image(ImageId=copy_id)
    assert error_code(invisible) == "InvalidAMIID.NotFound"


def test_vault_cannot_copy_again_once_the_backup_is_unshared(
    ec2: EC2Client, vault: EC2Client, backup: str
) -> None:
    # Given a backup that was shared, copied, and unshared when the copy completed
    share(ec2, backup)
    first = vault_copy(vault, backup)
    share(ec2, backup, add=False)
    assert (
        ec2.describe_image_attribute(ImageId=backup, Attribute="launchPermission")["LaunchPermissions"] == []
    )

    # When the vault tries another copy
    with pytest.raises(ClientError) as refused:
        vault_copy(vault, backup, "vault-second")

    # Then it is refused, and the first copy is still the vault's own
    assert error_code(refused) == "InvalidAMIID.NotFound"
    assert image_of(vault, first)["OwnerId"] == VAULT_ACCOUNT

    # And with only the launch permission removed, the storage alone does not let it copy
    share(ec2, backup, launch=False)
    with pytest.raises(ClientError) as still_refused:
        vault_copy(vault, backup, "vault-third")
    assert error_code(still_refused) == "InvalidAMIID.NotFound"


def test_vault_copy_starts_pending_and_moves_on_in_the_vault_account(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    vault: EC2Client,
    backup: str,
) -> None:
    # Given a shared backup copied while new AMIs start pending
    share(ec2, backup)
    aws.start_pending(True)
    copy_id = vault_copy(vault, backup)
    assert image_of(vault, copy_id)["State"] == "pending"

    # When EC2 finishes the copy in the vault account
    aws.set_image_state(DESTINATION_REGION, copy_id, "available", account_id=VAULT_ACCOUNT)

    # Then the vault sees it available with completed snapshots
    copy = image_of(vault, copy_id)
    assert copy["State"] == "available"
    snapshots = vault.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {s["State"] for s in snapshots} == {"completed"}


def test_snapshot_under_the_aws_managed_key_cannot_be_shared_or_copied_by_the_vault(
    ec2: EC2Client, vault: EC2Client, base_image: str
) -> None:
    # Given a backup whose data volume is encrypted with the account's default key, aws/ebs
    backup = encrypted_backup(ec2, base_image, "default-key")
    encrypted_snapshot = next(
        m["Ebs"]["SnapshotId"] for m in image_of(ec2, backup)["BlockDeviceMappings"] if m["Ebs"]["Encrypted"]
    )

    # When the source account shares the snapshot, or the AMI, with the vault
    with pytest.raises(ClientError) as snapshot_refused:
        ec2.modify_snapshot_attribute(
            SnapshotId=encrypted_snapshot,
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=[VAULT_ACCOUNT],
        )
    with pytest.raises(ClientError) as image_refused:
        ec2.modify_image_attribute(ImageId=backup, LaunchPermission={"Add": [{"UserId": VAULT_ACCOUNT}]})

    # Then EC2 refuses both, nothing is shared, and the vault cannot copy the backup
    assert error_code(snapshot_refused) == "OperationNotPermitted"
    assert error_code(image_refused) == "InvalidParameter"
    assert "AWS Managed CMK" in image_refused.value.response["Error"]["Message"]
    attribute = ec2.describe_snapshot_attribute(
        SnapshotId=encrypted_snapshot, Attribute="createVolumePermission"
    )
    assert attribute["CreateVolumePermissions"] == []
    assert (
        ec2.describe_image_attribute(ImageId=backup, Attribute="launchPermission")["LaunchPermissions"] == []
    )
    with pytest.raises(ClientError) as copy_refused:
        vault_copy(vault, backup)
    assert error_code(copy_refused) == "InvalidAMIID.NotFound"


def test_vault_copies_a_backup_under_a_customer_managed_key_it_may_use(
    ec2: EC2Client, vault: EC2Client, base_image: str
) -> None:
    # Given a backup encrypted with a customer managed key whose policy lets the vault use it, shared
    key_arn = source_key(policy_for_vault=True)
    backup = encrypted_backup(ec2, base_image, "cmk-backup", key_arn)
    share(ec2, backup)

    # When the vault copies it, re-encrypting under its own key
    vault_key = f"arn:aws:kms:{DESTINATION_REGION}:{VAULT_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    copy = image_of(vault, vault_copy(vault, backup, Encrypted=True, KmsKeyId=vault_key))

    # Then the copy is available, owned by the vault, and every snapshot is under the vault's key
    assert (copy["State"], copy["OwnerId"]) == ("available", VAULT_ACCOUNT)
    snapshots = vault.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {(s["Encrypted"], s["KmsKeyId"]) for s in snapshots} == {(True, vault_key)}


def test_vault_copy_fails_when_the_source_key_does_not_let_the_vault_use_it(
    ec2: EC2Client, vault: EC2Client, base_image: str
) -> None:
    # Given a backup under a customer managed key whose policy names only its owner, shared with the vault
    backup = encrypted_backup(ec2, base_image, "cmk-private", source_key(policy_for_vault=False))
    share(ec2, backup)

    # When the vault copies it
    copy_id = vault_copy(vault, backup)

    # Then EC2 accepts the call but the copy fails, saying why, and its snapshots are in error
    copy = image_of(vault, copy_id)
    assert copy["State"] == "failed"
    assert copy["StateReason"]["Code"] == "Client.InvalidKMSKey.NotAccessible"
    assert "not accessible" in copy["StateReason"]["Message"]
    snapshots = vault.describe_snapshots(SnapshotIds=snapshot_ids(copy))["Snapshots"]
    assert {s["State"] for s in snapshots} == {"error"}


def test_client_tokens_are_per_account(
    ec2: EC2Client, destination: EC2Client, vault: EC2Client, backup: str
) -> None:
    # Given the source account made a copy with a client token
    own = copy_of(destination, backup, ClientToken="copy-nightly-web")
    share(ec2, backup)

    # When the vault uses the same token for its own copy
    theirs = vault_copy(vault, backup, ClientToken="copy-nightly-web")

    # Then it is a different copy in the vault, not the source account's copy
    assert theirs != own
    assert image_of(vault, theirs)["OwnerId"] == VAULT_ACCOUNT


# --- Gap 10: RunInstances from a backup gets the backup's volumes ------------------------------------------
@pytest.fixture
def web_backup(ec2: EC2Client, base_image: str) -> str:
    instance_id = launch(
        ec2,
        base_image,
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/sdf",
                "Ebs": {"VolumeSize": 20, "VolumeType": "gp3", "DeleteOnTermination": False},
            }
        ],
    )
    return ec2.create_image(InstanceId=instance_id, Name="restore-source")["ImageId"]


def volumes_of(ec2: EC2Client, instance_id: str) -> dict[str, tuple[int, str, str | None, bool]]:
    """Device name -> (size, type, snapshot it was restored from, DeleteOnTermination)."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    delete_on_termination = {
        m["DeviceName"]: m["Ebs"]["DeleteOnTermination"] for m in instance["BlockDeviceMappings"]
    }
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])[
        "Volumes"
    ]
    return {
        v["Attachments"][0]["Device"]: (
            v["Size"],
            v["VolumeType"],
            v.get("SnapshotId") or None,
            delete_on_termination[v["Attachments"][0]["Device"]],
        )
        for v in volumes
    }


def root_volume_id(ec2: EC2Client, instance_id: str) -> str:
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return next(
        m["Ebs"]["VolumeId"]
        for m in instance["BlockDeviceMappings"]
        if m["DeviceName"] == instance["RootDeviceName"]
    )


def test_instance_launched_from_a_backup_gets_every_volume_of_the_backup(
    ec2: EC2Client, web_backup: str
) -> None:
    # Given a backup of an instance with a root and a 20 GiB gp3 data volume
    image = image_of(ec2, web_backup)
    expected = {
        m["DeviceName"]: (
            m["Ebs"]["VolumeSize"],
            m["Ebs"]["VolumeType"],
            m["Ebs"]["SnapshotId"],
            m["Ebs"]["DeleteOnTermination"],
        )
        for m in image["BlockDeviceMappings"]
    }

    # When an instance is restored from it with no mappings of its own
    restored = launch(ec2, web_backup)

    # Then each device holds its data back, restored from its snapshot with the backup's attributes; an
    # empty 8 GiB root alone would make every restore look fine and hold nothing
    assert volumes_of(ec2, restored) == expected
    assert set(expected) == {image["RootDeviceName"], "/dev/sdf"}


def test_launch_mappings_override_drop_and_add_to_the_backups_devices(
    ec2: EC2Client, web_backup: str
) -> None:
    # Given a backup with a root and /dev/sdf
    image = image_of(ec2, web_backup)
    root = image["RootDeviceName"]
    root_snapshot = next(
        m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m["DeviceName"] == root
    )

    # When the restore grows the root, leaves out /dev/sdf and adds a blank /dev/sdg
    restored = launch(
        ec2,
        web_backup,
        BlockDeviceMappings=[
            {"DeviceName": root, "Ebs": {"VolumeSize": 30}},
            {"DeviceName": "/dev/sdf", "NoDevice": ""},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 5}},
        ],
    )

    # Then the root keeps its snapshot, type and DeleteOnTermination from the backup and takes only the new
    # size, as EC2 merges a launch mapping field by field into the AMI's
    volumes = volumes_of(ec2, restored)
    assert volumes[root] == (30, "gp2", root_snapshot, True)
    assert "/dev/sdf" not in volumes
    assert volumes["/dev/sdg"][:3] == (5, "gp2", None)


def test_launch_mapping_smaller_than_its_snapshot_is_refused(ec2: EC2Client, web_backup: str) -> None:
    # Given / When a restore asks for /dev/sdf smaller than the 20 GiB it was backed up at
    with pytest.raises(ClientError) as refused:
        launch(ec2, web_backup, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10}}])

    # Then EC2 refuses, since the snapshot's data cannot fit
    assert error_code(refused) == "InvalidBlockDeviceMapping"


# --- Gap 11: replace-root-volume tasks ----------------------------------------------------------------------
def root_task(ec2: EC2Client, task_id: str) -> Any:
    return ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])[
        "ReplaceRootVolumeTasks"
    ][0]


def test_replace_root_volume_task_restores_the_root_in_place(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    web_backup: str,
    base_image: str,
) -> None:
    # Given a running instance whose root is to be rolled back to a backup
    instance_id = launch(ec2, base_image)
    before = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    old_root = root_volume_id(ec2, instance_id)
    image = image_of(ec2, web_backup)
    backup_root = next(
        m["Ebs"] for m in image["BlockDeviceMappings"] if m["DeviceName"] == image["RootDeviceName"]
    )

    # When a task is created that deletes the replaced root
    task = ec2.create_replace_root_volume_task(
        InstanceId=instance_id,
        ImageId=web_backup,
        DeleteReplacedRootVolume=True,
        TagSpecifications=[{"ResourceType": "replace-root-volume-task", "Tags": [MANAGED]}],
    )["ReplaceRootVolumeTask"]

    # Then it waits like EC2's does, and the root is untouched until the task succeeds
    assert (task["TaskState"], task["Tags"], task["DeleteReplacedRootVolume"]) == ("pending", [MANAGED], True)
    aws.finish_replace_root_volume_tasks(FAKE_REGION, "in-progress")
    assert root_task(ec2, task["ReplaceRootVolumeTaskId"])["TaskState"] == "in-progress"
    assert root_volume_id(ec2, instance_id) == old_root
    aws.finish_replace_root_volume_tasks(FAKE_REGION)
    done = root_task(ec2, task["ReplaceRootVolumeTaskId"])
    assert done["TaskState"] == "succeeded"
    assert "CompleteTime" in done

    # And the same instance, with the same network identity, boots a new root restored from the backup
    after = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    identity = ("InstanceId", "PrivateIpAddress", "PublicIpAddress", "RootDeviceName")
    assert [after.get(k) for k in identity] == [before.get(k) for k in identity]
    assert [n["NetworkInterfaceId"] for n in after["NetworkInterfaces"]] == [
        n["NetworkInterfaceId"] for n in before["NetworkInterfaces"]
    ]
    new_root = root_volume_id(ec2, instance_id)
    assert new_root != old_root
    assert volumes_of(ec2, instance_id)[after["RootDeviceName"]][:3] == (
        backup_root["VolumeSize"],
        backup_root["VolumeType"],
        backup_root["SnapshotId"],
    )
    with pytest.raises(ClientError) as gone:
        ec2.describe_volumes(VolumeIds=[old_root])
    assert error_code(gone) == "InvalidVolume.NotFound"


def test_replaced_root_is_kept_unless_asked_and_a_snapshot_can_be_the_source(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    web_backup: str,
) -> None:
    # Given an instance restored from a backup, and a later snapshot of its root
    instance_id = launch(ec2, web_backup)
    old_root = root_volume_id(ec2, instance_id)
    snapshot = ec2.create_snapshot(VolumeId=old_root)["SnapshotId"]

    # When its root is replaced from that snapshot without DeleteReplacedRootVolume
    ec2.create_replace_root_volume_task(InstanceId=instance_id, SnapshotId=snapshot)
    aws.finish_replace_root_volume_tasks(FAKE_REGION)

    # Then the new root comes from the snapshot and the old root is left detached for the owner to inspect
    root = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
        "RootDeviceName"
    ]
    assert volumes_of(ec2, instance_id)[root][2] == snapshot
    assert ec2.describe_volumes(VolumeIds=[old_root])["Volumes"][0]["State"] == "available"


def test_failed_task_leaves_the_root_and_is_listed_by_instance(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    web_backup: str,
) -> None:
    # Given tasks on two instances
    target, other = launch(ec2, web_backup), launch(ec2, web_backup)
    old_root = root_volume_id(ec2, target)
    task_id = ec2.create_replace_root_volume_task(InstanceId=target, ImageId=web_backup)[
        "ReplaceRootVolumeTask"
    ]["ReplaceRootVolumeTaskId"]
    ec2.create_replace_root_volume_task(InstanceId=other, ImageId=web_backup)

    # When EC2 fails them
    aws.finish_replace_root_volume_tasks(FAKE_REGION, "failed")

    # Then a restore drill finds its task by instance id, sees the failure and the root it still has
    listed = ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [target]}])
    assert [(t["ReplaceRootVolumeTaskId"], t["TaskState"]) for t in listed["ReplaceRootVolumeTasks"]] == [
        (task_id, "failed")
    ]
    assert root_volume_id(ec2, target) == old_root


def test_replace_root_volume_is_refused_for_a_stopped_instance_or_two_sources(
    ec2: EC2Client, web_backup: str
) -> None:
    # Given a stopped instance and a running one
    stopped, running = launch(ec2, web_backup), launch(ec2, web_backup)
    ec2.stop_instances(InstanceIds=[stopped])
    snapshot = image_of(ec2, web_backup)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

    # When / Then EC2 replaces roots only on running instances, from one source
    with pytest.raises(ClientError) as not_running:
        ec2.create_replace_root_volume_task(InstanceId=stopped, ImageId=web_backup)
    with pytest.raises(ClientError) as both:
        ec2.create_replace_root_volume_task(InstanceId=running, ImageId=web_backup, SnapshotId=snapshot)
    assert error_code(not_running) == "IncorrectInstanceState"
    assert error_code(both) == "InvalidParameterCombination"
    assert ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"] == []


# --- Gap 12: DescribeInstanceStatus checks --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("instance_check", "system_check", "instance_detail"),
    [("initializing", "initializing", "initializing"), ("impaired", "ok", "failed"), ("ok", "ok", "passed")],
)
def test_status_checks_can_be_initializing_impaired_or_ok(
    aws: Ec2Fidelity,  # noqa: F811
    ec2: EC2Client,
    web_backup: str,
    instance_check: str,
    system_check: str,
    instance_detail: str,
) -> None:
    # Given a restored instance and one left alone
    restored, untouched = launch(ec2, web_backup), launch(ec2, web_backup)

    # When EC2 reports its status checks
    aws.set_instance_status(FAKE_REGION, restored, instance_check, system_check)

    # Then a restore drill polling for `ok` sees them, and only on that instance
    statuses = {
        s["InstanceId"]: s
        for s in ec2.describe_instance_status(InstanceIds=[restored, untouched])["InstanceStatuses"]
    }
    status = statuses[restored]
    assert (status["InstanceStatus"]["Status"], status["SystemStatus"]["Status"]) == (
        instance_check,
        system_check,
    )
    assert status["InstanceStatus"]["Details"][0]["Status"] == instance_detail
    assert ("ImpairedSince" in status["InstanceStatus"]["Details"][0]) == (instance_check == "impaired")
    assert statuses[untouched]["InstanceStatus"]["Status"] == "ok"


# --- Helpers refuse what they cannot do ----------------------------------------------------------------------
def test_helpers_reject_invalid_input(aws: Ec2Fidelity, ec2: EC2Client, base_image: str) -> None:  # noqa: F811
    # Given an AMI
    image_id = ec2.create_image(InstanceId=launch(ec2, base_image), Name="target")["ImageId"]

    # When / Then each invalid request names what is wrong
    with pytest.raises(UnknownImageError, match="ami-0000"):
        aws.set_image_state(FAKE_REGION, "ami-0000", "available")
    with pytest.raises(InvalidImageStateError, match="deregistered"):
        aws.set_image_state(FAKE_REGION, image_id, "deregistered")
    with pytest.raises(NaiveDatetimeError, match="tzinfo"):
        aws.set_creation_date(FAKE_REGION, image_id, datetime(2026, 1, 1))  # noqa: DTZ001 - the point
    with pytest.raises(UnknownSnapshotError, match="snap-0000"):
        aws.set_snapshot_start_time(FAKE_REGION, "snap-0000", datetime.now(UTC))
    with pytest.raises(InvalidReturnCodeError, match="success"):
        aws.fail_snapshot_deletion("snap-0000", "success")
    with pytest.raises(InvalidTaskStateError, match="pending"):
        aws.finish_replace_root_volume_tasks(FAKE_REGION, "pending")
    with pytest.raises(UnknownInstanceError, match="i-0000"):
        aws.set_instance_status(FAKE_REGION, "i-0000", "ok")
    with pytest.raises(InvalidInstanceStatusError, match="broken"):
        aws.set_instance_status(FAKE_REGION, launch(ec2, base_image), "ok", "broken")


def test_nesting_is_refused(aws: Ec2Fidelity) -> None:  # noqa: F811
    # Given an open extension / When another is opened / Then
    with pytest.raises(FidelityAlreadyActiveError), real_ec2_semantics():
        pass


# --- The patches come off ----------------------------------------------------------------------------------
@pytest.fixture
def plain_moto(aws_credentials: None) -> Iterator[EC2Client]:  # noqa: F811
    with mock_aws():
        with real_ec2_semantics():
            pass
        yield boto3.client("ec2", region_name=FAKE_REGION)


def test_outside_the_context_manager_moto_is_unpatched(plain_moto: EC2Client) -> None:
    # Given the extension was opened and closed
    ec2 = plain_moto
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance_id = launch(ec2, image_id)

    # When the gap behaviours are exercised
    with pytest.raises(NotImplementedError):
        ec2.create_image(
            InstanceId=instance_id,
            Name="plain",
            TagSpecifications=IMAGE_AND_SNAPSHOT_TAGS,
        )
    with pytest.raises(NotImplementedError):
        ec2.describe_image_references(ImageIds=[image_id], IncludeAllResourceTypes=True)
    with pytest.raises(NotImplementedError):
        ec2.create_replace_root_volume_task(InstanceId=instance_id)

    # Then moto answers as it always did
    first = ec2.create_image(InstanceId=instance_id, Name="plain")["ImageId"]
    ec2.create_image(InstanceId=instance_id, Name="plain")
    assert [m["Ebs"]["VolumeSize"] for m in image_of(ec2, first)["BlockDeviceMappings"]] == [15]
    assert "state_reason" not in vars(Ami)
    assert AmiBackend.create_image.__module__ == "moto.ec2.models.amis"
    assert AmisResponse.copy_image.__module__ == "moto.ec2.responses.amis"
    assert (
        ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]["InstanceStatus"][
            "Status"
        ]
        == "ok"
    )


# --- SQS FIFO deduplication (gap 13) ---------------------------------------------------------------------
def fifo_queue(region: str) -> str:
    return boto3.client("sqs", region_name=region).create_queue(
        QueueName="tasks.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]


def send_and_take(region: str, queue_url: str, deduplication_id: str) -> list[str]:
    """Send one message, then receive and delete whatever is delivered; the bodies delivered."""
    sqs = boto3.client("sqs", region_name=region)
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=deduplication_id,
        MessageGroupId="g",
        MessageDeduplicationId=deduplication_id,
    )
    bodies = []
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.append(message["Body"])
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_a_fifo_duplicate_sent_after_the_first_was_deleted_is_dropped(aws: Ec2Fidelity) -> None:  # noqa: F811
    # Given a FIFO queue whose first message was delivered and deleted
    queue_url = fifo_queue("eu-west-1")
    assert send_and_take("eu-west-1", queue_url, "region#tick-1") == ["region#tick-1"]
    # When the same deduplication id is sent again within five minutes / Then nothing is delivered
    assert send_and_take("eu-west-1", queue_url, "region#tick-1") == []
    # And another id is delivered as usual
    assert send_and_take("eu-west-1", queue_url, "region#tick-2") == ["region#tick-2"]


def test_without_the_extension_moto_delivers_the_duplicate_again(aws_credentials: None) -> None:  # noqa: F811
    with mock_aws():
        queue_url = fifo_queue("eu-west-1")
        assert send_and_take("eu-west-1", queue_url, "region#tick-1") == ["region#tick-1"]
        assert send_and_take("eu-west-1", queue_url, "region#tick-1") == ["region#tick-1"]


# --- Pagination cursor, as a property --------------------------------------------------------------------
@given(
    keys=st.sets(st.text(alphabet="0123456789abcdef", min_size=1, max_size=8), max_size=60),
    page_size=st.integers(min_value=5, max_value=20),
    deleted_each_page=st.integers(min_value=0, max_value=3),
)
def test_paging_reaches_every_item_that_still_exists(
    keys: set[str], page_size: int, deleted_each_page: int
) -> None:
    # Given items, some of which are deleted after each page is read
    remaining = set(keys)
    served: list[str] = []
    token: str | None = None
    while True:
        # When the next page is read
        page, token = _page(sorted(remaining), str, page_size, token, largest_page=1000)
        served += page
        for gone in page[:deleted_each_page]:
            remaining.discard(gone)
        if token is None:
            break

    # Then every item was served exactly once
    assert sorted(served) == sorted(keys)


# --- Gap 15: the AWS managed EBS key ------------------------------------------------------------------------
def test_the_key_behind_aws_ebs_is_aws_managed(aws: Ec2Fidelity) -> None:  # noqa: F811 - the fixture
    # Given a volume encrypted without naming a key (EC2 then uses the account's aws/ebs key)
    ec2 = boto3.client("ec2", region_name=FAKE_REGION)
    volume = ec2.create_volume(AvailabilityZone=f"{FAKE_REGION}a", Size=8, Encrypted=True)
    # When KMS describes that key
    key = boto3.client("kms", region_name=FAKE_REGION).describe_key(KeyId=volume["KmsKeyId"])["KeyMetadata"]
    # Then it is an AWS managed key, found under its alias
    assert key["KeyManager"] == "AWS"
    aliases = boto3.client("kms", region_name=FAKE_REGION).list_aliases(KeyId=key["KeyId"])["Aliases"]
    assert [alias["AliasName"] for alias in aliases] == ["alias/aws/ebs"]


# --- Gap 16: RunInstances is idempotent by ClientToken ----------------------------------------------------
def test_run_instances_repeated_with_its_client_token_launches_nothing_new(ec2: EC2Client) -> None:
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]

    def launch(token: str | None, instance_type: InstanceTypeType = "t3.micro") -> str:
        token_given: dict[str, Any] = {"ClientToken": token} if token else {}
        response = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type, **token_given
        )
        return response["Instances"][0]["InstanceId"]

    # Given an instance launched with a client token
    first = launch("drill-of-ami-1")
    # When the same request comes again with the same token, and without a token
    again = launch("drill-of-ami-1")
    other = launch(None)
    # Then the repeat answers with the first instance, and only the untokened call launched another
    assert again == first and other != first
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert sorted(i["InstanceId"] for i in running) == sorted({first, other})
    # And the token with other parameters is refused
    with pytest.raises(ClientError) as refused:
        launch("drill-of-ami-1", "t3.small")
    assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
