"""Parser models for the events amikeeper's handlers receive (Powertools parser / pydantic)."""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Json

from amikeeper.work import WorkItem


class ScheduledTick(BaseModel):
    """What EventBridge Scheduler sends (see the schedules' Input in template.yaml).

    Every field is optional so that an operator can also invoke a function by hand with ``{}``: the
    handler then uses the time of the invocation.
    """

    model_config = ConfigDict(extra="ignore")

    scheduled_time: datetime | None = None
    execution_id: str = ""
    dry_run: bool = False


class WorkRecord(SqsRecordModel):
    body: Json[WorkItem]
