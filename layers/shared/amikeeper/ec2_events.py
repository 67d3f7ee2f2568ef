"""Parser models of the two EC2 events amikeeper's rules deliver, and the decorator that applies them.

Both are EventBridge envelopes (Powertools' ``EventBridgeModel``) with a typed ``detail``. The state is
kept as free text on purpose: a state EC2 adds tomorrow is not a malformed event, it is one amikeeper
does not act on, and the domain code says so in its own words.

Every model forbids keys it does not know, in the envelope and in the detail: a field AWS adds to an
event is a change of its shape that someone should look at, not something to guess about.

An event that does not fit its model is answered, not raised: raising would make EventBridge's
asynchronous invocation retry an event that can never succeed. :func:`parse_or_ignore` logs one ERROR
line naming the event and what is wrong with it, tells the handler (which counts it in the metric
``MalformedEvents``, so that a change of AWS's event shape is loud), and the invocation ends without any
side effect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
AMI_STATE_CHANGE = "EC2 AMI State Change"
INSTANCE_ID_PATTERN = r"^i-[0-9a-f]{8,17}$"
IMAGE_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"
_REASON_LIMIT = 300


class InstanceStateDetail(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID_PATTERN)
    state: str = Field(min_length=1, max_length=64)


class InstanceStateChange(EventBridgeModel):
    """``EC2 Instance State-change Notification``; states pending, running, stopping, stopped,
    shutting-down and terminated (the rule only delivers the last three)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    id: str = Field(min_length=1)  # the idempotency key of the event
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Instance State-change Notification"] = Field(alias="detail-type")
    # The slot of an on-stop backup is this time, so it must be an instant, never a local wall time.
    time: AwareDatetime
    detail: InstanceStateDetail


class AmiStateDetail(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    image_id: str = Field(alias="ImageId", pattern=IMAGE_ID_PATTERN)
    state: str = Field(alias="State", min_length=1, max_length=64)
    error_message: str = Field(default="", alias="ErrorMessage")
    request_id: str | None = Field(default=None, alias="RequestId")


class AmiStateChange(EventBridgeModel):
    """``EC2 AMI State Change``; states available, failed, deregistered and disabled (the rule only
    delivers the first two)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    id: str = Field(min_length=1)
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 AMI State Change"] = Field(alias="detail-type")
    time: AwareDatetime
    detail: AmiStateDetail


EventT = TypeVar("EventT", bound=BaseModel)
ParsedHandler = Callable[[EventT, LambdaContext], dict[str, Any]]
RawHandler = Callable[[Any, LambdaContext], dict[str, Any]]


def parse_or_ignore(
    model: type[EventT], logger: Logger, on_malformed: Callable[[str], None] = lambda reason: None
) -> Callable[[ParsedHandler[EventT]], RawHandler]:
    """Like Powertools' ``event_parser`` (it calls the same ``parse``), except that an event that fails
    the model is logged once at ERROR with the reason, reported to ``on_malformed`` (the handler counts it
    in a metric) and acknowledged instead of raised."""

    def decorate(handler: ParsedHandler[EventT]) -> RawHandler:
        @functools.wraps(handler)
        def wrapper(event: Any, context: LambdaContext) -> dict[str, Any]:
            try:
                parsed = parse(event=event, model=model)
            except ValidationError as error:
                reason = describe_validation_error(error, model)
                event_id = event.get("id") if isinstance(event, Mapping) else None
                logger.error(
                    f"ignored malformed event {event_id or '(no id)'}: not a valid {model.__name__}: {reason}",
                    extra={"event_id": event_id, "reason": reason},
                )
                on_malformed(reason)
                return {"status": "ignored", "reason": f"malformed event: {reason}"}
            return handler(parsed, context)

        return wrapper

    return decorate


def describe_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Pydantic's report on one line: ``detail.instance-id: String should match pattern ...; ...``.

    A key the model does not know reads ``unknown key 'dryRun' (allowed: scheduled_time, ...)``, the
    allowed keys being those of the (nested) model at that place when ``model`` is given.
    """
    problems = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        if problem["type"] == "extra_forbidden":
            allowed = _keys_at(model, problem["loc"][:-1]) if model is not None else ()
            listed = f" (allowed: {', '.join(allowed)})" if allowed else ""
            problems.append(f"unknown key {where!r}{listed}")
        else:
            problems.append(f"{where}: {problem['msg']}")
    text = "; ".join(problems) or str(error).replace("\n", " ")
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 3] + "..."


def _keys_at(model: type[BaseModel], path: tuple[int | str, ...]) -> tuple[str, ...]:
    """The keys (aliases where a field has one) of the model found at ``path`` inside ``model``."""
    current: object = model
    for part in path:
        found = _model_in(current)
        if found is None:
            return ()
        if isinstance(part, int):
            continue  # an index into a list or tuple of models: the model stays the same
        field = _field_named(found, part)
        if field is None:
            return ()
        current = field.annotation
    found = _model_in(current)
    if found is None:
        return ()
    return tuple(field.alias or name for name, field in found.model_fields.items())


def _field_named(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model an annotation is, or holds (``X | None``, ``tuple[X, ...]``, ``Json[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if (found := _model_in(argument)) is not None:
            return found
    return None
