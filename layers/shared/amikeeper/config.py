"""The stack's configuration, parsed once at cold start into one validated object.

Handlers call :func:`load_settings` at import time; nothing else in the package reads ``os.environ``.
A missing or malformed variable fails the cold start with a message that names the variable, so a
broken deployment is loud on its first invocation instead of quietly backing up nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amikeeper.model import Stack, TagKeys
from amikeeper.retention_rules import RetentionError, parse_retention
from amikeeper.schedules import ScheduleError, parse_schedule

PREFIX = "AMIKEEPER_"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_TAG_KEY = re.compile(r"^[^\s:][^:]{0,100}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    stack_name: str
    opt_in_tag_key: str
    default_schedule: str
    default_retention: str
    planner_rate_minutes: int
    regions: tuple[str, ...]
    time_zone: ZoneInfo
    copy_tags: tuple[str, ...]
    policies_parameter: str
    work_queue_url: str
    planner_task_queue_url: str
    delete_queue_url: str
    dead_letter_queue_url: str
    topic_arn: str
    orphan_grace_days: int
    pending_timeout_hours: int
    idempotency_table: str
    home_region: str
    copy_queue_url: str
    # The vault account's role (vault/template.yaml) and its external id; None when no vault is set up.
    vault_role_arn: str | None
    vault_external_id: str | None
    # How much older than its schedule's interval an instance's newest copy may be before the report flags it.
    copy_allowance_hours: int
    # Restore drills (SPEC §10): the stack's default verify schedule (None: only policies that name one),
    # the isolated subnets and no-ingress groups drills launch into (at most one pair per region), the type
    # override, and the caps that bound what drills cost.
    verify_schedule: str | None
    drill_queue_url: str
    drill_subnet_ids: tuple[str, ...]
    drill_security_group_ids: tuple[str, ...]
    drill_instance_type: str | None
    max_concurrent_drills: int
    drill_minutes_per_day: int
    drill_max_minutes: int

    @property
    def tag_keys(self) -> TagKeys:
        return TagKeys(self.opt_in_tag_key)

    @property
    def stack(self) -> Stack:
        return Stack(self.stack_name, self.tag_keys, self.copy_tags)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse and validate every AMIKEEPER_* variable (and AWS_REGION, set by Lambda)."""
    reader = _Reader(environ)
    home_region = reader.region("AWS_REGION", environ.get("AWS_REGION", "").strip())
    opt_in = reader.required("OPT_IN_TAG_KEY")
    if not _TAG_KEY.match(opt_in):
        raise ConfigError(PREFIX + "OPT_IN_TAG_KEY", f"{opt_in!r} is not a usable tag key (no ':' or spaces)")
    time_zone = reader.zone("TIME_ZONE")
    vault_role_arn = reader.role_arn("VAULT_ROLE_ARN")
    vault_external_id = reader.raw("VAULT_EXTERNAL_ID") or None
    if vault_role_arn and not vault_external_id:
        raise ConfigError(PREFIX + "VAULT_EXTERNAL_ID", "is missing: the vault role is only assumed with it")
    return Settings(
        stack_name=reader.required("STACK_NAME"),
        opt_in_tag_key=opt_in,
        default_schedule=reader.schedule("DEFAULT_SCHEDULE", time_zone),
        default_retention=reader.retention("DEFAULT_RETENTION"),
        planner_rate_minutes=reader.integer("PLANNER_RATE_MINUTES", minimum=1, maximum=1440),
        regions=reader.regions("REGIONS", default=home_region),
        time_zone=time_zone,
        copy_tags=reader.listing("COPY_TAGS"),
        policies_parameter=reader.required("POLICIES_PARAMETER"),
        work_queue_url=reader.required("WORK_QUEUE_URL"),
        planner_task_queue_url=reader.required("PLANNER_TASK_QUEUE_URL"),
        delete_queue_url=reader.required("DELETE_QUEUE_URL"),
        dead_letter_queue_url=reader.required("DEAD_LETTER_QUEUE_URL"),
        topic_arn=reader.required("TOPIC_ARN"),
        orphan_grace_days=reader.integer("ORPHAN_GRACE_DAYS", minimum=0, maximum=3650),
        pending_timeout_hours=reader.integer("PENDING_TIMEOUT_HOURS", minimum=1, maximum=720),
        idempotency_table=reader.required("IDEMPOTENCY_TABLE"),
        home_region=home_region,
        copy_queue_url=reader.required("COPY_QUEUE_URL"),
        vault_role_arn=vault_role_arn,
        vault_external_id=vault_external_id,
        copy_allowance_hours=reader.integer("COPY_ALLOWANCE_HOURS", minimum=0, maximum=720),
        verify_schedule=reader.optional_schedule("VERIFY_SCHEDULE", time_zone),
        drill_queue_url=reader.required("DRILL_QUEUE_URL"),
        drill_subnet_ids=reader.ids("DRILL_SUBNET_IDS", _SUBNET_ID, "a subnet"),
        drill_security_group_ids=reader.ids("DRILL_SECURITY_GROUP_IDS", _GROUP_ID, "a security group"),
        drill_instance_type=reader.raw("DRILL_INSTANCE_TYPE") or None,
        max_concurrent_drills=reader.integer("MAX_CONCURRENT_DRILLS", minimum=1, maximum=100),
        drill_minutes_per_day=reader.integer("DRILL_MINUTES_PER_DAY", minimum=0, maximum=100_000),
        drill_max_minutes=reader.integer("DRILL_MAX_MINUTES", minimum=5, maximum=720),
    )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str:
        return self._environ.get(PREFIX + name, "").strip()

    def required(self, name: str) -> str:
        value = self.raw(name)
        if not value:
            raise ConfigError(PREFIX + name, "is missing or empty")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int:
        text = self.required(name)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(PREFIX + name, f"{text!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(PREFIX + name, f"{value} is outside {minimum}..{maximum}")
        return value

    def schedule(self, name: str, time_zone: ZoneInfo) -> str:
        text = self.required(name)
        try:
            parse_schedule(text, time_zone)
        except ScheduleError as error:
            raise ConfigError(PREFIX + name, str(error)) from None
        return text

    def optional_schedule(self, name: str, time_zone: ZoneInfo) -> str | None:
        return self.schedule(name, time_zone) if self.raw(name) else None

    def ids(self, name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        listed = self.listing(name)
        for item in listed:
            if not pattern.match(item):
                raise ConfigError(PREFIX + name, f"{item!r} is not {what} id")
        return listed

    def retention(self, name: str) -> str:
        text = self.required(name)
        try:
            parse_retention(text)
        except RetentionError as error:
            raise ConfigError(PREFIX + name, str(error)) from None
        return text

    def role_arn(self, name: str) -> str | None:
        text = self.raw(name)
        if text and not _ROLE_ARN.match(text):
            raise ConfigError(PREFIX + name, f"{text!r} is not an IAM role ARN")
        return text or None

    def zone(self, name: str) -> ZoneInfo:
        text = self.raw(name) or "UTC"
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(PREFIX + name, f"{text!r} is not an IANA time zone name") from None

    def listing(self, name: str) -> tuple[str, ...]:
        items = (item.strip() for item in self.raw(name).split(","))
        return tuple(dict.fromkeys(item for item in items if item))

    def region(self, variable: str, text: str) -> str:
        if not _REGION.match(text):
            raise ConfigError(variable, f"{text!r} is not an AWS region name")
        return text

    def regions(self, name: str, *, default: str) -> tuple[str, ...]:
        listed = self.listing(name)
        return tuple(self.region(PREFIX + name, region) for region in listed) or (default,)
