"""AMI names, descriptions and slot tag values (SPEC §5)."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import cast, get_args

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from amikeeper.naming import (
    InvalidSlotError,
    InvalidTriggerError,
    Trigger,
    ami_description,
    ami_name,
    format_slot,
    parse_slot,
)
from tests.fixtures.ec2_fidelity import Ec2Fidelity

SLOT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
EC2_AMI_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
PRINTABLE_ASCII = re.compile(r"[ -~]*")


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "instance_id", "trigger", "slot", "name"),
    [
        ("amikeeper", "i-0abc", "schedule", SLOT, "amikeeper-i-0abc-schedule-20261129T0300Z"),
        ("amikeeper", "i-0abc1234", "schedule", SLOT, "amikeeper-i-0abc1234-schedule-20261129T0300Z"),
        (
            "prod-backups",
            "i-0123456789abcdef0",
            "stop",
            datetime(2026, 1, 2, 23, 59, 7, tzinfo=UTC),
            "prod-backups-i-0123456789abcdef0-stop-20260102T235907Z",
        ),
        (
            "amikeeper",
            "i-0abc1234",
            "manual",
            datetime(2026, 11, 29, 4, 0, tzinfo=timezone(timedelta(hours=1))),  # 03:00 UTC
            "amikeeper-i-0abc1234-manual-20261129T0300Z",
        ),
        (
            "amikeeper",
            "i-0abc1234",
            "schedule",
            datetime(2026, 11, 29, 3, 0, 0, 999_999, tzinfo=UTC),  # one-second precision
            "amikeeper-i-0abc1234-schedule-20261129T0300Z",
        ),
    ],
)
def test_name_reads_stack_instance_trigger_and_slot(
    stack: str, instance_id: str, trigger: Trigger, slot: datetime, name: str
) -> None:
    assert ami_name(stack, instance_id, trigger, slot) == name


def test_long_stack_name_is_shortened_with_a_stable_hash() -> None:
    # Given the longest stack names CloudFormation allows, differing only at the end
    first, second = "a" * 127 + "x", "a" * 127 + "y"
    # When named
    first_name = ami_name(first, "i-0123456789abcdef0", "schedule", SLOT)
    second_name = ami_name(second, "i-0123456789abcdef0", "schedule", SLOT)
    # Then both fit EC2's 128 characters, stay distinct, and are the same on every call
    assert EC2_AMI_NAME.fullmatch(first_name) and EC2_AMI_NAME.fullmatch(second_name)
    assert len(first_name) <= 128
    assert first_name != second_name
    assert first_name == ami_name(first, "i-0123456789abcdef0", "schedule", SLOT)
    assert re.fullmatch(r"a+_[0-9a-f]{10}-i-0123456789abcdef0-schedule-20261129T0300Z", first_name)


@pytest.mark.parametrize(
    ("stack", "start"),
    [
        ("my stack/with:odd*chars", "my-stack-with-odd-chars_"),
        ("Café-Prod", "Cafe-Prod_"),
        ("", "_"),
        ("🙂", "_"),
    ],
)
def test_odd_stack_name_is_sanitised_and_marked_with_its_hash(stack: str, start: str) -> None:
    name = ami_name(stack, "i-0abc1234", "schedule", SLOT)
    assert name.startswith(start)
    assert EC2_AMI_NAME.fullmatch(name)


def test_stacks_that_sanitise_alike_keep_distinct_names() -> None:
    # Given stacks that differ only in characters EC2 does not allow
    names = {ami_name(stack, "i-0abc1234", "schedule", SLOT) for stack in ("a b", "a/b", "a:b", "a-b")}
    # Then every one has its own name
    assert len(names) == 4


def test_unusual_instance_id_cannot_pose_as_another_split_of_stack_and_instance() -> None:
    # Given inputs whose plain concatenation would be the same text
    plain = ami_name("amikeeper-i", "i-0abc1234", "schedule", SLOT)
    split_elsewhere = ami_name("amikeeper", "i-i-0abc1234", "schedule", SLOT)
    # Then the names differ, and the unusual id is sanitised and hashed
    assert plain != split_elsewhere
    assert re.fullmatch(r"amikeeper-i-zii0abc1_[0-9a-f]{10}-schedule-20261129T0300Z", split_elsewhere)


@pytest.mark.parametrize("trigger", ["Schedule", "backup", ""])
def test_unknown_trigger_is_rejected(trigger: str) -> None:
    with pytest.raises(
        InvalidTriggerError, match=f"trigger {trigger!r} is not one of schedule, stop, manual"
    ):
        ami_name("amikeeper", "i-0abc1234", cast(Trigger, trigger), SLOT)


def test_trigger_error_survives_pickling() -> None:
    error = InvalidTriggerError("backup")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_naive_slot_is_rejected() -> None:
    with pytest.raises(InvalidSlotError, match="slot 2026-11-29T03:00:00 has no time zone"):
        ami_name("amikeeper", "i-0abc1234", "schedule", datetime(2026, 11, 29, 3))  # noqa: DTZ001


# --- descriptions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_name", "description"),
    [
        ("web-01", 'amikeeper schedule backup of "web-01" (i-0abc1234) at slot 2026-11-29T03:00:00Z'),
        (None, "amikeeper schedule backup of i-0abc1234 at slot 2026-11-29T03:00:00Z"),
        ("", "amikeeper schedule backup of i-0abc1234 at slot 2026-11-29T03:00:00Z"),
        ("  \t ", "amikeeper schedule backup of i-0abc1234 at slot 2026-11-29T03:00:00Z"),
        (
            "Café Zürich",
            'amikeeper schedule backup of "Cafe Zurich" (i-0abc1234) at slot 2026-11-29T03:00:00Z',
        ),
        ("数据库", 'amikeeper schedule backup of "???" (i-0abc1234) at slot 2026-11-29T03:00:00Z'),
        ("a/b\\c\n\td", 'amikeeper schedule backup of "a/b\\c d" (i-0abc1234) at slot 2026-11-29T03:00:00Z'),
        ("db\x00\x7f", 'amikeeper schedule backup of "db??" (i-0abc1234) at slot 2026-11-29T03:00:00Z'),
    ],
)
def test_description_names_the_instance_in_printable_ascii(
    instance_name: str | None, description: str
) -> None:
    assert ami_description(instance_name, "i-0abc1234", "schedule", SLOT) == description


def test_long_instance_name_is_cut_to_fit_255_characters() -> None:
    # Given a Name tag of 300 characters
    description = ami_description("n" * 300, "i-0123456789abcdef0", "stop", SLOT)
    # Then the description is 255 characters at most, marks the cut, and keeps id and slot
    assert len(description) <= 255
    assert '..." (i-0123456789abcdef0) at slot 2026-11-29T03:00:00Z' in description
    assert description.startswith('amikeeper stop backup of "nnnn')


# --- slot tag values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "text"),
    [
        (SLOT, "2026-11-29T03:00:00Z"),
        (datetime(2026, 11, 29, 4, 0, 5, 123, tzinfo=timezone(timedelta(hours=1))), "2026-11-29T03:00:05Z"),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
    ],
)
def test_format_slot_is_utc_iso_8601(slot: datetime, text: str) -> None:
    assert format_slot(slot) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is not a UTC time 'YYYY-MM-DDTHH:MM:SSZ'"),
        ("garbage", "is not a UTC time"),
        ("2026-11-29T03:00:00", "is not a UTC time"),
        ("2026-11-29T03:00:00+00:00", "is not a UTC time"),
        ("2026-11-29 03:00:00Z", "is not a UTC time"),
        (" 2026-11-29T03:00:00Z", "is not a UTC time"),
        ("2026-11-29T03:00:00.5Z", "is not a UTC time"),
        ("\u0662026-11-29T03:00:00Z", "is not a UTC time"),  # Arabic-Indic digit two
        ("2026-13-01T00:00:00Z", "is not a real time: month must be in 1..12"),
        ("2026-02-29T00:00:00Z", "is not a real time: day is out of range for month"),
        ("2026-11-29T24:00:00Z", "is not a real time: hour must be in 0..23"),
    ],
)
def test_parse_slot_rejects_anything_but_the_tag_format(text: str, reason: str) -> None:
    with pytest.raises(InvalidSlotError) as raised:
        parse_slot(text)
    assert str(raised.value).startswith(f"slot {text!r} ")
    assert reason in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_parse_slot_reads_the_tag_value() -> None:
    parsed = parse_slot("2028-02-29T23:59:59Z")
    assert parsed == datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert parsed.tzinfo is UTC


# --- properties ------------------------------------------------------------------------------

TRIGGERS = st.sampled_from(get_args(Trigger))
SLOTS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001
    max_value=datetime(2199, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13, minutes=45))]
    ),
).map(lambda slot: slot.replace(microsecond=0))
STACKS = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,127}", fullmatch=True),  # what CloudFormation allows
    st.text(max_size=200),
)
INSTANCE_IDS = st.one_of(st.from_regex(r"i-[0-9a-f]{8}|i-[0-9a-f]{17}", fullmatch=True), st.text(max_size=40))


@settings(max_examples=200)
@given(stack=STACKS, instance_id=INSTANCE_IDS, trigger=TRIGGERS, slot=SLOTS)
def test_name_is_always_valid_for_ec2_and_deterministic(
    stack: str, instance_id: str, trigger: Trigger, slot: datetime
) -> None:
    name = ami_name(stack, instance_id, trigger, slot)
    assert EC2_AMI_NAME.fullmatch(name), name
    assert ami_name(stack, instance_id, trigger, slot) == name
    assert ami_name(stack, instance_id, trigger, slot.astimezone(UTC)) == name


@settings(max_examples=200)
@given(
    backup=st.tuples(STACKS, INSTANCE_IDS, TRIGGERS, SLOTS),
    part=st.integers(min_value=0, max_value=3),
    data=st.data(),
)
def test_changing_any_one_part_changes_the_name(
    backup: tuple[str, str, Trigger, datetime], part: int, data: st.DataObject
) -> None:
    # Given a backup, and another that differs in just its stack, instance, trigger or slot
    parts: tuple[st.SearchStrategy[object], ...] = (STACKS, INSTANCE_IDS, TRIGGERS, SLOTS)
    other = list(backup)
    other[part] = data.draw(parts[part].filter(lambda value: value != backup[part]), label="changed part")
    # Then the two names differ
    assert ami_name(*backup) != ami_name(*other)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(
    instance_name=st.one_of(st.none(), st.text(max_size=400)),
    instance_id=INSTANCE_IDS,
    trigger=TRIGGERS,
    slot=SLOTS,
)
def test_description_is_always_printable_ascii_within_255(
    instance_name: str | None, instance_id: str, trigger: Trigger, slot: datetime
) -> None:
    description = ami_description(instance_name, instance_id, trigger, slot)
    assert len(description) <= 255
    assert PRINTABLE_ASCII.fullmatch(description), description
    assert description.endswith(f" at slot {format_slot(slot)}")
    assert description == ami_description(instance_name, instance_id, trigger, slot)


@settings(max_examples=200)
@given(slot=SLOTS)
def test_format_and_parse_slot_round_trip(slot: datetime) -> None:
    text = format_slot(slot)
    assert parse_slot(text) == slot
    assert format_slot(parse_slot(text)) == text


# --- retries after a failed AMI ---------------------------------------------------------------


def test_retry_after_a_failed_ami_gets_its_own_deterministic_name() -> None:
    first = ami_name("amikeeper", "i-0abc", "schedule", SLOT)
    retry = ami_name("amikeeper", "i-0abc", "schedule", SLOT, attempt=1)
    assert retry == "amikeeper-i-0abc-schedule-20261129T0300Z-r1"
    assert retry != first
    assert ami_name("amikeeper", "i-0abc", "schedule", SLOT, attempt=0) == first


@pytest.mark.parametrize("attempt", [-1, 100])
def test_attempt_outside_the_range_is_rejected(attempt: int) -> None:
    with pytest.raises(ValueError, match=f"attempt {attempt} is outside 0..99"):
        ami_name("amikeeper", "i-0abc", "schedule", SLOT, attempt=attempt)


@given(stack=STACKS, instance_id=INSTANCE_IDS, trigger=TRIGGERS, slot=SLOTS, attempt=st.integers(0, 99))
def test_retry_names_are_valid_and_never_equal_a_first_attempt(
    stack: str, instance_id: str, trigger: Trigger, slot: datetime, attempt: int
) -> None:
    name = ami_name(stack, instance_id, trigger, slot, attempt)
    assert EC2_AMI_NAME.fullmatch(name), name
    if attempt:
        assert name != ami_name(stack, instance_id, trigger, slot)


# --- the 128-character boundary ----------------------------------------------------------------

# The longest inputs of each part: a stack name as long as CloudFormation allows (128), an instance id
# that cannot be used as it is (so it becomes the longest token, "z" + 7 characters + "_" + hash), the
# longest trigger, a slot with seconds and the last retry.
LONGEST_STACKS = ["a" * 128, "A" + "b" * 127, "x" * 76, "x" * 77, "my stack/" * 14]
LONGEST_INSTANCE_IDS = ["i-0123456789abcdef0123", "i-i-0123456789abcdef", "instance/with:odd*chars"]
SLOT_WITH_SECONDS = datetime(2026, 11, 29, 3, 0, 59, tzinfo=UTC)


@pytest.mark.parametrize("stack", LONGEST_STACKS, ids=lambda stack: f"stack-of-{len(stack)}")
@pytest.mark.parametrize("instance_id", LONGEST_INSTANCE_IDS)
def test_longest_possible_name_is_exactly_128_characters(stack: str, instance_id: str) -> None:
    # Given the longest parts a backup can have: stack, instance token, trigger, slot and attempt
    # When named
    name = ami_name(stack, instance_id, "schedule", SLOT_WITH_SECONDS, attempt=99)
    # Then the name uses EC2's whole limit and not one character more
    assert len(name) == 128, name
    assert EC2_AMI_NAME.fullmatch(name), name
    assert name.endswith("-schedule-20261129T030059Z-r99")


def test_no_stack_length_ever_gives_a_129_character_name() -> None:
    # Given stacks of every length up to well past CloudFormation's limit, with the longest other parts
    lengths = {
        len(ami_name(stack, instance_id, "schedule", SLOT_WITH_SECONDS, attempt=99))
        for size in range(1, 201)
        for stack in ("s" * size, "s" * (size - 1) + "/")
        for instance_id in ("i-0123456789abcdef0", LONGEST_INSTANCE_IDS[0])
    }
    # Then the longest name is 128 characters: never more
    assert max(lengths) == 128


def test_a_plain_stack_name_is_used_as_it_is_up_to_the_last_character_that_fits() -> None:
    # Given the longest stack a name can carry unchanged, and one character more
    fits, one_more = "k" * 76, "k" * 77
    # Then the first is used as written, the second is shortened and marked with its hash
    assert ami_name(fits, "i-0abc", "schedule", SLOT).startswith(fits + "-i-0abc-")
    shortened = ami_name(one_more, "i-0abc", "schedule", SLOT)
    assert re.fullmatch(r"k{65}_[0-9a-f]{10}-i-0abc-schedule-20261129T0300Z", shortened)


def test_ec2_accepts_the_longest_name_and_refuses_one_character_more(aws: Ec2Fidelity) -> None:
    # Given an instance, and the longest name amikeeper can make for it
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instance_id = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    longest = ami_name("a" * 128, LONGEST_INSTANCE_IDS[0], "schedule", SLOT_WITH_SECONDS, attempt=99)
    # When CreateImage is called with it / Then EC2 (3-128 characters of its set) registers the AMI
    created = ec2.create_image(InstanceId=instance_id, Name=longest)["ImageId"]
    assert ec2.describe_images(ImageIds=[created])["Images"][0]["Name"] == longest
    # And a name one character longer is refused as malformed
    with pytest.raises(ClientError) as refused:
        ec2.create_image(InstanceId=instance_id, Name=longest + "x")
    assert refused.value.response["Error"]["Code"] == "InvalidAMIName.Malformed"
