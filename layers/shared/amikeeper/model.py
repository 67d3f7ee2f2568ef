"""amikeeper's vocabulary: the things every module talks about, defined once. Pure.

Instances, AMIs (``Image``) and snapshots as EC2 describes them; the stack (its name and tag keys); the
work item a worker turns into one CreateImage; the tag keys amikeeper writes. Gateways build these from
EC2's answers, pure modules decide on them, orchestration passes them along.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from amikeeper.naming import TRIGGERS, InvalidSlotError, Trigger, parse_slot

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import TagTypeDef

__all__ = [
    "GONE_SINCE",
    "INSTANCE_ID",
    "LAUNCH_TAGS",
    "MANAGED_BY",
    "POLICY",
    "RETAIN",
    "SLOT",
    "TRIGGER",
    "TRIGGERS",
    "GroupFacts",
    "Image",
    "Instance",
    "InstanceHealth",
    "LaunchConfig",
    "Snapshot",
    "Stack",
    "Subnet",
    "TagKeys",
    "Trigger",
    "WorkItem",
    "tag_map",
]

# --- the tags amikeeper writes on every AMI and snapshot (SPEC §5) --------------------------------------
MANAGED_BY = "amikeeper:managed-by"
INSTANCE_ID = "amikeeper:instance-id"
POLICY = "amikeeper:policy"
TRIGGER = "amikeeper:trigger"
SLOT = "amikeeper:slot"
# The retention expression in force when the backup was made: it governs the backup once its instance is
# gone or opted out, when the instance's own tags can no longer say.
RETAIN = "amikeeper:retain"
# When retention first found the instance gone, on its newest backup (OrphanGraceDays counts from it).
GONE_SINCE = "amikeeper:instance-gone-since"
# When a restore drill last brought this backup up and saw its status checks pass (UTC, slot format):
# written by the restore drills, read by the operator CLI's `status`.
RESTORE_VERIFIED = "amikeeper:restore-verified"
# The last restore drill of this backup, whatever it found: "verified <time> running=<s>s ok=<s>s" or
# "failed <time> <why>". Its time is when the instance's verify schedule was last served, so a failed
# drill is not retried (and re-notified) before the next verify slot.
RESTORE_DRILL = "amikeeper:restore-drill"
# On a drill instance: the stack that launched it (what the drill role may terminate), and its backup.
DRILL = "amikeeper:drill"
DRILL_OF = "amikeeper:drill-of"
# The instance's launch configuration, recorded on each backup by CreateImage itself (no extra call) so
# that `amikeeper restore` can rebuild the instance after it is gone. A key that is absent means "not
# known" (an older backup, or a value longer than a tag holds); an empty value means the instance had none.
LAUNCH_TYPE = "amikeeper:launch-type"
LAUNCH_SUBNET = "amikeeper:launch-subnet"
LAUNCH_AZ = "amikeeper:launch-az"
LAUNCH_SECURITY_GROUPS = "amikeeper:launch-security-groups"  # comma-separated group ids
LAUNCH_PROFILE = "amikeeper:launch-profile"  # the instance profile's ARN
LAUNCH_KEY = "amikeeper:launch-key"
LAUNCH_EBS_OPTIMIZED = "amikeeper:launch-ebs-optimized"  # "true" or "false"
LAUNCH_TAGS = (
    LAUNCH_TYPE,
    LAUNCH_SUBNET,
    LAUNCH_AZ,
    LAUNCH_SECURITY_GROUPS,
    LAUNCH_PROFILE,
    LAUNCH_KEY,
    LAUNCH_EBS_OPTIMIZED,
)
# Copies (SPEC §9). On a backup: the keys of the destinations it is to be copied to (comma-separated, see
# amikeeper.copy_destinations), written by CreateImage. On a copy, written by CopyImage: the source AMI,
# its region and account. On a backup whose copy to a destination completed: COPIED_PREFIX + the
# destination's key, valued with the copy's id, so that a copy retention later deletes is never made again
# and the report and the CLI see every copy from the source's own listing.
COPY_TO = "amikeeper:copy-to"
COPY_OF = "amikeeper:copy-of"
SOURCE_REGION = "amikeeper:source-region"
SOURCE_ACCOUNT = "amikeeper:source-account"
COPIED_PREFIX = "amikeeper:copied:"

# On an instance `amikeeper restore` launched: the backup it came from.
RESTORED_FROM = "amikeeper:restored-from"

TERMINATED = "terminated"


def tag_map(tags: Iterable[TagTypeDef] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or ()}


@dataclass(frozen=True)
class TagKeys:
    """The instance and AMI tag keys of SPEC §1, all derived from the stack's OptInTagKey."""

    opt_in: str

    @property
    def schedule(self) -> str:
        return f"{self.opt_in}:Schedule"

    @property
    def retain(self) -> str:
        return f"{self.opt_in}:Retain"

    @property
    def no_reboot(self) -> str:
        return f"{self.opt_in}:NoReboot"

    @property
    def on_stop(self) -> str:
        return f"{self.opt_in}:OnStop"

    @property
    def hold(self) -> str:
        return f"{self.opt_in}:Hold"

    @property
    def copy_to(self) -> str:
        return f"{self.opt_in}:CopyTo"


