"""Every EC2 call amikeeper makes, for one region: reads, CreateImage, retention's deletions, and the
operator CLI's restores.

Reads are region-wide, paginated and filtered on the server (one run costs a handful of pages per region
however many instances it covers, never one call per instance), or batched by EC2's own limit
(DescribeImageReferences takes 10 image ids). Deletion never goes past this stack's resources: callers
pass only AMIs listed with the stack's managed-by tag, a snapshot is deleted only when it carries that
tag too (IAM enforces the same condition), and deletions draw on a pacer that keeps them inside EC2's
request-rate bucket for them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Literal, Protocol, cast

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.model import (
    COPY_OF,
    DRILL,
    INSTANCE_ID,
    MANAGED_BY,
    SLOT,
    TRIGGER,
    GroupFacts,
    Image,
    Instance,
    InstanceHealth,
    LaunchConfig,
    Snapshot,
    Subnet,
    WorkItem,
    tag_map,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import (
        DescribeLaunchTemplateVersionsRequestPaginateTypeDef,
        FilterTypeDef,
        ImageTypeDef,
        InstanceStatusSummaryTypeDef,
        InstanceTypeDef,
        LaunchTemplateVersionTypeDef,
        RunInstancesRequestTypeDef,
        TagTypeDef,
    )

PAGE_SIZE = 1000
TEMPLATE_PAGE_SIZE = 200
IMAGE_ID_FILTER_CHUNK = 200
# EC2 takes at most 200 values in one filter.
FILTER_VALUES = 200
# DescribeImageReferences accepts at most 10 image ids a call.
REFERENCE_CHUNK = 10
# version-depth counts back from the newest version, so only the maximum is sure to reach $Default;
# which versions are $Default and $Latest is then read from the templates themselves.
REFERENCE_VERSION_DEPTH = "10000"
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
INSTANCE_STATES_THAT_USE = ["pending", "running", "shutting-down", "stopping", "stopped"]

DUPLICATE_NAME = "InvalidAMIName.Duplicate"
IDEMPOTENT_MISMATCH = "IdempotentParameterMismatch"
# What EC2 answers a DryRun request it would have carried out.
DRY_RUN_PASSED = "DryRunOperation"
INSTANCE_NOT_FOUND = "InvalidInstanceID.NotFound"
IMAGE_NOT_FOUND = ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed")
SNAPSHOT_IN_USE = "InvalidSnapshot.InUse"
SNAPSHOT_NOT_FOUND = "InvalidSnapshot.NotFound"
TEMPLATE_NOT_FOUND = (
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.VersionNotFound",
)
# What an account, region or SDK without DescribeImageReferences (or without the permission) answers.
REFERENCES_UNAVAILABLE = (
    "InvalidAction",
    "UnsupportedOperation",
    "UnauthorizedOperation",
    "OperationNotPermitted",
)
# What EC2 answers when asked for $Default/$Latest of every template at once and cannot do it.
ALL_TEMPLATES_UNSUPPORTED = (
    "MissingParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "UnsupportedOperation",
)
_TEMPLATE_ARN = re.compile(r":launch-template/(lt-[0-9a-f]+)$")
_INSTANCE_ARN = re.compile(r":instance/(i-[0-9a-f]+)$")


class Pacer(Protocol):
    def acquire(self) -> None: ...


class _Unpaced:
    def acquire(self) -> None:
        return None


class ImageReferencesUnavailable(RuntimeError):
    """DescribeImageReferences cannot be used here; the caller scans instead."""


@dataclass(frozen=True)
class CreateResult:
    image_id: str | None
    duplicate: bool


@dataclass(frozen=True)
class CopyStart:
    """What CopyImage answered: the copy's id, or that a copy of that name already exists (an earlier
    delivery of the same task made it, past the client token's memory)."""

    image_id: str | None
    duplicate: bool


@dataclass(frozen=True)
class CopyRequest:
    source_region: str
    source_image_id: str
    name: str
    description: str
    encrypted: bool
    kms_key_id: str | None
    tags: Mapping[str, str]
    client_token: str


