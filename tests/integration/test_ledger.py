"""The notice ledger: first time within the memory window only; an expired entry or an outage says yes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from amikeeper.gateways.ledger import NoticeLedger
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import create_stack

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_a_key_is_new_once_per_window_and_again_after_it(aws: Ec2Fidelity) -> None:
    stack = create_stack()
    ledger = NoticeLedger(boto3.client("dynamodb", region_name=stack.region), stack.idempotency_table)
    assert ledger.first_time("policy.invalid#i-1", NOW, DAY) is True
    assert ledger.first_time("policy.invalid#i-1", NOW + timedelta(hours=23), DAY) is False
    assert ledger.first_time("policy.invalid#i-2", NOW, DAY) is True
    # DynamoDB deletes expired items lazily: one still present but past its expiry counts as absent
    assert ledger.first_time("policy.invalid#i-1", NOW + DAY + timedelta(seconds=1), DAY) is True


def test_an_unreachable_ledger_never_suppresses_a_notice(aws: Ec2Fidelity) -> None:
    # Given a table that does not exist (e.g. access denied or deleted)
    ledger = NoticeLedger(boto3.client("dynamodb", region_name="eu-west-1"), "no-such-table")
    # Then the notice goes out rather than being lost
    assert ledger.first_time("report.daily#x", NOW, DAY) is True