@dataclass(frozen=True)
class Stack:
    """What every backup needs to know about the deployment."""

    name: str
    tag_keys: TagKeys
    copy_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchConfig:
    """What RunInstances needs to launch a copy of an instance, as DescribeInstances reports it."""

    instance_type: str
    subnet_id: str | None = None
    availability_zone: str | None = None
    security_group_ids: tuple[str, ...] = ()
    instance_profile_arn: str | None = None
    key_name: str | None = None
    ebs_optimized: bool = False


@dataclass(frozen=True)
class Instance:
    """An EC2 instance: its state and tags, when it was launched, from which AMI and how."""

    instance_id: str
    state: str
    tags: Mapping[str, str] = field(default_factory=dict)
    launch_time: datetime | None = None
    image_id: str | None = None
    # None when the instance was built by hand (tests) rather than read from DescribeInstances.
    launch: LaunchConfig | None = None

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")

    @property
    def gone(self) -> bool:
        return self.state == TERMINATED


@dataclass(frozen=True)
class InstanceHealth:
    """An instance's state and its two status checks (`ok`, `initializing`, `impaired`, …), each with the
    name of the detail that is not `passed` when there is one."""

    state: str
    instance_check: str
    system_check: str
    instance_detail: str = ""
    system_detail: str = ""


@dataclass(frozen=True)
class Subnet:
    subnet_id: str
    vpc_id: str
    availability_zone: str


@dataclass(frozen=True)
class GroupFacts:
    group_id: str
    vpc_id: str
    ingress_rules: int


@dataclass(frozen=True)
class Image:
    """An AMI, with the tags amikeeper wrote on it."""

    image_id: str
    name: str
    state: str
    created: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    state_reason: str | None = None
    owner_id: str | None = None  # the account, as DescribeImages reports it
    architecture: str | None = None
    devices: tuple[str, ...] = ()  # the device names of its EBS mappings

    @property
    def instance_id(self) -> str | None:
        return self.tags.get(INSTANCE_ID)

    @property
    def policy(self) -> str | None:
        return self.tags.get(POLICY)

    @property
    def trigger(self) -> str | None:
        return self.tags.get(TRIGGER)

    @property
    def slot(self) -> datetime | None:
        text = self.tags.get(SLOT)
        if text is None:
            return None
        try:
            return parse_slot(text)
        except InvalidSlotError:
            return None

    @property
    def copy_of(self) -> str | None:
        """The source AMI when this is a disaster-recovery copy, else None."""
        return self.tags.get(COPY_OF)

    @property
    def copies(self) -> dict[str, str]:
        """Destination key -> copy id, for each completed copy of this backup."""
        return {
            key[len(COPIED_PREFIX) :]: value
            for key, value in self.tags.items()
            if key.startswith(COPIED_PREFIX)
        }

    @property
    def backup_time(self) -> datetime:
        """When the backup counts as taken: its slot, which is exact and replayable, else its creation."""
        return self.slot or self.created


