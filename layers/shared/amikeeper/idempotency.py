"""amikeeper's one de-duplication mechanism: Powertools idempotency records in the stack's DynamoDB table.

Three guards share the table (partition key ``id``, TTL attribute ``expiration``):

- :meth:`Idempotency.once_per_event` wraps a handler that takes a parsed EventBridge event. Its key is
  ``<function name>#event#<md5 of the event id>``, so a redelivered event returns the first delivery's
  answer and sends nothing.
- :meth:`Idempotency.once_per_key` runs one action at most once per business key, across events, under
  ``<function name>#<purpose>#<md5 of the key>``. A termination produces two events (``shutting-down``,
  then ``terminated``) with different ids; keyed on the instance, people still get one notice.

- :meth:`Idempotency.first_time` answers "is this the first time in this window?" for notices about a
  persistent condition (an invalid tag, a failing region, a backup that keeps failing: once a day) and
  for a report tick delivered twice. The window is counted from the epoch with the time passed in (a
  daily window is a UTC calendar day), so simulated days in tests and the demo behave like real ones.

A failing action leaves no record behind (Powertools deletes it), so EventBridge's retry can succeed.
The in-progress lock of either guard expires with the invocation's remaining time, so a timed-out
invocation never blocks the retries for the whole record lifetime.
"""

from __future__ import annotations

import functools
import logging
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
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
# the minutes between an instance's shutting-down and terminated events, or any late redelivery. A
# notice's key carries its window, so a week also outlasts every window in use (a day, two for reports).
KEY_MEMORY = timedelta(days=7)
NOTICE_PREFIX = "notice"

Response = dict[str, Any]
EventHandler = Callable[[Any, LambdaContext], Response]


class OncePerKey(Protocol):
    def __call__(self, key: str, action: Callable[[], Response]) -> Response:
        """Run ``action`` unless it already ran for ``key``; either way return what it returned."""
        ...


class Idempotency:
    def __init__(
        self, table_name: str, dynamodb: Callable[[], DynamoDBClient], logger: Logger | logging.Logger
    ) -> None:
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

    def first_time(self, key: str, now: datetime, memory: timedelta) -> bool:
        """True the first time ``key`` comes in the window of ``memory`` that holds ``now``, else False.

        If the table cannot be reached the answer is True: a duplicate notice is better than a lost one.
        A second caller while the first is still recording hears False.
        """
        window = int(now.timestamp() // memory.total_seconds())
        token = uuid.uuid4().hex
        guarded: Callable[..., Response] = idempotent_function(
            _remember,
            data_keyword_argument="key",
            persistence_store=self._key_store,
            config=self._key_config,
            key_prefix=NOTICE_PREFIX,
        )
        try:
            with warnings.catch_warnings():
                # Powertools warns that, without a Lambda context, an in-progress record does not expire
                # with the invocation: this action only returns a token, so it is never in progress long.
                warnings.filterwarnings("ignore", "Couldn't determine the remaining time left")
                answer = guarded(key=f"{key}#{window}", token=token)
        except IdempotencyAlreadyInProgressError:
            return False
        except IdempotencyPersistenceLayerError:
            return True
        return answer.get("token") == token

    def _log_repeated_event(self, response: Any, idempotent_data: DataRecord) -> Any:
        self._logger.info(
            "ignored repeated delivery of an event that was already handled",
            extra={"idempotency_key": idempotent_data.idempotency_key, "first_response": response},
        )
        return response


def _remember(*, key: str, token: str) -> Response:
    """The action of a notice: nothing but recording who came first."""
    return {"token": token}
