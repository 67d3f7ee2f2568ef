"""Asynchronous self-invocation: how a long retention run hands the rest of its work to a fresh one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

ACCEPTED = 202


class ContinuationRefused(RuntimeError):
    """Lambda answered the asynchronous Invoke with something other than 202 Accepted."""


class SelfInvoker:
    def __init__(self, client: LambdaClient, function: str) -> None:
        self._client = client
        self._function = function

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        """Queue one asynchronous invocation (InvocationType=Event) of the function with this payload."""
        response = self._client.invoke(
            FunctionName=self._function,
            InvocationType="Event",
            Payload=json.dumps(payload, default=str).encode(),
        )
        status = response["StatusCode"]
        if status != ACCEPTED:
            raise ContinuationRefused(
                f"asynchronous invoke of {self._function} answered {status}, expected {ACCEPTED}"
            )
