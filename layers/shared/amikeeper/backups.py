"""Rules about an instance's backups that retention, the termination notice and the planner share. Pure.

- which backup is the newest one that can be restored from;
- whether an AMI is under legal hold;
- which retention governs the backups of an instance that is gone or no longer opted in: the expression
  recorded on its newest backup (``amikeeper:retain``), so a ``Backup:Retain`` override outlives the
  instance and its tags;
- which tags a backup carries (SPEC §5), within EC2's limit of 50 tags a resource, among them the
  instance's launch configuration, and how a restore reads that configuration back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from amikeeper.copy_destinations import encode_keys
from amikeeper.model import (
    COPY_TO,
    INSTANCE_ID,
    LAUNCH_AZ,
    LAUNCH_EBS_OPTIMIZED,
    LAUNCH_KEY,
    LAUNCH_PROFILE,
    LAUNCH_SECURITY_GROUPS,
    LAUNCH_SUBNET,
    LAUNCH_TYPE,
    MANAGED_BY,
    POLICY,
    RETAIN,
    SLOT,
    TRIGGER,
    Image,
    Instance,
    LaunchConfig,
    Stack,
    WorkItem,
)
from amikeeper.naming import Trigger, ami_description, ami_name, format_slot
from amikeeper.policies import DEFAULT_POLICY, TRUE_WORDS, Policy, PolicyCatalog
from amikeeper.retention_rules import RetentionError, RetentionRules, parse_retention

HOLD_SUFFIX = ":hold"
# EC2 allows 50 tags on an AMI or snapshot. amikeeper's own keys (the launch configuration and copy
# destinations among them), the ones it adds later (gone-since, restore-verified, one per completed copy),
# an operator's hold and room for the keys of coming features are reserved; the copied ones share the rest.
EC2_TAG_LIMIT = 50
RESERVED_TAGS = 25
MAX_COPIED_TAGS = EC2_TAG_LIMIT - RESERVED_TAGS
TAG_VALUE_MAX = 256


def newest(images: Iterable[Image]) -> Image | None:
    return max(images, key=lambda image: (image.backup_time, image.image_id), default=None)


def newest_available(images: Iterable[Image]) -> Image | None:
    return newest(image for image in images if image.state == "available")


def is_held(tags: Mapping[str, str]) -> bool:
    """A legal hold: ``<OptInTagKey>:Hold`` = true (yes, on), under the current opt-in key or any earlier one.

    Any key ending in ``:Hold`` counts, so that changing the stack's OptInTagKey never releases a hold
    placed under the old key. The mistake this allows is keeping an AMI, never deleting one.
    """
    return any(
        key.strip().lower().endswith(HOLD_SUFFIX) and value.strip().lower() in TRUE_WORDS
        for key, value in tags.items()
    )


@dataclass(frozen=True)
class RecordedRetention:
    """The retention that governs an instance's backups once its own tags no longer can."""

    rules: RetentionRules | None  # None: it cannot be known, the backups are left alone
    policy: str | None
    source: str  # how it was found, for people: "recorded on ami-…", "policy gold", …
    notes: tuple[str, ...] = ()


def recorded_retention(images: Sequence[Image], catalog: PolicyCatalog) -> RecordedRetention:
    """The expression recorded on the newest backup; for backups made before it was recorded, the
    policy recorded there (or the default one when that policy is gone)."""
    latest = newest(images)
    if latest is None:
        return RecordedRetention(catalog.default.retention, DEFAULT_POLICY, "the default policy")
    policy = (latest.tags.get(POLICY) or "").strip().lower() or None
    expression = latest.tags.get(RETAIN)
    notes: list[str] = []
    if expression is not None:
        try:
            return RecordedRetention(parse_retention(expression), policy, f"recorded on {latest.image_id}")
        except RetentionError as error:
            notes.append(f"retention recorded on {latest.image_id} is unreadable ({error})")
    if policy is None:
        notes.append(f"no policy recorded on {latest.image_id}; the default policy applies")
        return RecordedRetention(
            catalog.default.retention, DEFAULT_POLICY, "the default policy", tuple(notes)
        )
    if policy in catalog.named:
        return RecordedRetention(catalog.named[policy].retention, policy, f"policy {policy}", tuple(notes))
    if policy != DEFAULT_POLICY and catalog.document_error is not None:
        notes.append(
            f"left alone: its recorded policy {policy!r} cannot be read "
            f"(named policies unavailable: {catalog.document_error})"
        )
        return RecordedRetention(None, policy, "unknown", tuple(notes))
    if policy != DEFAULT_POLICY:
        notes.append(f"recorded policy {policy!r} no longer exists; the default policy applies")
    return RecordedRetention(catalog.default.retention, DEFAULT_POLICY, "the default policy", tuple(notes))


@dataclass(frozen=True)
class BackupTags:
    tags: dict[str, str]
    dropped: tuple[str, ...] = ()  # copied keys left out because the AMI has no room for them


