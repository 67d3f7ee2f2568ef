"""What a copy needs to know about a KMS key: whose it is (an AWS managed key can never be shared)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient


@dataclass(frozen=True)
class KeyFacts:
    key_id: str
    aws_managed: bool
    enabled: bool
    policy: str = ""  # the key policy document, as KMS returns it

    def grants_account(self, account: str) -> bool:
        """Whether the key policy names the account at all: a vault account it does not name can never
        use the key, whatever its own IAM says (a named one may still be limited; CopyImage then says so)."""
        return account in self.policy


class KeyInspector:
    def __init__(self, client: KMSClient) -> None:
        self._client = client

    def facts(self, key_id: str, *, with_policy: bool = True) -> KeyFacts:
        """DescribeKey (and GetKeyPolicy of a customer-managed key, ``with_policy``); a ClientError (no
        such key, no access) is the caller's to report."""
        metadata = self._client.describe_key(KeyId=key_id)["KeyMetadata"]
        aws_managed = metadata.get("KeyManager") == "AWS"
        policy = ""
        if with_policy and not aws_managed:
            # "default" is the only name a key policy has.
            policy = self._client.get_key_policy(KeyId=metadata["KeyId"], PolicyName="default")["Policy"]
        return KeyFacts(
            key_id=metadata["Arn"],
            aws_managed=aws_managed,
            enabled=metadata.get("KeyState") == "Enabled",
            policy=policy,
        )
