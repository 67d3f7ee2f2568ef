"""Where a backup is copied for disaster recovery (SPEC §9): the policy field ``copies`` and the instance
tag ``<OptInTagKey>:CopyTo``. Pure.

A destination is named by its *key*: the region for a copy in this account (``eu-central-1``), the
vault account and region for a copy owned by a vault account (``222233334444/eu-west-1``). The keys of a
backup's destinations are recorded on the backup itself (``amikeeper:copy-to``) by CreateImage, so that
whoever later sees the backup available (the AMI-state event, retention's hourly read) knows where it
goes without the policy or the instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from amikeeper.retention_rules import RetentionError, RetentionRules, parse_retention

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
ACCOUNT = re.compile(r"^\d{12}$")
# A KMS key as CopyImage takes it: key id, key ARN, alias name or alias ARN.
_KMS_KEY = re.compile(
    r"^(alias/[A-Za-z0-9/_-]{1,250}|[0-9a-f-]{36}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+)$"
)
_FIELDS = frozenset({"region", "account", "retain", "kms_key", "encrypt"})
# Real EC2 lets an AMI carry 50 tags; the destinations' keys share one tag value of 256 characters.
MAX_DESTINATIONS = 5
NO_COPIES_WORDS = frozenset({"none", "no", "false", "off"})


class CopyDestinationError(ValueError):
    """A ``copies`` entry or a ``CopyTo`` value that cannot be honoured; the message says which and why."""


@dataclass(frozen=True)
class CopyDestination:
    region: str
    account: str | None = None  # None: this account
    retention: RetentionRules | None = None  # None: the source's retention
    kms_key: str | None = None  # None: the destination's default EBS key
    encrypt: bool = True

    @property
    def key(self) -> str:
        return destination_key(self.region, self.account)


def destination_key(region: str, account: str | None) -> str:
    return f"{account}/{region}" if account else region


def split_key(key: str) -> tuple[str, str | None]:
    """``region`` or ``account/region`` back into (region, account); raises CopyDestinationError."""
    account, _, region = key.strip().rpartition("/")
    if not REGION.match(region) or (account and not ACCOUNT.match(account)):
        raise CopyDestinationError(f"{key!r} is not a copy destination (region or account/region)")
    return region, account or None


def parse_copies(value: object) -> tuple[CopyDestination, ...]:
    """The ``copies`` field of a policy: a JSON list of ``{"region": …, "account"?, "retain"?, "kms_key"?,
    "encrypt"?}``; ``account`` names a vault account, reached through the stack's vault role."""
    if not isinstance(value, list):
        raise CopyDestinationError("copies must be a list of destinations")
    destinations = [_destination(entry) for entry in value]
    return _distinct(destinations)


def _destination(entry: object) -> CopyDestination:
    if not isinstance(entry, dict):
        raise CopyDestinationError("each copy destination must be an object with at least a region")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise CopyDestinationError(f"copy destination has unknown fields {sorted(unknown)}")
    region = entry.get("region")
    if not isinstance(region, str) or not REGION.match(region.strip()):
        raise CopyDestinationError(f"copy destination region {region!r} is not an AWS region name")
    account = entry.get("account")
    if account is not None and (not isinstance(account, str) or not ACCOUNT.match(account.strip())):
        raise CopyDestinationError(f"copy destination account {account!r} is not a 12-digit account id")
    retain = entry.get("retain")
    retention = None
    if retain is not None:
        if not isinstance(retain, str):
            raise CopyDestinationError("copy destination retain must be a retention expression string")
        try:
            retention = parse_retention(retain)
        except RetentionError as error:
            raise CopyDestinationError(f"copy destination {region}: {error}") from None
    kms_key = entry.get("kms_key")
    if kms_key is not None and (not isinstance(kms_key, str) or not _KMS_KEY.match(kms_key.strip())):
        raise CopyDestinationError(f"copy destination kms_key {kms_key!r} is not a key id, key ARN or alias")
    encrypt = entry.get("encrypt", True)
    if not isinstance(encrypt, bool):
        raise CopyDestinationError("copy destination encrypt must be true or false")
    if kms_key is not None and not encrypt:
        raise CopyDestinationError(f"copy destination {region}: kms_key needs encrypt true")
    return CopyDestination(
        region=region.strip(),
        account=account.strip() if isinstance(account, str) else None,
        retention=retention,
        kms_key=kms_key.strip() if isinstance(kms_key, str) else None,
        encrypt=encrypt,
    )


def parse_copy_to(text: str) -> tuple[str, ...]:
    """The ``CopyTo`` tag: comma-separated regions of this account (``none`` for no copies here)."""
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if not words:
        raise CopyDestinationError("empty value: list regions separated by commas, or none")
    if len(words) == 1 and words[0] in NO_COPIES_WORDS:
        return ()
    for word in words:
        if not REGION.match(word):
            raise CopyDestinationError(f"{word!r} is not an AWS region name")
    return tuple(dict.fromkeys(words))


def with_regions(
    policy_copies: Sequence[CopyDestination], regions: Iterable[str]
) -> tuple[CopyDestination, ...]:
    """The policy's destinations with its same-account ones replaced by ``regions`` (a CopyTo tag). A region
    the policy already names keeps its settings; a new one takes the defaults."""
    by_region = {copy.region: copy for copy in policy_copies if copy.account is None}
    vaults = [copy for copy in policy_copies if copy.account is not None]
    here = [by_region.get(region, CopyDestination(region=region)) for region in regions]
    return _distinct([*here, *vaults])


def _distinct(destinations: Sequence[CopyDestination]) -> tuple[CopyDestination, ...]:
    seen: set[str] = set()
    for destination in destinations:
        if destination.key in seen:
            raise CopyDestinationError(f"copy destination {destination.key} is listed twice")
        seen.add(destination.key)
    if len(destinations) > MAX_DESTINATIONS:
        raise CopyDestinationError(f"at most {MAX_DESTINATIONS} copy destinations, got {len(destinations)}")
    return tuple(destinations)


def encode_keys(destinations: Iterable[CopyDestination]) -> str:
    """The ``amikeeper:copy-to`` tag value."""
    return ",".join(destination.key for destination in destinations)


def decode_keys(text: str | None) -> tuple[str, ...]:
    """The keys an ``amikeeper:copy-to`` tag names; a mangled key is dropped rather than guessed at."""
    keys = []
    for word in (text or "").split(","):
        try:
            region, account = split_key(word)
        except CopyDestinationError:
            continue
        keys.append(destination_key(region, account))
    return tuple(dict.fromkeys(keys))
