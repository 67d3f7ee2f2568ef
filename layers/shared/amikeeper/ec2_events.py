"""Parser models of the two EC2 events amikeeper's rules deliver, and the decorator that applies them.

Both are EventBridge envelopes (Powertools' ``EventBridgeModel``) with a typed ``detail``. The state is
kept as free text on purpose: a state EC2 adds tomorrow is not a malformed event, it is one amikeeper
does not act on, and the domain code says so in its own words.

An event that does not fit its model is answered, not raised: raising would make EventBridge's
asynchronous invocation retry an event that can never succeed. :func:`parse_or_ignore` logs one line
naming the event and what is wrong with it, and the invocation ends without any side effect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
AMI_STATE_CHANGE = "EC2 AMI State Change"
INSTANCE_ID_PATTERN = r"^i-[0-9a-f]{8,17}$"
IMAGE_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"
_REASON_LIMIT = 300


class InstanceStateDetail(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID_PATTERN)
    state: str = Field(min_length=1, max_length=64)


class InstanceStateChange(EventBridgeModel):
    """``EC2 Instance State-change Notification``; states pending, running, stopping, stopped,
    shutting-down and terminated (the rule only delivers the last three)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str = Field(min_length=1)  # the idempotency key of the event
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Instance State-change Notification"] = Field(alias="detail-type")
    # The slot of an on-stop backup is this time, so it must be an instant, never a local wall time.
    time: AwareDatetime
    detail: InstanceStateDetail


class AmiStateDetail(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    image_id: str = Field(alias="ImageId", pattern=IMAGE_ID_PATTERN)
    state: str = Field(alias="State", min_length=1, max_length=64)
    error_message: str = Field(default="", alias="ErrorMessage")
    request_id: str | None = Field(default=None, alias="RequestId")


class AmiStateChange(EventBridgeModel):
    """``EC2 AMI State Change``; states available, failed, deregistered and disabled (the rule only
    delivers the first two)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str = Field(min_length=1)
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 AMI State Change"] = Field(alias="detail-type")
    time: AwareDatetime
    detail: AmiStateDetail


EventT = TypeVar("EventT", bound=BaseModel)
ParsedHandler = Callable[[EventT, LambdaContext], dict[str, Any]]
RawHandler = Callable[[Any, LambdaContext], dict[str, Any]]


def parse_or_ignore(model: type[EventT], logger: Logger) -> Callable[[ParsedHandler[EventT]], RawHandler]:
    """Like Powertools' ``event_parser`` (it calls the same ``parse``), except that an event that fails
    the model is logged once with the reason and acknowledged instead of raised."""

    def decorate(handler: ParsedHandler[EventT]) -> RawHandler:
        @functools.wraps(handler)
        def wrapper(event: Any, context: LambdaContext) -> dict[str, Any]:
            try:
                parsed = parse(event=event, model=model)
            except ValidationError as error:
                reason = describe_validation_error(error)
                event_id = event.get("id") if isinstance(event, Mapping) else None
                logger.warning(
                    f"ignored malformed event {event_id or '(no id)'}: not a valid {model.__name__}: {reason}",
                    extra={"event_id": event_id, "reason": reason},
                )
                return {"status": "ignored", "reason": f"malformed event: {reason}"}
            return handler(parsed, context)

        return wrapper

    return decorate


def describe_validation_error(error: ValidationError) -> str:
    """Pydantic's report on one line: ``detail.instance-id: String should match pattern ...; ...``."""
    problems = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        problems.append(f"{where}: {problem['msg']}")
    text = "; ".join(problems) or str(error).replace("\n", " ")
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."
