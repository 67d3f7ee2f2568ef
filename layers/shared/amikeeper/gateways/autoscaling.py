"""Reads the launch configurations of a region: an AMI one of them names is in use (SPEC §4)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

# DescribeLaunchConfigurations serves at most 100 records a page.
PAGE_SIZE = 100


class AutoScalingGateway:
    def __init__(self, client: AutoScalingClient) -> None:
        self._client = client

    def launch_configuration_images(self) -> dict[str, tuple[str, ...]]:
        """Image id -> names of the launch configurations that launch it, over every page."""
        users: defaultdict[str, list[str]] = defaultdict(list)
        paginator = self._client.get_paginator("describe_launch_configurations")
        for page in paginator.paginate(PaginationConfig={"PageSize": PAGE_SIZE}):
            for configuration in page.get("LaunchConfigurations", []):
                image_id = configuration.get("ImageId")
                if image_id:
                    users[image_id].append(configuration["LaunchConfigurationName"])
        return {image_id: tuple(names) for image_id, names in users.items()}
