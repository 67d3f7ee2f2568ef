"""Notices remembered in the idempotency records: once per window, again in the next; an outage says yes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import boto3

from amikeeper.idempotency import Idempotency
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import create_stack

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LOGGER = logging.getLogger("test")


def ledger_of(region: str, table: str) -> Idempotency:
    return Idempotency(table, lambda: boto3.client("dynamodb", region_name=region), LOGGER)


def test_a_key_is_new_once_per_window_and_again_in_the_next(aws: Ec2Fidelity) -> None:
    # Given the stack's table
    stack = create_stack()
    ledger = ledger_of(stack.region, stack.idempotency_table)
    # When the same key comes twice in one day, and another key / Then only its first time is new
    assert ledger.first_time("policy.invalid#i-1", NOW, DAY) is True
    assert ledger.first_time("policy.invalid#i-1", NOW + timedelta(hours=16), DAY) is False
    assert ledger.first_time("policy.invalid#i-2", NOW, DAY) is True
    # And a daily window is a UTC calendar day: the next day it is new again
    assert ledger.first_time("policy.invalid#i-1", NOW + timedelta(hours=17), DAY) is True
    assert ledger.first_time("policy.invalid#i-1", NOW + timedelta(hours=18), DAY) is False


def test_the_notices_are_powertools_idempotency_records_of_the_stacks_table(aws: Ec2Fidelity) -> None:
    # Given a notice recorded
    stack = create_stack()
    ledger_of(stack.region, stack.idempotency_table).first_time("report.daily#x", NOW, DAY)
    # Then the table holds one completed idempotency record for it, which DynamoDB's TTL will remove
    items = boto3.client("dynamodb", region_name=stack.region).scan(TableName=stack.idempotency_table)[
        "Items"
    ]
    [record] = items
    assert record["id"]["S"].startswith("notice#")
    assert record["status"]["S"] == "COMPLETED"
    assert int(record["expiration"]["N"]) > 0


def test_an_unreachable_ledger_never_suppresses_a_notice(aws: Ec2Fidelity) -> None:
    # Given a table that does not exist (e.g. access denied or deleted)
    ledger = ledger_of("eu-west-1", "no-such-table")
    # Then the notice goes out rather than being lost
    assert ledger.first_time("report.daily#x", NOW, DAY) is True
