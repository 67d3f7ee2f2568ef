"""AMI names, descriptions and slot tag values (SPEC §5).

An AMI name is ``{stack}-{instance}-{trigger}-{slot}``, e.g. ``amikeeper-i-0abc-schedule-20261129T0300Z``
(the slot drops its seconds when they are zero). It depends on nothing but its four inputs, so a
repeated event maps to the same name, and EC2's unique-name rule turns a second CreateImage into a
harmless duplicate. A retry after a *failed* AMI of the same slot (which still holds its name until
retention removes it) adds ``-r{attempt}``: the planner counts the slot's failed AMIs, so the retry's
name is as deterministic as the first one's.

Distinct inputs give distinct names: trigger and slot contain no ``-`` and are read from the right;
the instance part is always ``i-`` followed by a token without ``-``; a stack or instance id that
cannot be used as it is (characters EC2 rejects, or too long) is shortened and marked with ``_``
plus a hash of the original, and ``_`` never appears in a part used as it is.

Slots have one-second precision: microseconds are dropped everywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from typing import Literal, get_args

Trigger = Literal["schedule", "stop", "manual"]
TRIGGERS: tuple[str, ...] = get_args(Trigger)

AMI_NAME_MAX = 128
DESCRIPTION_MAX = 255
HASH_LENGTH = 10
MAX_ATTEMPT = 99
_INSTANCE_TOKEN_PREFIX = 7
# An instance token is at most 17 hex digits, or "z" + prefix + "_" + hash.
_INSTANCE_TOKEN_MAX = max(17, 1 + _INSTANCE_TOKEN_PREFIX + 1 + HASH_LENGTH)
# Longest tail after the stack: "-i-" + instance token + "-" + "schedule" + "-" + "YYYYMMDDTHHMMSSZ" + "-r99".
_STACK_BUDGET = AMI_NAME_MAX - (
    3 + _INSTANCE_TOKEN_MAX + 1 + len("schedule") + 1 + 16 + len(f"-r{MAX_ATTEMPT}")
)
_DESCRIPTION_ID_MAX = 64

_PLAIN_STACK = re.compile(rf"[A-Za-z0-9-]{{1,{_STACK_BUDGET}}}")
_PLAIN_INSTANCE = re.compile(r"i-([0-9a-f]{1,17})")
_SLOT_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


class InvalidSlotError(ValueError):
    """A slot that is not an instant (naive datetime) or slot text that is not 'YYYY-MM-DDTHH:MM:SSZ'."""


class InvalidTriggerError(ValueError):
    """A trigger other than schedule, stop or manual."""

    def __init__(self, trigger: str) -> None:
        super().__init__(f"trigger {trigger!r} is not one of {', '.join(TRIGGERS)}")
        self.trigger = trigger

    def __reduce__(self) -> tuple[type[InvalidTriggerError], tuple[str]]:
        return type(self), (self.trigger,)


def ami_name(stack: str, instance_id: str, trigger: Trigger, slot: datetime, attempt: int = 0) -> str:
    """The deterministic, EC2-valid AMI name of one backup (``attempt`` > 0: a retry after failed AMIs)."""
    _require_trigger(trigger)
    if not 0 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"attempt {attempt} is outside 0..{MAX_ATTEMPT}")
    name = f"{_stack_part(stack)}-i-{_instance_token(instance_id)}-{trigger}-{_compact_slot(slot)}"
    return f"{name}-r{attempt}" if attempt else name


def ami_description(instance_name: str | None, instance_id: str, trigger: Trigger, slot: datetime) -> str:
    """A readable description in printable ASCII, at most 255 characters."""
    _require_trigger(trigger)
    instance = _printable(instance_id)[:_DESCRIPTION_ID_MAX] or "unknown instance"
    tail = f" at slot {format_slot(slot)}"
    head = f"amikeeper {trigger} backup of "
    name = _printable(instance_name or "")
    if not name:
        return f"{head}{instance}{tail}"
    room = DESCRIPTION_MAX - len(head) - len(tail) - len(f'"" ({instance})')
    if len(name) > room:
        name = name[: room - 3].rstrip() + "..."
    return f'{head}"{name}" ({instance}){tail}'


def format_slot(slot: datetime) -> str:
    """The `amikeeper:slot` tag value: UTC, 'YYYY-MM-DDTHH:MM:SSZ'."""
    utc = _as_utc(slot)
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"


def parse_slot(text: str) -> datetime:
    """The UTC instant of an `amikeeper:slot` tag value; InvalidSlotError for anything else."""
    match = _SLOT_TEXT.fullmatch(text)
    if match is None:
        raise InvalidSlotError(f"slot {text!r} is not a UTC time 'YYYY-MM-DDTHH:MM:SSZ'")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise InvalidSlotError(f"slot {text!r} is not a real time: {error}") from None


def _as_utc(slot: datetime) -> datetime:
    if slot.tzinfo is None or slot.utcoffset() is None:
        raise InvalidSlotError(f"slot {slot.isoformat()} has no time zone; a slot must be an instant")
    return slot.astimezone(UTC).replace(microsecond=0)


def _compact_slot(slot: datetime) -> str:
    utc = _as_utc(slot)
    text = f"{utc.year:04d}{utc.month:02d}{utc.day:02d}T{utc.hour:02d}{utc.minute:02d}"
    return f"{text}{utc.second:02d}Z" if utc.second else f"{text}Z"


def _require_trigger(trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise InvalidTriggerError(trigger)


def _stack_part(stack: str) -> str:
    if _PLAIN_STACK.fullmatch(stack):
        return stack
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]", "-", _ascii(stack))).strip("-")
    return f"{cleaned[: _STACK_BUDGET - 1 - HASH_LENGTH]}_{_digest(stack)}"


def _instance_token(instance_id: str) -> str:
    plain = _PLAIN_INSTANCE.fullmatch(instance_id)
    if plain is not None:
        return plain.group(1)
    # 'z' is not a hex digit, so these tokens never equal a plain instance's.
    cleaned = re.sub(r"[^A-Za-z0-9]", "", _ascii(instance_id))[:_INSTANCE_TOKEN_PREFIX]
    return f"z{cleaned}_{_digest(instance_id)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def _ascii(text: str) -> str:
    """Accents dropped, other non-ASCII characters removed: 'Café' -> 'Cafe'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if char.isascii() and not unicodedata.combining(char))


def _printable(text: str) -> str:
    """Printable ASCII with single spaces; what has no ASCII form becomes '?'."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = []
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        if char.isspace():
            kept.append(" ")
        elif " " <= char <= "~":
            kept.append(char)
        else:
            kept.append("?")
    return re.sub(r" {2,}", " ", "".join(kept)).strip()
