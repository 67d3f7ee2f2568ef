"""Which policy an instance follows, from its tags and the named-policies document (SPEC §1-§2). Pure.

Tag values are trimmed and case-insensitive. An invalid value is never guessed at: resolution raises
:class:`InvalidTag` naming the tag, the value and why, and the caller skips that instance only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from amikeeper.copy_destinations import (
    CopyDestination,
    CopyDestinationError,
    parse_copies,
    parse_copy_to,
    with_regions,
)
from amikeeper.model import TagKeys
from amikeeper.retention_rules import RetentionError, RetentionRules, parse_retention
from amikeeper.schedules import Schedule, ScheduleError, parse_schedule

DEFAULT_POLICY = "default"
TRUE_WORDS = frozenset({"true", "yes", "on"})
FALSE_WORDS = frozenset({"false", "no", "off"})
OPT_IN_DEFAULT_WORDS = TRUE_WORDS | {DEFAULT_POLICY}
_POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_POLICY_FIELDS = frozenset({"schedule", "retain", "no_reboot", "on_stop", "copies", "verify"})
# A verify value that turns inherited drills off for one policy.
NO_VERIFY_WORDS = frozenset({"", "off", "none", "never"})


class InvalidTag(ValueError):
    """An instance tag amikeeper cannot honour; the instance is skipped and reported."""

    def __init__(self, tag: str, value: str, reason: str) -> None:
        super().__init__(f"tag {tag}={value!r}: {reason}")
        self.tag = tag
        self.value = value
        self.reason = reason


class PolicyDocumentError(ValueError):
    """The named-policies document is malformed; none of it is applied."""


@dataclass(frozen=True)
class Policy:
    name: str
    schedule: Schedule
    retention: RetentionRules
    no_reboot: bool = True
    on_stop: bool = False
    copies: tuple[CopyDestination, ...] = ()
    # When restore drills boot this policy's newest backups (SPEC §10); None: never.
    verify: Schedule | None = None


@dataclass(frozen=True)
class PolicyCatalog:
    default: Policy
    time_zone: ZoneInfo
    named: Mapping[str, Policy] = field(default_factory=dict)
    # Set when the operators' document could not be applied: reported once per run, and every instance
    # that names a policy is then invalid rather than silently falling back to the default.
    document_error: str | None = None


def build_catalog(
    default_schedule: str,
    default_retention: str,
    tz: ZoneInfo,
    document: str | None,
    default_verify: str | None = None,
) -> PolicyCatalog:
    """The default policy (stack parameters, must be valid) plus the named ones from the SSM document."""
    default = Policy(
        name=DEFAULT_POLICY,
        schedule=parse_schedule(default_schedule, tz),
        retention=parse_retention(default_retention),
        verify=parse_schedule(default_verify, tz) if default_verify else None,
    )
    try:
        named = parse_policy_document(document or "{}", default, tz)
    except PolicyDocumentError as error:
        return PolicyCatalog(default=default, time_zone=tz, document_error=str(error))
    return PolicyCatalog(default=default, time_zone=tz, named=named)


def parse_policy_document(text: str, default: Policy, tz: ZoneInfo) -> dict[str, Policy]:
    """``{"gold": {"schedule": "every 6h", "retain": "hourly=24 daily=14", "no_reboot": true}}``.

    A field left out inherits the default policy's value.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyDocumentError(f"policies document is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PolicyDocumentError("policies document must be a JSON object of policy name -> policy")
    policies: dict[str, Policy] = {}
    for raw_name, body in document.items():
        name = str(raw_name).strip().lower()
        if not _POLICY_NAME.match(name) or name in OPT_IN_DEFAULT_WORDS | FALSE_WORDS:
            raise PolicyDocumentError(
                f"policy name {raw_name!r} is not allowed (reserved word or bad characters)"
            )
        if name in policies:
            raise PolicyDocumentError(f"policy {name!r} is defined twice")
        policies[name] = _parse_policy(name, body, default, tz)
    return policies


