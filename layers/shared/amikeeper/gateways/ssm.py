"""Reads the operators' named-policies document (an SSM parameter), cached between warm invocations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

# Operators edit the document without a redeploy; a minute is how long an edit may take to apply.
CACHE_SECONDS = 60


class PolicyDocumentUnavailable(RuntimeError):
    """The parameter could not be read (missing, access denied, throttled)."""


class PolicyDocumentSource:
    def __init__(self, parameter_name: str, client: SSMClient) -> None:
        self._parameter_name = parameter_name
        self._provider = SSMProvider(boto3_client=client)

    def read(self) -> str:
        try:
            value = self._provider.get(self._parameter_name, max_age=CACHE_SECONDS)
        except GetParameterError as error:
            raise PolicyDocumentUnavailable(
                f"cannot read SSM parameter {self._parameter_name}: {error}"
            ) from None
        return str(value)
