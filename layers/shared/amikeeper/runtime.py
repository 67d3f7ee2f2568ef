"""Wiring, and the only place that makes boto3 clients: turns validated Settings into the gateways and
policy catalog that orchestration functions receive as arguments.

Handlers build one Runtime at cold start and hand its parts to the domain functions; tests build theirs
around moto the same way, with a fake clock for the delete pacing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from amikeeper import clients
from amikeeper.clients import Credentials
from amikeeper.config import Settings
from amikeeper.copy_destinations import split_key
from amikeeper.drills import DrillDeps, DrillLimits
from amikeeper.gateways.autoscaling import AutoScalingGateway
from amikeeper.gateways.backup_records import BackupNotes
from amikeeper.gateways.drill_budget import DrillBudget
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.kms import KeyInspector
from amikeeper.gateways.sns import Notifier
from amikeeper.gateways.sqs import DeadLetterQueue, DelayQueue, FifoQueue, WorkQueue
from amikeeper.gateways.ssm import PolicyDocumentSource, PolicyDocumentUnavailable
from amikeeper.gateways.vault import VaultRole, VaultSessions
from amikeeper.model import CopyTask, DrillTask, Stack
from amikeeper.pacing import TokenBucket
from amikeeper.policies import PolicyCatalog, build_catalog

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

    from amikeeper.idempotency import Idempotency


@dataclass
class Runtime:
    settings: Settings
    # What the delete pacing waits on; tests and the benchmark pass a virtual clock.
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _ec2: dict[str, Ec2Gateway] = field(default_factory=dict, init=False, repr=False)
    _vault_ec2: dict[str, tuple[Credentials, Ec2Gateway]] = field(
        default_factory=dict, init=False, repr=False
    )
    _pacers: dict[str, TokenBucket] = field(default_factory=dict, init=False, repr=False)

    @property
    def stack(self) -> Stack:
        return self.settings.stack

    def ec2(self, region: str) -> Ec2Gateway:
        """One gateway per region for the life of the container: EC2's request buckets are per region,
        so its delete pacing is too."""
        if region not in self._ec2:
            pacer = TokenBucket(clock=self.clock, sleep=self.sleep)
            self._ec2[region] = Ec2Gateway(clients.ec2(region), pacer)
        return self._ec2[region]

    def location(self, key: str) -> Ec2Gateway:
        """The EC2 of a location: a region of this account (``eu-west-1``), or a region of the vault account
        (``222233334444/eu-west-1``) through the vault role. Raises VaultUnavailable for a vault location
        without a usable vault role."""
        region, account = split_key(key)
        if account is None:
            return self.ec2(region)
        credentials = self._vault.credentials(account, datetime.now(UTC))
        known = self._vault_ec2.get(key)
        if known is None or known[0] is not credentials:
            pacer = self._pacers.setdefault(key, TokenBucket(clock=self.clock, sleep=self.sleep))
            known = (credentials, Ec2Gateway(clients.ec2_as(region, credentials), pacer))
            self._vault_ec2[key] = known
        return known[1]

    def autoscaling_at(self, key: str) -> AutoScalingGateway:
        region, account = split_key(key)
        if account is None:
            return self.autoscaling(region)
        credentials = self._vault.credentials(account, datetime.now(UTC))
        return AutoScalingGateway(clients.autoscaling_as(region, credentials))

    @cached_property
    def _vault(self) -> VaultSessions:
        settings = self.settings
        role = (
            VaultRole(settings.vault_role_arn, settings.vault_external_id or "")
            if settings.vault_role_arn
            else None
        )
        home = settings.home_region
        return VaultSessions(role, lambda: clients.sts(home), f"amikeeper-{settings.stack_name}")

    def kms(self, region: str) -> KeyInspector:
        return KeyInspector(clients.kms(region))

    def kms_at(self, key: str) -> KeyInspector:
        """The KMS of a location (see :meth:`location`)."""
        region, account = split_key(key)
        if account is None:
            return self.kms(region)
        return KeyInspector(clients.kms_as(region, self._vault.credentials(account, datetime.now(UTC))))

    @cached_property
    def copies(self) -> DelayQueue[CopyTask]:
        return DelayQueue(clients.sqs(self.settings.home_region), self.settings.copy_queue_url)

    @cached_property
    def drills(self) -> DelayQueue[DrillTask]:
        return DelayQueue(clients.sqs(self.settings.home_region), self.settings.drill_queue_url)

    @cached_property
    def drill_budget(self) -> DrillBudget:
        region = self.settings.home_region
        return DrillBudget(self.settings.idempotency_table, lambda: clients.dynamodb(region))

    def drill_deps(self) -> DrillDeps:
        settings = self.settings
        return DrillDeps(
            ec2=self.ec2,
            regions=settings.regions,
            queue=self.drills,
            budget=self.drill_budget,
            notifier=self.notifier,
            ledger=self.ledger,
            catalog=self.catalog,
            stack=self.stack,
            limits=DrillLimits(
                subnet_ids=settings.drill_subnet_ids,
                security_group_ids=settings.drill_security_group_ids,
                instance_type=settings.drill_instance_type,
                max_concurrent=settings.max_concurrent_drills,
                minutes_per_day=settings.drill_minutes_per_day,
                max_minutes=settings.drill_max_minutes,
            ),
        )

    def autoscaling(self, region: str) -> AutoScalingGateway:
        return AutoScalingGateway(clients.autoscaling(region))

    @cached_property
    def queue(self) -> WorkQueue:
        return WorkQueue(clients.sqs(self.settings.home_region), self.settings.work_queue_url)

    @cached_property
    def planner_tasks(self) -> FifoQueue:
        return FifoQueue(clients.sqs(self.settings.home_region), self.settings.planner_task_queue_url)

    @cached_property
    def deletions(self) -> FifoQueue:
        return FifoQueue(clients.sqs(self.settings.home_region), self.settings.delete_queue_url)

    @cached_property
    def dead_letters(self) -> DeadLetterQueue:
        return DeadLetterQueue(clients.sqs(self.settings.home_region), self.settings.dead_letter_queue_url)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(clients.sns(self.settings.home_region), self.settings.topic_arn)

    @cached_property
    def ledger(self) -> Idempotency:
        """Which notices went out already: the idempotency records, the one de-duplication mechanism."""
        return self.idempotency(logging.getLogger("amikeeper.notices"))

    @cached_property
    def backup_notes(self) -> BackupNotes:
        region = self.settings.home_region
        return BackupNotes(self.settings.idempotency_table, lambda: clients.dynamodb(region))

    @cached_property
    def _policy_source(self) -> PolicyDocumentSource:
        return PolicyDocumentSource(self.settings.policies_parameter, clients.ssm(self.settings.home_region))

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
            settings.default_schedule,
            settings.default_retention,
            settings.time_zone,
            document,
            settings.verify_schedule,
        )

    def idempotency(self, logger: Logger | logging.Logger) -> Idempotency:
        # Imported here: only the event handlers use it, and it is the heaviest import of the layer.
        from amikeeper.idempotency import Idempotency

        region = self.settings.home_region
        return Idempotency(self.settings.idempotency_table, lambda: clients.dynamodb(region), logger)
