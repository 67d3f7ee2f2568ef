"""Where backups are copied (SPEC §9): the policy field ``copies``, the ``CopyTo`` tag and the destination
keys recorded on each backup."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amikeeper.copy_destinations import (
    MAX_DESTINATIONS,
    CopyDestination,
    CopyDestinationError,
    decode_keys,
    encode_keys,
    parse_copies,
    parse_copy_to,
    split_key,
)
from amikeeper.model import TagKeys
from amikeeper.policies import InvalidTag, build_catalog, resolve_policy

UTC = ZoneInfo("UTC")
KEYS = TagKeys("Backup")
DR = {
    "dr": {
        "copies": [
            {"region": "eu-central-1", "retain": "daily=7 monthly=12"},
            {
                "region": "eu-west-1",
                "account": "222233334444",
                "retain": "monthly=24",
                "kms_key": "alias/vault",
            },
        ]
    }
}


def dr_policy(tags: dict[str, str]) -> tuple[CopyDestination, ...]:
    catalog = build_catalog("daily@03:00", "daily=7", UTC, json.dumps(DR))
    policy = resolve_policy({"Backup": "dr"} | tags, KEYS, catalog)
    assert policy is not None
    return policy.copies


def test_a_policy_names_its_destinations_with_their_own_retention_and_key() -> None:
    # Given the SPEC's example policy
    # When an instance following it is resolved
    copies = dr_policy({})
    # Then it copies to a region of this account and to a vault account, each with its settings
    assert [copy.key for copy in copies] == ["eu-central-1", "222233334444/eu-west-1"]
    assert str(copies[0].retention) == "daily=7 monthly=12"
    assert copies[0].account is None and copies[0].kms_key is None and copies[0].encrypt
    assert copies[1].account == "222233334444" and copies[1].kms_key == "alias/vault"


def test_copy_to_replaces_the_policys_same_account_destinations_and_keeps_the_vault() -> None:
    # Given the dr policy and an instance tagged Backup:CopyTo with two regions, one the policy names
    copies = dr_policy({"Backup:CopyTo": " EU-CENTRAL-1, us-east-1 "})
    # Then the named region keeps its settings, the new one has the defaults, the vault copy stays
    assert [copy.key for copy in copies] == ["eu-central-1", "us-east-1", "222233334444/eu-west-1"]
    assert str(copies[0].retention) == "daily=7 monthly=12"
    assert copies[1] == CopyDestination(region="us-east-1")


def test_copy_to_none_drops_this_accounts_copies_only() -> None:
    assert [copy.key for copy in dr_policy({"Backup:CopyTo": "none"})] == ["222233334444/eu-west-1"]


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "empty value"), ("eu-west-1,mars-1", "'mars-1' is not an AWS region name"), (" , ", "empty value")],
)
def test_an_invalid_copy_to_tag_is_reported_never_guessed(value: str, why: str) -> None:
    # Given an instance whose CopyTo tag cannot be honoured
    # When its policy is resolved
    with pytest.raises(InvalidTag) as raised:
        dr_policy({"Backup:CopyTo": value})
    # Then the tag, its value and the reason are named (the caller reports policy.invalid)
    assert raised.value.tag == "Backup:CopyTo"
    assert why in raised.value.reason


@pytest.mark.parametrize(
    ("copies", "why"),
    [
        ({"region": "eu-west-1"}, "must be a list"),
        ([{"account": "222233334444"}], "is not an AWS region name"),
        ([{"region": "eu-west-1", "account": "2222"}], "12-digit account id"),
        ([{"region": "eu-west-1", "retain": "forever"}], "eu-west-1"),
        ([{"region": "eu-west-1", "kms_key": "my key"}], "is not a key id"),
        ([{"region": "eu-west-1", "encrypt": "yes"}], "encrypt must be true or false"),
        ([{"region": "eu-west-1", "kms_key": "alias/k", "encrypt": False}], "kms_key needs encrypt"),
        ([{"region": "eu-west-1", "vault": True}], "unknown fields ['vault']"),
        ([{"region": "eu-west-1"}, {"region": "eu-west-1"}], "listed twice"),
        ([{"region": f"eu-west-{n}"} for n in range(1, MAX_DESTINATIONS + 2)], "at most"),
    ],
)
def test_an_invalid_copies_field_names_the_policy_and_the_problem(copies: object, why: str) -> None:
    # Given a policies document whose copies field is wrong
    catalog = build_catalog("daily@03:00", "daily=7", UTC, json.dumps({"dr": {"copies": copies}}))
    # Then none of the document applies, and the error says which policy and why
    assert catalog.document_error is not None
    assert "policy 'dr'" in catalog.document_error
    assert why in catalog.document_error


def test_the_same_region_in_this_account_and_in_a_vault_are_two_destinations() -> None:
    copies = parse_copies([{"region": "eu-west-1"}, {"region": "eu-west-1", "account": "222233334444"}])
    assert [copy.key for copy in copies] == ["eu-west-1", "222233334444/eu-west-1"]


REGIONS = st.from_regex(r"\A[a-z]{2}-(west|east|central|south)-[1-9]\Z")
ACCOUNTS = st.one_of(st.none(), st.from_regex(r"\A[0-9]{12}\Z"))


@given(st.lists(st.tuples(REGIONS, ACCOUNTS), max_size=MAX_DESTINATIONS, unique=True))
def test_the_recorded_keys_read_back_as_written(pairs: list[tuple[str, str | None]]) -> None:
    # Given any destinations
    destinations = [CopyDestination(region=region, account=account) for region, account in pairs]
    # When their keys are written on a backup and read back
    keys = decode_keys(encode_keys(destinations))
    # Then each reads back to its region and account, in order
    assert [split_key(key) for key in keys] == pairs


def test_a_mangled_recorded_key_is_dropped_not_guessed() -> None:
    assert decode_keys("eu-west-1,,garbage,12/eu-west-2,222233334444/us-east-1") == (
        "eu-west-1",
        "222233334444/us-east-1",
    )


def test_copy_to_lists_each_region_once() -> None:
    assert parse_copy_to("eu-west-1,EU-WEST-1,us-east-1") == ("eu-west-1", "us-east-1")


def test_a_bad_key_says_what_a_key_is() -> None:
    with pytest.raises(CopyDestinationError, match="region or account/region"):
        split_key("eu-west-1/222233334444")
