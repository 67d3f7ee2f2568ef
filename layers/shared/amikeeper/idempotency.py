"""At-most-once effects for events EventBridge may deliver more than once (Powertools idempotency).

Two guards share the stack's DynamoDB table (partition key ``id``, TTL attribute ``expiration``):

- :meth:`Idempotency.once_per_event` wraps a handler that takes a parsed EventBridge event. Its key is
  ``<function name>#event#<md5 of the event id>``, so a redelivered event returns the first delivery's
  answer and sends nothing.
- :meth:`Idempotency.once_per_key` runs one action at most once per business key, across events, under
  ``<function name>#<purpose>#<md5 of the key>``. A termination produces two events (``shutting-down``,
  then ``terminated``) with different ids; keyed on the instance, people still get one notice.

A failing action leaves no record behind (Powertools deletes it), so EventBridge's retry can succeed.
The in-progress lock of either guard expires with the invocation's remaining time, so a timed-out
invocation never blocks the retries for the whole record lifetime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# EventBridge retries a failed asynchronous delivery for up to 24 hours; remembering an event for as
# long covers every redelivery, and DynamoDB's TTL then removes the record for free.
EVENT_MEMORY = timedelta(days=1)
# Instance ids are never reused, so a termination key could be kept forever; a week is far longer than
# the minutes between an instance's shutting-down and terminated events, or any late redelivery.
KEY_MEMORY = timedelta(days=7)

Response = dict[str, Any]
EventHandler = Callable[[Any, LambdaContext], Response]


class OncePerKey(Protocol):
    def __call__(self, key: str, action: Callable[[], Response]) -> Response:
        """Run ``action`` unless it already ran for ``key``; either way return what it returned."""
        ...


class Idempotency:
    def __init__(self, table_name: str, dynamodb: Callable[[], DynamoDBClient], logger: Logger) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb
        self._logger = logger
        self._event_config = IdempotencyConfig(
            event_key_jmespath="id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=int(EVENT_MEMORY.total_seconds()),
            response_hook=self._log_repeated_event,
        )
        self._key_config = IdempotencyConfig(expires_after_seconds=int(KEY_MEMORY.total_seconds()))
        self._function_name = ""

    # The persistence layers (and the DynamoDB client) are made when first used, not at import: a cold
    # start of an event handler then stays well under half a second.
    @functools.cached_property
    def _event_store(self) -> DynamoDBPersistenceLayer:
        return DynamoDBPersistenceLayer(table_name=self._table_name, boto3_client=self._dynamodb())

    @functools.cached_property
    def _key_store(self) -> DynamoDBPersistenceLayer:
        return DynamoDBPersistenceLayer(table_name=self._table_name, boto3_client=self._dynamodb())

    def once_per_event(self, handler: Callable[[Any, LambdaContext], Response]) -> EventHandler:
        """Decorate a handler taking a parsed EventBridge event (a pydantic model with an ``id``)."""

        @functools.wraps(handler)
        def wrapper(event: BaseModel, context: LambdaContext) -> Response:
            # Keys carry the deployed function's name, not the handler module's import name, so
            # they stay the same across code changes and cold starts.
            self._function_name = context.function_name
            self._key_config.register_lambda_context(context)
            guarded = idempotent(
                persistence_store=self._event_store,
                config=self._event_config,
                key_prefix=f"{context.function_name}#event",
            )(handler)
            response: Response = guarded(event, context)
            return response

        return wrapper

    def once_per_key(self, purpose: str) -> OncePerKey:
        """A guard for one kind of action, e.g. ``instance.terminated``, used inside ``once_per_event``."""

        def run_once(*, key: str, action: Callable[[], Response]) -> Response:
            return action()

        def once(key: str, action: Callable[[], Response]) -> Response:
            guarded: Callable[..., Response] = idempotent_function(
                run_once,
                data_keyword_argument="key",
                persistence_store=self._key_store,
                config=self._key_config,
                key_prefix=f"{self._function_name}#{purpose}",
            )
            return guarded(key=key, action=action)

        return once

    def _log_repeated_event(self, response: Any, idempotent_data: DataRecord) -> Any:
        self._logger.info(
            "ignored repeated delivery of an event that was already handled",
            extra={"idempotency_key": idempotent_data.idempotency_key, "first_response": response},
        )
        return response
