"""The work item: one instance to back up, as the planner (or an event) hands it to the worker through SQS.

It carries everything CreateImage needs, so a worker spends exactly one EC2 call per instance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from amikeeper.naming import Trigger

MANAGED_BY = "amikeeper:managed-by"
INSTANCE_ID = "amikeeper:instance-id"
POLICY = "amikeeper:policy"
TRIGGER = "amikeeper:trigger"
SLOT = "amikeeper:slot"
# The retention expression in force when the backup was made: it governs the backup once its instance is
# gone or opted out, when the instance's own tags can no longer say.
RETAIN = "amikeeper:retain"


class WorkItem(BaseModel):
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
