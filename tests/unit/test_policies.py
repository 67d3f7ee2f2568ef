"""Which policy an instance follows (SPEC §1-§2): opt-in values, named policies, overrides, invalid values."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amikeeper.model import TagKeys
from amikeeper.policies import InvalidTag, PolicyCatalog, build_catalog, resolve_policy

UTC = ZoneInfo("UTC")
KEYS = TagKeys("Backup")
GOLD = {"gold": {"schedule": "every 6h", "retain": "hourly=24 daily=14 monthly=12", "no_reboot": False}}


def catalog(document: object = GOLD) -> PolicyCatalog:
    return build_catalog("daily@03:00", "daily=7 weekly=4", UTC, json.dumps(document))


@pytest.mark.parametrize("value", ["true", "YES", " on ", "Default", "default"])
def test_opt_in_words_select_the_default_policy(value: str) -> None:
    policy = resolve_policy({"Backup": value}, KEYS, catalog())
    assert policy is not None
    assert policy.name == "default"
    assert policy.schedule.expression == "daily@03:00"
    assert policy.no_reboot is True
    assert policy.on_stop is False


@pytest.mark.parametrize(
    "tags", [{}, {"Backup": "false"}, {"Backup": " No"}, {"Backup": "OFF"}, {"Other": "true"}]
)
def test_opt_out_and_missing_tag_mean_not_backed_up(tags: dict[str, str]) -> None:
    assert resolve_policy(tags, KEYS, catalog()) is None


def test_named_policy_applies_and_inherits_what_it_leaves_out() -> None:
    # Given the operators' document defines gold without on_stop
    policy = resolve_policy({"Backup": " GOLD "}, KEYS, catalog())
    # Then gold's values apply and on_stop comes from the default
    assert policy is not None
    assert policy.name == "gold"
    assert policy.schedule.expression == "every 6h"
    assert policy.retention.hourly == 24
    assert policy.no_reboot is False
    assert policy.on_stop is False


def test_tag_overrides_win_over_the_policy() -> None:
    tags = {
        "Backup": "gold",
        "Backup:Schedule": "weekly@sun 02:00",
        "Backup:Retain": "last=3",
        "Backup:NoReboot": "true",
        "Backup:OnStop": "TRUE",
    }
    policy = resolve_policy(tags, KEYS, catalog())
    assert policy is not None
    assert policy.name == "gold"
    assert policy.schedule.expression == "weekly@sun 02:00"
    assert policy.retention.last == 3
    assert policy.no_reboot is True
    assert policy.on_stop is True


@pytest.mark.parametrize(
    ("tags", "bad_tag", "reason"),
    [
        ({"Backup": "platinum"}, "Backup", "unknown policy 'platinum' (known: gold)"),
        ({"Backup": "  "}, "Backup", "empty value"),
        ({"Backup": "true", "Backup:Schedule": "whenever"}, "Backup:Schedule", "whenever"),
        ({"Backup": "true", "Backup:Retain": "forever"}, "Backup:Retain", "forever"),
        ({"Backup": "true", "Backup:NoReboot": "maybe"}, "Backup:NoReboot", "expected true or false"),
        ({"Backup": "true", "Backup:OnStop": "1"}, "Backup:OnStop", "expected true or false"),
    ],
)
def test_invalid_value_names_the_tag_the_value_and_why(
    tags: dict[str, str], bad_tag: str, reason: str
) -> None:
    with pytest.raises(InvalidTag) as raised:
        resolve_policy(tags, KEYS, catalog())
    assert raised.value.tag == bad_tag
    assert raised.value.value == tags[bad_tag]
    assert reason in raised.value.reason


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps({"gold": {"schedule": "every 7h"}}), "policy 'gold'"),
        (json.dumps({"gold": {"retain": ""}}), "policy 'gold'"),
        (json.dumps({"gold": {"colour": "gold"}}), "unknown fields ['colour']"),
        (json.dumps({"gold": {"no_reboot": "yes"}}), "no_reboot must be true or false"),
        (json.dumps({"true": {}}), "not allowed"),
        (json.dumps({"gold": "every 6h"}), "must be a JSON object"),
    ],
)
def test_malformed_document_is_reported_and_never_applied(document: str, problem: str) -> None:
    # Given a broken document / When the catalog is built
    broken = build_catalog("daily", "7", UTC, document)
    # Then no named policy is applied, the problem is recorded, and the default still works
    assert broken.named == {}
    assert broken.document_error is not None
    assert problem in broken.document_error
    assert resolve_policy({"Backup": "true"}, KEYS, broken) is not None
    with pytest.raises(InvalidTag, match="named policies are unavailable"):
        resolve_policy({"Backup": "gold"}, KEYS, broken)


@given(st.text(max_size=40))
def test_any_opt_in_value_resolves_or_is_reported_never_crashes(value: str) -> None:
    try:
        resolve_policy({"Backup": value}, KEYS, catalog())
    except InvalidTag as invalid:
        assert invalid.tag == "Backup"
