"""One deployed stack as the commands see it: its settings, and the functions' own gateways built on the
operator's session instead of the Lambda role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from amikeeper.config import Settings
from amikeeper.gateways.autoscaling import AutoScalingGateway
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sqs import WorkQueue
from amikeeper.gateways.ssm import PolicyDocumentSource, PolicyDocumentUnavailable
from amikeeper.policies import PolicyCatalog, build_catalog
from amikeeper.retention import RegionGateways
from amikeeper.retention_plan import RetentionConfig
from amikeeper_cli.aws import Aws
from amikeeper_cli.discovery import stack_settings


@dataclass
class Deployment:
    aws: Aws
    settings: Settings
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    _ec2: dict[str, Ec2Gateway] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def connect(cls, profile: str | None, region: str | None, stack_name: str) -> Deployment:
        aws = Aws(profile, region)
        return cls(aws, stack_settings(aws, stack_name))

    @property
    def regions(self) -> tuple[str, ...]:
        return self.settings.regions

    def ec2(self, region: str) -> Ec2Gateway:
        if region not in self._ec2:
            self._ec2[region] = Ec2Gateway(self.aws.ec2(region))
        return self._ec2[region]

    def region_gateways(self, region: str) -> RegionGateways:
        return RegionGateways(self.ec2(region), AutoScalingGateway(self.aws.autoscaling(region)))

    @cached_property
    def queue(self) -> WorkQueue:
        return WorkQueue(self.aws.sqs, self.settings.work_queue_url)

    @cached_property
    def retention_config(self) -> RetentionConfig:
        return RetentionConfig.from_settings(self.settings)

    @cached_property
    def catalog(self) -> PolicyCatalog:
        """The policies in force, as amikeeper.runtime.Runtime.catalog builds them: an unreadable document
        disables named policies (and is shown), it does not stop the command."""
        settings = self.settings
        try:
            document: str | None = PolicyDocumentSource(settings.policies_parameter, self.aws.ssm).read()
            error = None
        except PolicyDocumentUnavailable as unavailable:
            document, error = None, str(unavailable)
        catalog = build_catalog(
            settings.default_schedule,
            settings.default_retention,
            settings.time_zone,
            document,
            settings.verify_schedule,
        )
        if error is None:
            return catalog
        return PolicyCatalog(catalog.default, catalog.time_zone, document_error=error)