def _parse_policy(name: str, body: object, default: Policy, tz: ZoneInfo) -> Policy:
    if not isinstance(body, dict):
        raise PolicyDocumentError(f"policy {name!r} must be a JSON object")
    unknown = set(body) - _POLICY_FIELDS
    if unknown:
        raise PolicyDocumentError(f"policy {name!r} has unknown fields {sorted(unknown)}")
    policy = replace(default, name=name)
    try:
        if "schedule" in body:
            policy = replace(policy, schedule=parse_schedule(_text(name, "schedule", body), tz))
        if "retain" in body:
            policy = replace(policy, retention=parse_retention(_text(name, "retain", body)))
        if "copies" in body:
            policy = replace(policy, copies=parse_copies(body["copies"]))
        if "verify" in body:
            policy = replace(policy, verify=_verify(name, body["verify"], tz))
    except (ScheduleError, RetentionError, CopyDestinationError) as error:
        raise PolicyDocumentError(f"policy {name!r}: {error}") from None
    for flag in ("no_reboot", "on_stop"):
        if flag in body:
            if not isinstance(body[flag], bool):
                raise PolicyDocumentError(f"policy {name!r}: {flag} must be true or false")
            policy = replace(policy, **{flag: body[flag]})
    return policy


def _verify(name: str, value: object, tz: ZoneInfo) -> Schedule | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PolicyDocumentError(f'policy {name!r}: verify must be a schedule expression, "off" or null')
    if value.strip().lower() in NO_VERIFY_WORDS:
        return None
    return parse_schedule(value, tz)


def _text(name: str, key: str, body: dict[str, object]) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise PolicyDocumentError(f"policy {name!r}: {key} must be a string")
    return value


def resolve_policy(tags: Mapping[str, str], keys: TagKeys, catalog: PolicyCatalog) -> Policy | None:
    """The effective policy of an instance, or None when it is not opted in. Raises InvalidTag."""
    raw = tags.get(keys.opt_in)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in FALSE_WORDS:
        return None
    policy = _opt_in_policy(keys.opt_in, raw, value, catalog)
    return _Overrides(tags, keys, catalog).apply(policy)


def _opt_in_policy(tag: str, raw: str, value: str, catalog: PolicyCatalog) -> Policy:
    if value in OPT_IN_DEFAULT_WORDS:
        return catalog.default
    if not value:
        raise InvalidTag(tag, raw, "empty value: use true, false or a policy name")
    if catalog.document_error is not None:
        raise InvalidTag(tag, raw, f"named policies are unavailable: {catalog.document_error}")
    if value not in catalog.named:
        known = ", ".join(sorted(catalog.named)) or "none defined"
        raise InvalidTag(tag, raw, f"unknown policy {value!r} (known: {known})")
    return catalog.named[value]


@dataclass(frozen=True)
class _Overrides:
    tags: Mapping[str, str]
    keys: TagKeys
    catalog: PolicyCatalog

    def apply(self, policy: Policy) -> Policy:
        schedule_text = self.tags.get(self.keys.schedule)
        if schedule_text is not None:
            policy = replace(policy, schedule=self._schedule(schedule_text))
        retain_text = self.tags.get(self.keys.retain)
        if retain_text is not None:
            try:
                policy = replace(policy, retention=parse_retention(retain_text))
            except RetentionError as error:
                raise InvalidTag(self.keys.retain, retain_text, str(error)) from None
        no_reboot = self.tags.get(self.keys.no_reboot)
        if no_reboot is not None:
            policy = replace(policy, no_reboot=parse_flag(self.keys.no_reboot, no_reboot))
        on_stop = self.tags.get(self.keys.on_stop)
        if on_stop is not None:
            policy = replace(policy, on_stop=parse_flag(self.keys.on_stop, on_stop))
        copy_to = self.tags.get(self.keys.copy_to)
        if copy_to is not None:
            try:
                policy = replace(policy, copies=with_regions(policy.copies, parse_copy_to(copy_to)))
            except CopyDestinationError as error:
                raise InvalidTag(self.keys.copy_to, copy_to, str(error)) from None
        return policy

    def _schedule(self, text: str) -> Schedule:
        try:
            return parse_schedule(text, self.catalog.time_zone)
        except ScheduleError as error:
            raise InvalidTag(self.keys.schedule, text, str(error)) from None


def parse_flag(tag: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise InvalidTag(tag, raw, "expected true or false")
