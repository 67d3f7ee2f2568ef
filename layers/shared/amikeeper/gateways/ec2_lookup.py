"""The EC2 reads of the event handlers and the daily report that Ec2Gateway does not offer.

- the launch time of each opted-in instance (the report does not call an instance that was launched
  after its last possible slot a violation);
- the backups of one instance, filtered on the server (a termination event must not page through the
  whole region's AMIs);
- one AMI by id whoever made it (an AMI event must tell "not ours" from "already deregistered").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from amikeeper import clients
from amikeeper.gateways.ec2 import (
    IMAGE_NOT_FOUND,
    INSTANCE_NOT_FOUND,
    LIVE_INSTANCE_STATES,
    PAGE_SIZE,
    Image,
    Instance,
    tag_map,
)
from amikeeper.work import INSTANCE_ID, MANAGED_BY

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef


@dataclass(frozen=True)
class LaunchedInstance(Instance):
    launch_time: datetime | None = None

    @classmethod
    def from_api(cls, data: InstanceTypeDef) -> LaunchedInstance:
        return cls(
            instance_id=data["InstanceId"],
            state=data["State"]["Name"],
            tags=tag_map(data.get("Tags")),
            launch_time=data.get("LaunchTime"),
        )


class Ec2Lookup:
    def __init__(self, client: EC2Client) -> None:
        self._client = client

    def instance(self, instance_id: str) -> LaunchedInstance | None:
        """One instance in any state (EC2 lists terminated ones for about an hour), or None."""
        try:
            response = self._client.describe_instances(InstanceIds=[instance_id])
        except ClientError as error:
            if error.response["Error"]["Code"] == INSTANCE_NOT_FOUND:
                return None
            raise
        for reservation in response.get("Reservations", []):
            for data in reservation.get("Instances", []):
                return LaunchedInstance.from_api(data)
        return None

    def opted_in_instances(self, opt_in_tag_key: str) -> Iterator[LaunchedInstance]:
        """Every live instance carrying the opt-in tag key, with its launch time."""
        filters: list[FilterTypeDef] = [
            {"Name": "tag-key", "Values": [opt_in_tag_key]},
            {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES},
        ]
        paginator = self._client.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}):
            for reservation in page.get("Reservations", []):
                for data in reservation.get("Instances", []):
                    yield LaunchedInstance.from_api(data)

    def backups_of(self, stack_name: str, instance_id: str) -> Iterator[Image]:
        """Every AMI this stack made of one instance, in any state."""
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{MANAGED_BY}", "Values": [stack_name]},
            {"Name": f"tag:{INSTANCE_ID}", "Values": [instance_id]},
        ]
        paginator = self._client.get_paginator("describe_images")
        for page in paginator.paginate(
            Owners=["self"], Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}
        ):
            for data in page.get("Images", []):
                yield Image.from_api(data)

    def image(self, image_id: str) -> Image | None:
        """One AMI of this account, whoever made it; None once it is deregistered."""
        try:
            response = self._client.describe_images(ImageIds=[image_id], Owners=["self"])
        except ClientError as error:
            if error.response["Error"]["Code"] in IMAGE_NOT_FOUND:
                return None
            raise
        images = response.get("Images", [])
        return Image.from_api(images[0]) if images else None


def ec2_lookup(region: str) -> Ec2Lookup:
    return Ec2Lookup(clients.ec2(region))
