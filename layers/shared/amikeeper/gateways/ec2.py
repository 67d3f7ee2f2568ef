"""EC2 reads and the one write a backup needs: instances, amikeeper's AMIs, CreateImage.

Reads are region-wide, paginated and filtered on the server, so one run costs a handful of pages per
region however many instances it covers, never one call per instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from amikeeper.naming import parse_slot
from amikeeper.work import INSTANCE_ID, MANAGED_BY, POLICY, SLOT, TRIGGER, WorkItem

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, ImageTypeDef, InstanceTypeDef, TagTypeDef

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
PAGE_SIZE = 1000
DUPLICATE_NAME = "InvalidAMIName.Duplicate"
INSTANCE_NOT_FOUND = "InvalidInstanceID.NotFound"
IMAGE_NOT_FOUND = ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed")


def tag_map(tags: Iterable[TagTypeDef] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or ()}


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")

    @classmethod
    def from_api(cls, data: InstanceTypeDef) -> Instance:
        return cls(data["InstanceId"], data["State"]["Name"], tag_map(data.get("Tags")))


@dataclass(frozen=True)
class Image:
    image_id: str
    name: str
    state: str
    created: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    state_reason: str | None = None

    @property
    def instance_id(self) -> str | None:
        return self.tags.get(INSTANCE_ID)

    @property
    def policy(self) -> str | None:
        return self.tags.get(POLICY)

    @property
    def trigger(self) -> str | None:
        return self.tags.get(TRIGGER)

    @property
    def slot(self) -> datetime | None:
        text = self.tags.get(SLOT)
        if text is None:
            return None
        try:
            return parse_slot(text)
        except ValueError:
            return None

    @property
    def backup_time(self) -> datetime:
        """When the backup counts as taken: its slot, which is exact and replayable, else its creation."""
        return self.slot or self.created

    @classmethod
    def from_api(cls, data: ImageTypeDef) -> Image:
        snapshots = tuple(
            mapping["Ebs"]["SnapshotId"]
            for mapping in data.get("BlockDeviceMappings", [])
            if "Ebs" in mapping and "SnapshotId" in mapping["Ebs"]
        )
        return cls(
            image_id=data["ImageId"],
            name=data.get("Name", ""),
            state=data["State"],
            created=datetime.fromisoformat(data["CreationDate"].replace("Z", "+00:00")),
            tags=tag_map(data.get("Tags")),
            snapshot_ids=snapshots,
            state_reason=data.get("StateReason", {}).get("Message"),
        )


@dataclass(frozen=True)
class CreateResult:
    image_id: str | None
    duplicate: bool


class Ec2Gateway:
    def __init__(self, client: EC2Client) -> None:
        self._client = client

    def opted_in_instances(self, opt_in_tag_key: str) -> Iterator[Instance]:
        """Every live instance carrying the opt-in tag key; the value is judged by the caller."""
        yield from self._describe_instances(
            [
                {"Name": "tag-key", "Values": [opt_in_tag_key]},
                {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
            ]
        )

    def instance(self, instance_id: str) -> Instance | None:
        """One instance in any state, or None when EC2 no longer knows it."""
        try:
            found = list(self._describe_instances([], instance_ids=[instance_id]))
        except ClientError as error:
            if error.response["Error"]["Code"] == INSTANCE_NOT_FOUND:
                return None
            raise
        return found[0] if found else None

    def managed_images(self, stack_name: str, *, image_ids: list[str] | None = None) -> Iterator[Image]:
        """Every AMI of this account that this stack made, in any state."""
        paginator = self._client.get_paginator("describe_images")
        filters: list[FilterTypeDef] = [{"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]}]
        kwargs: dict[str, object] = {"Owners": ["self"], "Filters": filters}
        if image_ids:
            kwargs["ImageIds"] = image_ids
        else:
            kwargs["PaginationConfig"] = {"PageSize": PAGE_SIZE}
        try:
            for page in paginator.paginate(**kwargs):  # type: ignore[arg-type]
                for image in page.get("Images", []):
                    yield Image.from_api(image)
        except ClientError as error:
            if image_ids and error.response["Error"]["Code"] in IMAGE_NOT_FOUND:
                return
            raise

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
            if error.response["Error"]["Code"] == DUPLICATE_NAME:
                return CreateResult(image_id=None, duplicate=True)
            raise
        return CreateResult(image_id=response["ImageId"], duplicate=False)

    def _describe_instances(
        self, filters: list[FilterTypeDef], *, instance_ids: list[str] | None = None
    ) -> Iterator[Instance]:
        paginator = self._client.get_paginator("describe_instances")
        kwargs: dict[str, object] = {"Filters": filters}
        if instance_ids:
            kwargs["InstanceIds"] = instance_ids
        else:
            kwargs["PaginationConfig"] = {"PageSize": PAGE_SIZE}
        for page in paginator.paginate(**kwargs):  # type: ignore[arg-type]
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    yield Instance.from_api(instance)
