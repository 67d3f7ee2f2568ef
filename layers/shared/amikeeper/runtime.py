"""Wiring: turns validated Settings into the gateways and policy catalog the domain functions take.

Handlers build one Runtime at cold start; tests build theirs around moto the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from amikeeper import clients
from amikeeper.config import Settings
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.ledger import NoticeLedger
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import DeadLetterQueue, WorkQueue
from amikeeper.gateways.ssm import PolicyDocumentSource, PolicyDocumentUnavailable
from amikeeper.planner import PlannerDeps, Stack
from amikeeper.policies import PolicyCatalog, build_catalog


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def stack(self) -> Stack:
        return Stack(self.settings.stack_name, self.settings.tag_keys, self.settings.copy_tags)

    def ec2(self, region: str) -> Ec2Gateway:
        return Ec2Gateway(clients.ec2(region))

    @cached_property
    def queue(self) -> WorkQueue:
        return WorkQueue(clients.sqs(self.settings.home_region), self.settings.work_queue_url)

    @cached_property
    def dead_letters(self) -> DeadLetterQueue:
        return DeadLetterQueue(clients.sqs(self.settings.home_region), self.settings.dead_letter_queue_url)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(clients.sns(self.settings.home_region), self.settings.topic_arn)

    @cached_property
    def ledger(self) -> NoticeLedger:
        return NoticeLedger(clients.dynamodb(self.settings.home_region), self.settings.idempotency_table)

    @cached_property
    def _policy_source(self) -> PolicyDocumentSource:
        return PolicyDocumentSource(self.settings.policies_parameter, self.settings.home_region)

    def catalog(self) -> PolicyCatalog:
        """The policies in force now; an unreadable document disables named policies for this run only."""
        try:
            document = self._policy_source.read()
        except PolicyDocumentUnavailable as error:
            return replace(self.catalog_from(None), document_error=str(error))
        return self.catalog_from(document)

    def catalog_from(self, document: str | None) -> PolicyCatalog:
        settings = self.settings
        return build_catalog(
            settings.default_schedule, settings.default_retention, settings.time_zone, document
        )

    def planner_deps(self) -> PlannerDeps:
        return PlannerDeps(ec2=self.ec2, queue=self.queue, notifier=self.notifier, ledger=self.ledger)
