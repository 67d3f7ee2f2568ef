"""Which configured region holds an instance or an AMI the operator named; bad names end as BadInput.

Lookups go region by region with one targeted Describe call each: the operator names one resource and
the stack may cover many regions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from amikeeper.model import MANAGED_BY, Image, Instance
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput

T = TypeVar("T")

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


@dataclass(frozen=True)
class Located(Generic[T]):
    region: str
    item: T


def instance(deployment: Deployment, instance_id: str) -> Located[Instance] | None:
    """The instance in the first configured region that lists it (any state), or None."""
    require_instance_id(instance_id)
    for region in deployment.regions:
        found = deployment.ec2(region).instance(instance_id)
        if found is not None:
            return Located(region, found)
    return None


def backup_regions(deployment: Deployment, instance_id: str) -> list[str]:
    """The configured regions where this stack has backups of that instance (it may be gone from EC2)."""
    require_instance_id(instance_id)
    stack = deployment.settings.stack_name
    return [
        region
        for region in deployment.regions
        if next(iter(deployment.ec2(region).backups_of(stack, instance_id)), None) is not None
    ]


def managed_image(deployment: Deployment, image_id: str) -> Located[Image]:
    """An AMI of this account in a configured region that this stack made; BadInput for anything else."""
    if not IMAGE_ID.match(image_id):
        raise BadInput(f"{image_id!r} is not an AMI id (ami-…)")
    stack = deployment.settings.stack_name
    for region in deployment.regions:
        image = deployment.ec2(region).image(image_id)
        if image is None:
            continue
        owner = image.tags.get(MANAGED_BY)
        if owner is None:
            raise BadInput(
                f"{image_id} ({region}) was not made by amikeeper: only backups of stack {stack!r} qualify"
            )
        if owner != stack:
            raise BadInput(
                f"{image_id} ({region}) belongs to amikeeper stack {owner!r}, not {stack!r} (see --stack)"
            )
        return Located(region, image)
    raise BadInput(f"no AMI {image_id} in this account in {', '.join(deployment.regions)}")


def require_instance_id(instance_id: str) -> None:
    if not INSTANCE_ID.match(instance_id):
        raise BadInput(f"{instance_id!r} is not an instance id (i-…)")