@dataclass(frozen=True)
class ImageReference:
    image_id: str
    resource_type: str
    arn: str

    @property
    def instance_id(self) -> str | None:
        match = _INSTANCE_ARN.search(self.arn)
        return match.group(1) if match else None

    @property
    def template_id(self) -> str | None:
        match = _TEMPLATE_ARN.search(self.arn)
        return match.group(1) if match else None


SnapshotStatus = Literal["deleted", "shared", "gone", "failed"]


@dataclass(frozen=True)
class SnapshotDeletion:
    """What became of one snapshot: deleted, kept because another AMI uses it, already gone, or failed."""

    snapshot_id: str
    status: SnapshotStatus
    detail: str = ""


@dataclass(frozen=True)
class Deregistration:
    image_id: str
    snapshots: tuple[SnapshotDeletion, ...]
    method: Literal["DeleteAssociatedSnapshots", "DeleteSnapshot"]


@dataclass(frozen=True)
class DrillLaunch:
    """One restore drill's RunInstances: the backup, where, on what, tagged how, and its token."""

    image_id: str
    devices: tuple[str, ...]
    subnet_id: str
    security_group_id: str
    instance_type: str
    tags: Mapping[str, str]
    client_token: str


@dataclass(frozen=True)
class RootTask:
    task_id: str
    instance_id: str
    state: str


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _instance(data: InstanceTypeDef) -> Instance:
    return Instance(
        instance_id=data["InstanceId"],
        state=data["State"]["Name"],
        tags=tag_map(data.get("Tags")),
        launch_time=data.get("LaunchTime"),
        image_id=data.get("ImageId"),
        launch=LaunchConfig(
            instance_type=data["InstanceType"],
            subnet_id=data.get("SubnetId"),
            availability_zone=data.get("Placement", {}).get("AvailabilityZone"),
            security_group_ids=tuple(
                group["GroupId"] for group in data.get("SecurityGroups", []) if "GroupId" in group
            ),
            instance_profile_arn=data.get("IamInstanceProfile", {}).get("Arn"),
            key_name=data.get("KeyName"),
            ebs_optimized=bool(data.get("EbsOptimized", False)),
        ),
    )


def _image(data: ImageTypeDef) -> Image:
    snapshots = tuple(
        mapping["Ebs"]["SnapshotId"]
        for mapping in data.get("BlockDeviceMappings", [])
        if "Ebs" in mapping and "SnapshotId" in mapping["Ebs"]
    )
    return Image(
        image_id=data["ImageId"],
        name=data.get("Name", ""),
        state=data["State"],
        created=datetime.fromisoformat(data["CreationDate"].replace("Z", "+00:00")),
        tags=tag_map(data.get("Tags")),
        snapshot_ids=snapshots,
        state_reason=data.get("StateReason", {}).get("Message"),
        owner_id=data.get("OwnerId"),
        architecture=data.get("Architecture"),
        devices=tuple(
            mapping["DeviceName"]
            for mapping in data.get("BlockDeviceMappings", [])
            if "Ebs" in mapping and "DeviceName" in mapping
        ),
    )


