"""Parser models for the events amikeeper's handlers receive (Powertools parser / pydantic), and the
decorator that applies them to the scheduled handlers.

Every model forbids keys it does not know. A scheduled function is also invoked by hand
(``aws lambda invoke``, ``sam local invoke``), and a mistyped key must not be read as its default:
``{"dryRun": true}`` sent to retention would otherwise be a real run that deletes AMIs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Json, ValidationError

from amikeeper.ec2_events import describe_validation_error
from amikeeper.model import DeletionBatch, RegionTask, WorkItem


class ScheduledTick(BaseModel):
    """What EventBridge Scheduler sends (see the schedules' Input in template.yaml).

    Every field is optional so that an operator can also invoke a function by hand with ``{}``: the
    handler then uses the time of the invocation. Any other key is refused (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid")

    # An instant: a wall time without an offset would be read in no zone at all.
    scheduled_time: AwareDatetime | None = None
    execution_id: str = ""
    dry_run: bool = False


class WorkRecord(SqsRecordModel):
    """One SQS record of the work queue whose body is a work item."""

    model_config = ConfigDict(extra="forbid")

    body: Json[WorkItem]


BodyT = TypeVar("BodyT", bound=BaseModel)


class FifoRecord(SqsRecordModel, Generic[BodyT]):
    """One SQS record of one of the stack's FIFO queues (one message group per region)."""

    model_config = ConfigDict(extra="forbid")

    body: Json[BodyT]


class OneRecord(BaseModel, Generic[BodyT]):
    """What a FIFO queue's event source mapping delivers: one message per invocation (BatchSize 1)."""

    model_config = ConfigDict(extra="forbid")

    Records: list[FifoRecord[BodyT]] = Field(min_length=1, max_length=1)


# The planner's region tasks and retention's deletion batches.
RegionTaskEvent = OneRecord[RegionTask]
DeletionBatchEvent = OneRecord[DeletionBatch]


class InvalidEventError(ValueError):
    """The event of a scheduled or manual invocation does not fit its model; the message says why, on one
    line (``unknown key 'dryRun' (allowed: scheduled_time, execution_id, dry_run)``)."""


TickT = TypeVar("TickT", bound=BaseModel)
ResultT = TypeVar("ResultT")


def parse_or_refuse(
    model: type[TickT],
) -> Callable[[Callable[[TickT, LambdaContext], ResultT]], Callable[[Any, LambdaContext], ResultT]]:
    """Like Powertools' ``event_parser`` (it calls the same ``parse``), except that an event that fails the
    model raises :class:`InvalidEventError` whose message is one line naming every problem, before the
    handler runs: the caller of ``aws lambda invoke`` sees exactly what to fix, and nothing was done."""

    def decorate(
        handler: Callable[[TickT, LambdaContext], ResultT],
    ) -> Callable[[Any, LambdaContext], ResultT]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: LambdaContext) -> ResultT:
            try:
                tick = parse(event=event, model=model)
            except ValidationError as error:
                raise InvalidEventError(describe_validation_error(error, model)) from None
            return handler(tick, context)

        return wrapper

    return decorate
