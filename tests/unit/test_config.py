"""Configuration is parsed once into a validated object; every bad variable is named in the error."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from amikeeper.config import ConfigError, load_settings

VALID = {
    "AWS_REGION": "eu-west-1",
    "AMIKEEPER_STACK_NAME": "amikeeper",
    "AMIKEEPER_OPT_IN_TAG_KEY": "Backup",
    "AMIKEEPER_DEFAULT_SCHEDULE": "daily@03:00",
    "AMIKEEPER_DEFAULT_RETENTION": "daily=7 weekly=4 monthly=6",
    "AMIKEEPER_PLANNER_RATE_MINUTES": "15",
    "AMIKEEPER_REGIONS": "",
    "AMIKEEPER_TIME_ZONE": "Europe/Berlin",
    "AMIKEEPER_COPY_TAGS": "CostCenter, Team,,Team",
    "AMIKEEPER_POLICIES_PARAMETER": "/amikeeper/policies",
    "AMIKEEPER_WORK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/work",
    "AMIKEEPER_PLANNER_TASK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/planner-tasks.fifo",
    "AMIKEEPER_DELETE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/deletions.fifo",
    "AMIKEEPER_DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/work-dlq",
    "AMIKEEPER_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:amikeeper",
    "AMIKEEPER_ORPHAN_GRACE_DAYS": "30",
    "AMIKEEPER_PENDING_TIMEOUT_HOURS": "6",
    "AMIKEEPER_IDEMPOTENCY_TABLE": "amikeeper-idempotency",
    "AMIKEEPER_COPY_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/copies",
    "AMIKEEPER_VAULT_ROLE_ARN": "",
    "AMIKEEPER_VAULT_EXTERNAL_ID": "",
    "AMIKEEPER_COPY_ALLOWANCE_HOURS": "6",
    "AMIKEEPER_VERIFY_SCHEDULE": "",
    "AMIKEEPER_DRILL_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/drills",
    "AMIKEEPER_DRILL_SUBNET_IDS": "",
    "AMIKEEPER_DRILL_SECURITY_GROUP_IDS": "",
    "AMIKEEPER_DRILL_INSTANCE_TYPE": "",
    "AMIKEEPER_MAX_CONCURRENT_DRILLS": "2",
    "AMIKEEPER_DRILL_MINUTES_PER_DAY": "240",
    "AMIKEEPER_DRILL_MAX_MINUTES": "20",
}


def test_valid_environment_becomes_typed_settings() -> None:
    # Given the environment the template sets / When it is loaded
    settings = load_settings(VALID)
    # Then values are typed, lists are de-duplicated and an empty region list means the home region
    assert settings.regions == ("eu-west-1",)
    assert settings.copy_tags == ("CostCenter", "Team")
    assert settings.time_zone == ZoneInfo("Europe/Berlin")
    assert settings.planner_rate_minutes == 15
    assert settings.tag_keys.schedule == "Backup:Schedule"
    assert settings.tag_keys.hold == "Backup:Hold"


def test_explicit_regions_are_kept_in_order() -> None:
    settings = load_settings(VALID | {"AMIKEEPER_REGIONS": "us-east-1, eu-central-1"})
    assert settings.regions == ("us-east-1", "eu-central-1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AMIKEEPER_STACK_NAME", "", "AMIKEEPER_STACK_NAME: is missing or empty"),
        (
            "AMIKEEPER_PLANNER_RATE_MINUTES",
            "fifteen",
            "AMIKEEPER_PLANNER_RATE_MINUTES: 'fifteen' is not a whole number",
        ),
        ("AMIKEEPER_PLANNER_RATE_MINUTES", "0", "AMIKEEPER_PLANNER_RATE_MINUTES: 0 is outside 1..1440"),
        (
            "AMIKEEPER_TIME_ZONE",
            "Mars/Olympus",
            "AMIKEEPER_TIME_ZONE: 'Mars/Olympus' is not an IANA time zone name",
        ),
        ("AMIKEEPER_REGIONS", "us-east-1,narnia", "AMIKEEPER_REGIONS: 'narnia' is not an AWS region name"),
        ("AMIKEEPER_OPT_IN_TAG_KEY", "Back:up", "AMIKEEPER_OPT_IN_TAG_KEY"),
        ("AMIKEEPER_DEFAULT_SCHEDULE", "sometimes", "AMIKEEPER_DEFAULT_SCHEDULE"),
        ("AMIKEEPER_DEFAULT_RETENTION", "forever", "AMIKEEPER_DEFAULT_RETENTION"),
        ("AWS_REGION", "", "AWS_REGION"),
    ],
)
def test_bad_variable_is_named_in_the_error(variable: str, value: str, message: str) -> None:
    # Given one broken variable / When loading / Then the error names it and says why
    with pytest.raises(ConfigError) as raised:
        load_settings(VALID | {variable: value})
    assert str(raised.value).startswith(message)
    assert raised.value.variable == variable


def test_missing_variable_is_named() -> None:
    environ = {key: value for key, value in VALID.items() if key != "AMIKEEPER_TOPIC_ARN"}
    with pytest.raises(ConfigError, match="AMIKEEPER_TOPIC_ARN: is missing"):
        load_settings(environ)


def test_drill_settings_are_typed_and_empty_means_none() -> None:
    # Given the template's defaults / When loaded
    settings = load_settings(VALID)
    # Then no verify default, no drill network, and the caps as numbers
    assert settings.verify_schedule is None and settings.drill_instance_type is None
    assert settings.drill_subnet_ids == () and settings.drill_security_group_ids == ()
    assert (settings.max_concurrent_drills, settings.drill_minutes_per_day, settings.drill_max_minutes) == (
        2,
        240,
        20,
    )
    configured = load_settings(
        VALID
        | {
            "AMIKEEPER_VERIFY_SCHEDULE": "weekly@sun 05:00",
            "AMIKEEPER_DRILL_SUBNET_IDS": "subnet-0aaaaaaaaaaaaaaaa, subnet-0bbbbbbbbbbbbbbbb",
            "AMIKEEPER_DRILL_SECURITY_GROUP_IDS": "sg-0cccccccccccccccc",
        }
    )
    assert configured.verify_schedule == "weekly@sun 05:00"
    assert configured.drill_subnet_ids == ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AMIKEEPER_VERIFY_SCHEDULE", "fortnightly", "fortnightly"),
        ("AMIKEEPER_DRILL_SUBNET_IDS", "sg-0cccccccccccccccc", "is not a subnet id"),
        ("AMIKEEPER_DRILL_SECURITY_GROUP_IDS", "subnet-0aaaaaaaaaaaaaaaa", "is not a security group id"),
        ("AMIKEEPER_DRILL_MAX_MINUTES", "2", "outside 5..720"),
        ("AMIKEEPER_DRILL_QUEUE_URL", "", "is missing"),
    ],
)
def test_a_bad_drill_setting_fails_the_cold_start_naming_it(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        load_settings(VALID | {variable: value})
    assert raised.value.variable == variable