class Ec2Gateway:
    """One region's EC2, through one client; deletions paced by ``pacer``."""

    def __init__(self, client: EC2Client, pacer: Pacer | None = None) -> None:
        self._client = client
        self._pacer: Pacer = pacer or _Unpaced()
        self._references_available: bool | None = None
        request = client.meta.service_model.operation_model("DeregisterImage").input_shape
        self.deletes_associated_snapshots = (
            request is not None and "DeleteAssociatedSnapshots" in request.members
        )

    # --- instances -----------------------------------------------------------------------------------------
    def opted_in_instances(self, opt_in_tag_key: str) -> Iterator[Instance]:
        """Every live instance carrying the opt-in tag key; the value is judged by the caller."""
        yield from self._describe_instances(
            [
                {"Name": "tag-key", "Values": [opt_in_tag_key]},
                {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
            ]
        )

    def instances(self) -> Iterator[Instance]:
        """Every instance EC2 still lists in the region, in any state (terminated ones linger a while)."""
        yield from self._describe_instances([])

    def instance(self, instance_id: str) -> Instance | None:
        """One instance in any state (EC2 lists terminated ones for about an hour), or None."""
        try:
            response = self._client.describe_instances(InstanceIds=[instance_id])
        except ClientError as error:
            if error_code(error) == INSTANCE_NOT_FOUND:
                return None
            raise
        for reservation in response.get("Reservations", []):
            for data in reservation.get("Instances", []):
                return _instance(data)
        return None

    def _describe_instances(self, filters: list[FilterTypeDef]) -> Iterator[Instance]:
        paginator = self._client.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}):
            for reservation in page.get("Reservations", []):
                for data in reservation.get("Instances", []):
                    yield _instance(data)

    # --- AMIs ---------------------------------------------------------------------------------------------
    def managed_images(self, stack_name: str) -> Iterator[Image]:
        """Every AMI of this account that this stack made, in any state."""
        yield from self._describe_images([{"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]}])

    def backups_of(self, stack_name: str, instance_id: str) -> Iterator[Image]:
        """Every AMI this stack made of one instance, in any state (filtered on the server)."""
        yield from self._describe_images(
            [
                {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]},
                {"Name": f"tag:{INSTANCE_ID}", "Values": [instance_id]},
            ]
        )

    def backups_for_slots(self, stack_name: str, slots: Collection[str]) -> Iterator[Image]:
        """This stack's AMIs of these slots (``amikeeper:slot`` values), and all its stop and manual ones.

        What the planner needs to tell whether each instance has a backup of its current slot, without
        reading every AMI retention keeps: a stop or manual backup taken after the slot covers it too.
        """
        managed: FilterTypeDef = {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]}
        for chunk in _chunks(sorted(slots), FILTER_VALUES):
            yield from self._describe_images([managed, {"Name": f"tag:{SLOT}", "Values": chunk}])
        yield from self._describe_images([managed, {"Name": f"tag:{TRIGGER}", "Values": ["stop", "manual"]}])

    def image(self, image_id: str) -> Image | None:
        """One AMI of this account, whoever made it; None once it is deregistered."""
        try:
            response = self._client.describe_images(ImageIds=[image_id], Owners=["self"])
        except ClientError as error:
            if error_code(error) in IMAGE_NOT_FOUND:
                return None
            raise
        images = response.get("Images", [])
        return _image(images[0]) if images else None

    def existing_image_ids(self, image_ids: Collection[str]) -> frozenset[str]:
        """Which of these AMIs this account still has, whatever their tags say.

        A filter, not ImageIds, so that ids of deregistered AMIs are simply absent instead of failing
        the whole call.
        """
        found: set[str] = set()
        for chunk in _chunks(sorted(image_ids), IMAGE_ID_FILTER_CHUNK):
            found.update(
                image.image_id for image in self._describe_images([{"Name": "image-id", "Values": chunk}])
            )
        return frozenset(found)

    def managed_images_among(self, stack_name: str, image_ids: Collection[str]) -> list[Image]:
        """Which of these AMIs still exist as this stack's, with their tags as they are now (filters, not
        ImageIds, so that a deregistered id is absent rather than failing the call)."""
        managed: FilterTypeDef = {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]}
        found: list[Image] = []
        for chunk in _chunks(sorted(image_ids), IMAGE_ID_FILTER_CHUNK):
            found.extend(self._describe_images([managed, {"Name": "image-id", "Values": chunk}]))
        return found

    def _describe_images(self, filters: list[FilterTypeDef]) -> Iterator[Image]:
        paginator = self._client.get_paginator("describe_images")
        for page in paginator.paginate(
            Owners=["self"], Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}
        ):
            for data in page.get("Images", []):
                yield _image(data)

    def create_image(self, item: WorkItem) -> CreateResult:
        """CreateImage with the tags on the AMI and on every snapshot, in the same call.

        A duplicate name means an earlier delivery of the same work item already made this backup.
        """
        tags: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in item.tags.items()]
        try:
            response = self._client.create_image(
                InstanceId=item.instance_id,
                Name=item.image_name,
                Description=item.description,
                NoReboot=item.no_reboot,
                TagSpecifications=[
                    {"ResourceType": "image", "Tags": tags},
                    {"ResourceType": "snapshot", "Tags": tags},
                ],
            )
        except ClientError as error:
            if error_code(error) == DUPLICATE_NAME:
                return CreateResult(image_id=None, duplicate=True)
            raise
        return CreateResult(image_id=response["ImageId"], duplicate=False)

    # --- copies (SPEC §9); this gateway is the destination's, except for sharing the source ------------------
    def copy_image(self, request: CopyRequest) -> CopyStart:
        """CopyImage into this gateway's region (and account), tags on the copy and its snapshots in the same
        call. The client token makes a retry within EC2's memory of it return the first copy; past that,
        the copy's fixed name makes EC2 refuse a second one (``duplicate``)."""
        tags: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in request.tags.items()]
        arguments: dict[str, object] = {
            "SourceRegion": request.source_region,
            "SourceImageId": request.source_image_id,
            "Name": request.name,
            "Description": request.description,
            "Encrypted": request.encrypted,
            "ClientToken": request.client_token,
            "TagSpecifications": [
                {"ResourceType": "image", "Tags": tags},
                {"ResourceType": "snapshot", "Tags": tags},
            ],
        }
        if request.kms_key_id:
            arguments["KmsKeyId"] = request.kms_key_id
        try:
            response = self._client.copy_image(**arguments)  # type: ignore[arg-type]
        except ClientError as error:
            if error_code(error) in (DUPLICATE_NAME, IDEMPOTENT_MISMATCH):
                return CopyStart(image_id=None, duplicate=True)
            raise
        return CopyStart(image_id=response["ImageId"], duplicate=False)

    def copy_of(self, stack_name: str, source_image_id: str) -> Image | None:
        """This stack's copy of one source AMI in this region, if there is one (filtered on the server)."""
        for image in self._describe_images(
            [
                {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]},
                {"Name": f"tag:{COPY_OF}", "Values": [source_image_id]},
            ]
        ):
            return image
        return None

    def copies_of(self, stack_name: str, instance_id: str) -> Iterator[Image]:
        """This stack's copies of one instance's backups in this region, in any state, read from this region
        alone (filtered on the server): the source region may be the one that is down."""
        yield from self._describe_images(
            [
                {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]},
                {"Name": f"tag:{INSTANCE_ID}", "Values": [instance_id]},
                {"Name": "tag-key", "Values": [COPY_OF]},
            ]
        )

    def snapshot_keys(self, snapshot_ids: Collection[str]) -> dict[str, str | None]:
        """The KMS key of each of these snapshots (None: unencrypted)."""
        if not snapshot_ids:
            return {}
        response = self._client.describe_snapshots(SnapshotIds=sorted(snapshot_ids), OwnerIds=["self"])
        return {
            snapshot["SnapshotId"]: snapshot.get("KmsKeyId") if snapshot.get("Encrypted") else None
            for snapshot in response.get("Snapshots", [])
        }

    def share(self, image: Image, account: str, *, add: bool) -> None:
        """Let ``account`` launch the AMI and create volumes from its snapshots (``add``), or no longer."""
        change = "Add" if add else "Remove"
        permission = [{"UserId": account}]
        self._client.modify_image_attribute(
            ImageId=image.image_id,
            LaunchPermission={change: permission},  # type: ignore[misc]
        )
        for snapshot_id in image.snapshot_ids:
            self._client.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                OperationType="add" if add else "remove",
                UserIds=[account],
            )

    def tag_image(self, image_id: str, key: str, value: str) -> None:
        self.tag_image_with(image_id, {key: value})

    def tag_image_with(self, image_id: str, tags: Mapping[str, str]) -> None:
        """One CreateTags of several keys on one AMI."""
        self._client.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag_image(self, image_id: str, keys: Collection[str]) -> None:
        """DeleteTags of these keys on one AMI (the operator CLI releasing a hold)."""
        self._client.delete_tags(Resources=[image_id], Tags=[{"Key": key} for key in sorted(keys)])

    # --- snapshots ----------------------------------------------------------------------------------------
    def managed_snapshots(self, stack_name: str) -> Iterator[Snapshot]:
        """Every snapshot of this account carrying this stack's managed-by tag."""
        paginator = self._client.get_paginator("describe_snapshots")
        filters: list[FilterTypeDef] = [{"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]}]
        for page in paginator.paginate(
            OwnerIds=["self"], Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}
        ):
            for data in page.get("Snapshots", []):
                yield Snapshot(
                    snapshot_id=data["SnapshotId"],
                    description=data.get("Description", ""),
                    started=data["StartTime"],
                    state=data.get("State", ""),
                    tags=tag_map(data.get("Tags")),
                )

    # --- what uses an AMI ---------------------------------------------------------------------------------
    def image_references(self, image_ids: Collection[str]) -> list[ImageReference]:
        """Instances (not terminated) and launch templates (any version) that reference these AMIs.

        Raises ImageReferencesUnavailable when the SDK, account or region lacks the operation, or the
        role lacks its permission; the answer is remembered for the rest of this gateway's life.
        """
        if self._references_available is False or not hasattr(self._client, "describe_image_references"):
            self._references_available = False
            raise ImageReferencesUnavailable("DescribeImageReferences is not available")
        references: list[ImageReference] = []
        paginator = self._client.get_paginator("describe_image_references")
        try:
            for chunk in _chunks(sorted(image_ids), REFERENCE_CHUNK):
                for page in paginator.paginate(
                    ImageIds=chunk,
                    ResourceTypes=[
                        {
                            "ResourceType": "ec2:Instance",
                            "ResourceTypeOptions": [
                                {"OptionName": "state-name", "OptionValues": INSTANCE_STATES_THAT_USE}
                            ],
                        },
                        {
                            "ResourceType": "ec2:LaunchTemplate",
                            "ResourceTypeOptions": [
                                {"OptionName": "version-depth", "OptionValues": [REFERENCE_VERSION_DEPTH]}
                            ],
                        },
                    ],
                ):
                    references.extend(
                        ImageReference(item["ImageId"], item["ResourceType"], item["Arn"])
                        for item in page.get("ImageReferences", [])
                    )
        except ClientError as error:
            if error_code(error) in REFERENCES_UNAVAILABLE:
                self._references_available = False
                raise ImageReferencesUnavailable(f"DescribeImageReferences: {error}") from error
            raise
        self._references_available = True
        return references

    def launch_template_images(self, template_ids: Collection[str] | None = None) -> dict[str, set[str]]:
        """Image id -> the $Default and $Latest launch template versions that launch it.

        Without template ids: every template of the region, in one paginated call when EC2 accepts it,
        else template by template.
        """
        if template_ids is not None:
            return self._versions_of(template_ids)
        try:
            return _images_of_versions(
                self._paginate_versions({"Versions": ["$Default", "$Latest"], "ResolveAlias": True})
            )
        except ClientError as error:
            if error_code(error) not in ALL_TEMPLATES_UNSUPPORTED:
                raise
        return self._versions_of(self._all_template_ids())

    def _versions_of(self, template_ids: Collection[str]) -> dict[str, set[str]]:
        versions: list[LaunchTemplateVersionTypeDef] = []
        for template_id in sorted(template_ids):
            try:
                versions.extend(
                    self._paginate_versions(
                        {
                            "LaunchTemplateId": template_id,
                            "Versions": ["$Default", "$Latest"],
                            "ResolveAlias": True,
                        }
                    )
                )
            except ClientError as error:
                if error_code(error) not in TEMPLATE_NOT_FOUND:
                    raise
        return _images_of_versions(versions)

    def _paginate_versions(
        self, request: DescribeLaunchTemplateVersionsRequestPaginateTypeDef
    ) -> list[LaunchTemplateVersionTypeDef]:
        paginator = self._client.get_paginator("describe_launch_template_versions")
        versions: list[LaunchTemplateVersionTypeDef] = []
        for page in paginator.paginate(**(request | {"PaginationConfig": {"PageSize": TEMPLATE_PAGE_SIZE}})):
            versions.extend(page.get("LaunchTemplateVersions", []))
        return versions

    def _all_template_ids(self) -> list[str]:
        paginator = self._client.get_paginator("describe_launch_templates")
        return [
            template["LaunchTemplateId"]
            for page in paginator.paginate(PaginationConfig={"PageSize": TEMPLATE_PAGE_SIZE})
            for template in page.get("LaunchTemplates", [])
        ]

    # --- restores (the operator CLI) -------------------------------------------------------------------------
    def run_from_backup(
        self, image_id: str, launch: LaunchConfig, tags: Mapping[str, str], *, dry_run: bool = False
    ) -> str | None:
        """RunInstances of one instance from a backup with a recorded launch configuration; its id.

        The AMI's own block device mappings bring every volume back, so none are given here. The subnet
        fixes the availability zone. With ``dry_run`` EC2 only checks the request: None when it would
        have succeeded, its ClientError otherwise.
        """
        request: RunInstancesRequestTypeDef = {
            "ImageId": image_id,
            "MinCount": 1,
            "MaxCount": 1,
            # A recorded value EC2 itself reported; EC2 rejects it if the type has since been retired.
            "InstanceType": cast("InstanceTypeType", launch.instance_type),
            "EbsOptimized": launch.ebs_optimized,
            "DryRun": dry_run,
        }
        if launch.subnet_id:
            request["SubnetId"] = launch.subnet_id
        if launch.security_group_ids:
            request["SecurityGroupIds"] = list(launch.security_group_ids)
        if launch.instance_profile_arn:
            request["IamInstanceProfile"] = {"Arn": launch.instance_profile_arn}
        if launch.key_name:
            request["KeyName"] = launch.key_name
        if tags:
            listed: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in tags.items()]
            request["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": listed},
                {"ResourceType": "volume", "Tags": listed},
            ]
        try:
            response = self._client.run_instances(**request)
        except ClientError as error:
            if dry_run and error_code(error) == DRY_RUN_PASSED:
                return None
            raise
        return response["Instances"][0]["InstanceId"]

    # Filters rather than ids, so that an id that does not exist here (another region's, say) is absent
    # instead of failing the call.
    def subnets(self, subnet_ids: Collection[str]) -> list[Subnet]:
        paginator = self._client.get_paginator("describe_subnets")
        return [
            Subnet(data["SubnetId"], data["VpcId"], data.get("AvailabilityZone", ""))
            for page in paginator.paginate(Filters=[{"Name": "subnet-id", "Values": sorted(subnet_ids)}])
            for data in page.get("Subnets", [])
        ]

    def subnet(self, subnet_id: str) -> Subnet | None:
        return next(iter(self.subnets([subnet_id])), None)

    def security_groups(self, group_ids: Collection[str]) -> list[GroupFacts]:
        """Those of these security groups that exist here: VPC, and how many inbound rules they have."""
        paginator = self._client.get_paginator("describe_security_groups")
        return [
            GroupFacts(group["GroupId"], group.get("VpcId", ""), len(group.get("IpPermissions", [])))
            for page in paginator.paginate(Filters=[{"Name": "group-id", "Values": sorted(group_ids)}])
            for group in page.get("SecurityGroups", [])
        ]

    def key_pair_exists(self, key_name: str) -> bool:
        response = self._client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key_name]}])
        return bool(response.get("KeyPairs"))

    def replace_root(self, instance_id: str, image_id: str, *, dry_run: bool = False) -> str | None:
        """CreateReplaceRootVolumeTask from a backup, keeping the replaced root volume (detached) so a
        restore in place can itself be undone; the task id, or None for a dry run that would succeed."""
        try:
            response = self._client.create_replace_root_volume_task(
                InstanceId=instance_id, ImageId=image_id, DeleteReplacedRootVolume=False, DryRun=dry_run
            )
        except ClientError as error:
            if dry_run and error_code(error) == DRY_RUN_PASSED:
                return None
            raise
        return response["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"]

    def replace_root_task(self, task_id: str) -> RootTask:
        """One replace-root-volume task; `pending` while EC2 does not list the new task yet."""
        response = self._client.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])
        for task in response.get("ReplaceRootVolumeTasks", []):
            return RootTask(task_id, task.get("InstanceId", ""), task.get("TaskState", "pending"))
        return RootTask(task_id, "", "pending")

    def instance_status(self, instance_id: str) -> InstanceHealth | None:
        """DescribeInstanceStatus of one instance in any state; None while EC2 does not list it yet (a
        new instance takes a moment to appear)."""
        try:
            response = self._client.describe_instance_status(
                InstanceIds=[instance_id], IncludeAllInstances=True
            )
        except ClientError as error:
            if error_code(error) == INSTANCE_NOT_FOUND:
                return None
            raise
        for status in response.get("InstanceStatuses", []):
            instance, system = status.get("InstanceStatus", {}), status.get("SystemStatus", {})
            return InstanceHealth(
                state=status.get("InstanceState", {}).get("Name", "pending"),
                instance_check=instance.get("Status", "initializing"),
                system_check=system.get("Status", "initializing"),
                instance_detail=_failing_detail(instance),
                system_detail=_failing_detail(system),
            )
        return None

    # --- restore drills ---------------------------------------------------------------------------------
    def drill_instances(self, stack_name: str) -> list[Instance]:
        """This stack's drill instances that are not terminated yet (filtered on the server)."""
        return list(
            self._describe_instances(
                [
                    {"Name": f"tag:{DRILL}", "Values": [stack_name]},
                    {"Name": "instance-state-name", "Values": INSTANCE_STATES_THAT_USE},
                ]
            )
        )

    def launch_drill(self, launch: DrillLaunch) -> str:
        """RunInstances of a drill: no key pair, no instance profile, IMDSv2 only, every volume deleted with
        the instance (a backup may record DeleteOnTermination=false for data volumes, and a drill must not
        leave volumes behind), terminated rather than stopped if it shuts itself down."""
        listed: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in launch.tags.items()]
        response = self._client.run_instances(
            ImageId=launch.image_id,
            MinCount=1,
            MaxCount=1,
            # The operator's override or a small type EC2 itself names; EC2 rejects one it does not know.
            InstanceType=cast("InstanceTypeType", launch.instance_type),
            SubnetId=launch.subnet_id,
            SecurityGroupIds=[launch.security_group_id],
            ClientToken=launch.client_token,
            InstanceInitiatedShutdownBehavior="terminate",
            MetadataOptions={"HttpTokens": "required"},
            BlockDeviceMappings=[
                {"DeviceName": device, "Ebs": {"DeleteOnTermination": True}} for device in launch.devices
            ],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": listed},
                {"ResourceType": "volume", "Tags": listed},
            ],
        )
        return response["Instances"][0]["InstanceId"]

    def terminate(self, instance_ids: Collection[str]) -> None:
        """TerminateInstances; an instance EC2 no longer knows is as terminated as it gets."""
        if not instance_ids:
            return
        try:
            self._client.terminate_instances(InstanceIds=list(instance_ids))
        except ClientError as error:
            if error_code(error) != INSTANCE_NOT_FOUND:
                raise

    # --- deletion ---------------------------------------------------------------------------------------
    def deregister(
        self, image_id: str, snapshot_ids: Sequence[str], managed_snapshot_ids: Collection[str]
    ) -> Deregistration:
        """Deregister one AMI and delete the snapshots it owned (only those tagged as this stack's).

        With DeleteAssociatedSnapshots, EC2 reports each snapshot; one it kept because another AMI uses
        it is `shared`, one it failed to delete is retried once with DeleteSnapshot. Without the
        parameter (older SDK), the AMI is deregistered first, then its snapshots are deleted one by one.
        Raises the ClientError of DeregisterImage itself; snapshot failures are returned, not raised.
        """
        owned = [snapshot_id for snapshot_id in snapshot_ids if snapshot_id in managed_snapshot_ids]
        self._pacer.acquire()
        if not self.deletes_associated_snapshots:
            self._client.deregister_image(ImageId=image_id)
            return Deregistration(image_id, tuple(self._delete_quietly(s) for s in owned), "DeleteSnapshot")
        response = self._client.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
        results = {
            result["SnapshotId"]: result.get("ReturnCode", "")
            for result in response.get("DeleteSnapshotResults", [])
            if "SnapshotId" in result
        }
        outcomes: list[SnapshotDeletion] = []
        for snapshot_id in dict.fromkeys([*results, *owned]):
            code = results.get(snapshot_id)
            if code == "success":
                outcomes.append(SnapshotDeletion(snapshot_id, "deleted"))
            elif code == "skipped":
                outcomes.append(SnapshotDeletion(snapshot_id, "shared", "still used by another AMI"))
            elif snapshot_id in managed_snapshot_ids:
                # Not reported, or reported failed: delete it ourselves so that nothing is left behind.
                outcomes.append(self._delete_quietly(snapshot_id, first_failure=code))
            else:
                outcomes.append(
                    SnapshotDeletion(snapshot_id, "failed", f"EC2 answered {code}; not this stack's to retry")
                )
        return Deregistration(image_id, tuple(outcomes), "DeleteAssociatedSnapshots")

    def delete_snapshot(self, snapshot_id: str) -> SnapshotDeletion:
        """DeleteSnapshot; a snapshot another AMI uses is kept (`shared`), a missing one is `gone`."""
        self._pacer.acquire()
        try:
            self._client.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            code = error_code(error)
            if code == SNAPSHOT_IN_USE:
                return SnapshotDeletion(snapshot_id, "shared", str(error))
            if code == SNAPSHOT_NOT_FOUND:
                return SnapshotDeletion(snapshot_id, "gone")
            raise
        return SnapshotDeletion(snapshot_id, "deleted")

    def _delete_quietly(self, snapshot_id: str, first_failure: str | None = None) -> SnapshotDeletion:
        try:
            return self.delete_snapshot(snapshot_id)
        except (ClientError, BotoCoreError) as error:
            before = f"DeleteAssociatedSnapshots answered {first_failure}; " if first_failure else ""
            return SnapshotDeletion(snapshot_id, "failed", f"{before}DeleteSnapshot: {error}")


def _failing_detail(summary: InstanceStatusSummaryTypeDef) -> str:
    return ", ".join(
        f"{detail.get('Name', '?')} {detail.get('Status', '?')}"
        for detail in summary.get("Details", [])
        if detail.get("Status") != "passed"
    )


def _images_of_versions(versions: Iterable[LaunchTemplateVersionTypeDef]) -> dict[str, set[str]]:
    users: defaultdict[str, set[str]] = defaultdict(set)
    for version in versions:
        image_id = version.get("LaunchTemplateData", {}).get("ImageId")
        if not image_id or not image_id.startswith("ami-"):
            continue  # an unresolved SSM alias cannot name one of our AMIs
        which = "$Default" if version.get("DefaultVersion") else "$Latest"
        name = version.get("LaunchTemplateName", "")
        template = f"{name} ({version.get('LaunchTemplateId')})" if name else version.get("LaunchTemplateId")
        users[image_id].add(f"launch template {template} {which} v{version.get('VersionNumber')}")
    return dict(users)