_IMAGE_IN_DESCRIPTION = re.compile(r"\bfor (ami-[0-9a-f]{8,17})\b")


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    description: str
    started: datetime
    state: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_id(self) -> str | None:
        """The AMI CreateImage made it for: EC2 writes 'Created by CreateImage(i-…) for ami-… …'."""
        match = _IMAGE_IN_DESCRIPTION.search(self.description)
        return match.group(1) if match else None


class WorkItem(BaseModel):
    """One instance to back up, as the planner (or an event) hands it to the worker through SQS.

    It carries everything CreateImage needs, so a worker spends exactly one EC2 call per instance.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    region: str = Field(min_length=1)
    instance_id: str = Field(pattern=r"^i-[0-9a-f]{8,17}$")
    image_name: str = Field(min_length=3, max_length=128)
    description: str = Field(max_length=255)
    no_reboot: bool
    trigger: Trigger
    slot: datetime
    policy: str = Field(min_length=1)
    tags: dict[str, str]

    def to_message(self) -> str:
        return self.model_dump_json()


class RegionTask(BaseModel):
    """One region of one scheduler tick, as the tick hands it to the region planner through SQS.

    The tick time travels with it, so a task planned late (a backlog, a retry) decides "due" for the
    tick it belongs to, and the same tick is planned the same way however often it is delivered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    region: str = Field(min_length=1)
    scheduled_time: AwareDatetime
    execution_id: str = ""

    def to_message(self) -> str:
        return self.model_dump_json()

    @property
    def deduplication_id(self) -> str:
        """The same region of the same tick is one task, however often the tick is delivered or retried."""
        return f"{self.region}#{self.scheduled_time.isoformat()}"


class Deletion(BaseModel):
    """One thing retention decided to delete: an AMI (with the snapshots it owns that are this stack's)
    or an orphan snapshot. It travels in a :class:`DeletionBatch` from the retention run to the deleter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["image", "snapshot"]
    resource_id: str = Field(pattern=r"^(ami|snap)-[0-9a-f]{8,17}$")
    # Why: an expired or failed AMI, or an orphan snapshot.
    reason: Literal["expired", "failed", "orphan"]
    snapshot_ids: tuple[str, ...] = ()


class DeletionBatch(BaseModel):
    """Deletions of one region, planned by one retention run, for the deleter to carry out at EC2's pace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    region: str = Field(min_length=1)
    scheduled_time: AwareDatetime
    sequence: int = Field(ge=0)
    deletions: tuple[Deletion, ...] = Field(min_length=1)

    def to_message(self) -> str:
        return self.model_dump_json()

    @property
    def deduplication_id(self) -> str:
        """A batch the run sends twice (a retried run plans the same batches) is deleted once."""
        return f"{self.region}#{self.scheduled_time.isoformat()}#{self.sequence}"


class CopyTask(BaseModel):
    """One backup to copy to one destination (SPEC §9), as it travels through the copy queue.

    ``start`` asks for the copy; ``check`` looks at a started copy until it is available or failed. The
    copier sends the task on to itself with a delay (SQS DelaySeconds) for each next look, so that no
    function ever waits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    source_region: str = Field(min_length=1)
    source_image_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")
    destination: str = Field(pattern=r"^(\d{12}/)?[a-z]{2}(-[a-z]+)+-\d+$")
    stage: Literal["start", "check"] = "start"
    copy_image_id: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]{8,17}$")
    started_at: AwareDatetime | None = None
    # How many times this stage has waited: the next delay grows with it.
    waits: int = Field(default=0, ge=0)

    def to_message(self) -> str:
        return self.model_dump_json()


class DrillTask(BaseModel):
    """One restore drill being looked at (SPEC §10), as it travels through the drill queue: the drill
    checker sends it on to itself with a delay for each next look, so that no function ever waits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    region: str = Field(min_length=1)
    instance_id: str = Field(pattern=r"^i-[0-9a-f]{8,17}$")  # the backed-up instance
    image_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")  # its backup under test
    drill_instance_id: str = Field(pattern=r"^i-[0-9a-f]{8,17}$")
    slot: AwareDatetime  # the verify slot the drill serves
    launched_at: AwareDatetime
    running_at: AwareDatetime | None = None

    def to_message(self) -> str:
        return self.model_dump_json()
