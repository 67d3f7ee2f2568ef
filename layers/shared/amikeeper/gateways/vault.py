"""The vault account's EC2, through the role the vault's own template creates (vault/template.yaml).

The stack assumes that one role (its ARN and external id are stack parameters), for as long as the
session lasts, and makes the copies, reads them and applies their retention with it: everything in the
vault is owned by the vault, and the role can delete only what carries this stack's managed-by tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from amikeeper.clients import Credentials

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

# Renew a session this long before it expires, so that no call starts with credentials about to lapse.
RENEW_BEFORE = timedelta(minutes=5)
SESSION_SECONDS = 3600


class VaultUnavailable(RuntimeError):
    """No vault role is configured, or it cannot be assumed; the message says which and what to do."""


@dataclass(frozen=True)
class VaultRole:
    role_arn: str
    external_id: str

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]


class VaultSessions:
    """Credentials of the vault role, one session at a time, renewed before it lapses."""

    def __init__(self, role: VaultRole | None, sts: Callable[[], STSClient], session_name: str) -> None:
        self._role = role
        self._sts = sts
        self._session_name = session_name[:64]
        self._current: tuple[Credentials, datetime] | None = None

    def credentials(self, account: str, now: datetime) -> Credentials:
        """Credentials in ``account``; VaultUnavailable when it is not the configured vault's, or the role
        cannot be assumed."""
        role = self._role
        if role is None:
            raise VaultUnavailable(
                f"copies to account {account} need the vault role: deploy vault/template.yaml there and set "
                "the stack parameters VaultRoleArn and VaultExternalId"
            )
        if role.account != account:
            raise VaultUnavailable(
                f"the configured vault role {role.role_arn} is in account {role.account}, not {account}"
            )
        if self._current is None or now >= self._current[1] - RENEW_BEFORE:
            self._current = self._assume(role)
        return self._current[0]

    def _assume(self, role: VaultRole) -> tuple[Credentials, datetime]:
        try:
            answer = self._sts().assume_role(
                RoleArn=role.role_arn,
                RoleSessionName=self._session_name,
                ExternalId=role.external_id,
                DurationSeconds=SESSION_SECONDS,
            )
        except (ClientError, BotoCoreError) as error:
            raise VaultUnavailable(f"cannot assume the vault role {role.role_arn}: {error}") from error
        granted = answer["Credentials"]
        credentials = Credentials(granted["AccessKeyId"], granted["SecretAccessKey"], granted["SessionToken"])
        return credentials, granted["Expiration"]