def backup_tags(
    instance_tags: Mapping[str, str],
    copy_tags: Sequence[str],
    *,
    stack_name: str,
    instance_id: str,
    policy: Policy,
    trigger: Trigger,
    slot: datetime,
    launch: LaunchConfig | None = None,
) -> BackupTags:
    """SPEC §5: the instance's Name and CopyTags (in that order, at most MAX_COPIED_TAGS, values cut to
    EC2's 256 characters), then amikeeper's own keys (the launch configuration among them), which always
    fit and always win."""
    own = {
        MANAGED_BY: stack_name,
        INSTANCE_ID: instance_id,
        POLICY: policy.name,
        TRIGGER: trigger,
        SLOT: format_slot(slot),
        RETAIN: str(policy.retention),
    } | (launch_tags(launch) if launch is not None else {})
    if policy.copies:
        own[COPY_TO] = encode_keys(policy.copies)
    wanted = [key for key in dict.fromkeys(["Name", *copy_tags]) if _copyable(key, instance_tags, own)]
    copied = {key: instance_tags[key][:TAG_VALUE_MAX] for key in wanted[:MAX_COPIED_TAGS]}
    return BackupTags(copied | own, tuple(wanted[MAX_COPIED_TAGS:]))


def launch_tags(launch: LaunchConfig) -> dict[str, str]:
    """The launch configuration as tags; "" records that the instance had none.

    A value longer than a tag holds is left out rather than cut: a cut security-group list or profile
    ARN would restore a different machine, a missing one makes the restore say it cannot know.
    """
    values = {
        LAUNCH_TYPE: launch.instance_type,
        LAUNCH_SUBNET: launch.subnet_id or "",
        LAUNCH_AZ: launch.availability_zone or "",
        LAUNCH_SECURITY_GROUPS: ",".join(launch.security_group_ids),
        LAUNCH_PROFILE: launch.instance_profile_arn or "",
        LAUNCH_KEY: launch.key_name or "",
        LAUNCH_EBS_OPTIMIZED: "true" if launch.ebs_optimized else "false",
    }
    return {key: value for key, value in values.items() if len(value) <= TAG_VALUE_MAX}


@dataclass(frozen=True)
class RecordedLaunch:
    """A backup's launch configuration as its tags record it; ``unknown`` names what they do not say."""

    config: LaunchConfig
    unknown: tuple[str, ...]


def recorded_launch(tags: Mapping[str, str]) -> RecordedLaunch:
    """What launch_tags wrote, read back; a missing key is unknown, not empty."""
    unknown = tuple(
        key
        for key in (LAUNCH_TYPE, LAUNCH_SUBNET, LAUNCH_SECURITY_GROUPS, LAUNCH_PROFILE, LAUNCH_KEY)
        if key not in tags
    )
    groups = tags.get(LAUNCH_SECURITY_GROUPS, "")
    config = LaunchConfig(
        instance_type=tags.get(LAUNCH_TYPE, ""),
        subnet_id=tags.get(LAUNCH_SUBNET) or None,
        availability_zone=tags.get(LAUNCH_AZ) or None,
        security_group_ids=tuple(group for group in groups.split(",") if group),
        instance_profile_arn=tags.get(LAUNCH_PROFILE) or None,
        key_name=tags.get(LAUNCH_KEY) or None,
        ebs_optimized=tags.get(LAUNCH_EBS_OPTIMIZED, "false") == "true",
    )
    return RecordedLaunch(config, unknown)


def _copyable(key: str, instance_tags: Mapping[str, str], own: Mapping[str, str]) -> bool:
    return key in instance_tags and key not in own and not key.lower().startswith("aws:")


def build_work_item(
    instance: Instance,
    policy: Policy,
    *,
    region: str,
    stack: Stack,
    trigger: Trigger,
    slot: datetime,
    attempt: int = 0,
    tags: BackupTags | None = None,
) -> WorkItem:
    """The work item of one backup; ``tags`` when the caller has already worked them out."""
    tags = tags or tags_of(instance, policy, stack, trigger, slot)
    return WorkItem(
        region=region,
        instance_id=instance.instance_id,
        image_name=ami_name(stack.name, instance.instance_id, trigger, slot, attempt),
        description=ami_description(instance.name, instance.instance_id, trigger, slot),
        no_reboot=policy.no_reboot,
        trigger=trigger,
        slot=slot,
        policy=policy.name,
        tags=tags.tags,
    )


def tags_of(instance: Instance, policy: Policy, stack: Stack, trigger: Trigger, slot: datetime) -> BackupTags:
    return backup_tags(
        instance.tags,
        stack.copy_tags,
        stack_name=stack.name,
        instance_id=instance.instance_id,
        policy=policy,
        trigger=trigger,
        slot=slot,
        launch=instance.launch,
    )
