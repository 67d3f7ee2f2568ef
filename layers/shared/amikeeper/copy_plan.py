"""What to copy where, and how the copy is labelled (SPEC §9). Pure.

A backup records its destinations (``amikeeper:copy-to``) and, once each copy completed, that copy's id
(``amikeeper:copied:<destination>``). From the backup alone, then, anyone who sees it available knows which
copies are still owed: the AMI-state event when it becomes available, and retention's hourly read of every
backup, which catches what a lost event or a region without an event rule missed.
"""

from __future__ import annotations

import hashlib

from amikeeper.copy_destinations import CopyDestination, decode_keys, split_key
from amikeeper.model import (
    COPIED_PREFIX,
    COPY_OF,
    COPY_TO,
    GONE_SINCE,
    MANAGED_BY,
    RESTORE_DRILL,
    RESTORE_VERIFIED,
    RETAIN,
    SOURCE_ACCOUNT,
    SOURCE_REGION,
    CopyTask,
    Image,
)
from amikeeper.policies import DEFAULT_POLICY, PolicyCatalog

# Tags that describe the source's own life, not the backup: a copy has its own.
_NOT_CARRIED = (COPY_TO, GONE_SINCE, RESTORE_VERIFIED, RESTORE_DRILL)
DESCRIPTION_MAX = 255


def owed_copies(image: Image, region: str, stack_name: str) -> list[CopyTask]:
    """The copies a backup is still owed: one task per recorded destination without a completed copy.

    Only an available backup of this stack is copied (a pending one is copied when it becomes available,
    a failed one never); a copy is never copied again, and a destination that is the backup's own region
    in its own account is no destination at all.
    """
    if image.state != "available" or image.copy_of is not None or image.tags.get(MANAGED_BY) != stack_name:
        return []
    done = image.copies
    return [
        CopyTask(source_region=region, source_image_id=image.image_id, destination=key)
        for key in decode_keys(image.tags.get(COPY_TO))
        if key not in done and key != region
    ]


def destination_of(source: Image, key: str, catalog: PolicyCatalog) -> CopyDestination:
    """The settings of one destination of a backup: from its recorded policy when that names the
    destination, else the defaults (a region added by a ``CopyTo`` tag)."""
    region, account = split_key(key)
    policy_name = source.policy or DEFAULT_POLICY
    policy = catalog.default if policy_name == DEFAULT_POLICY else catalog.named.get(policy_name)
    for destination in policy.copies if policy is not None else ():
        if destination.key == key:
            return destination
    return CopyDestination(region=region, account=account)


def copy_tags(source: Image, source_region: str, destination: CopyDestination) -> dict[str, str]:
    """The source's amikeeper tags and Name, the copy's own retention, and where it came from."""
    carried = {
        key: value
        for key, value in source.tags.items()
        if (key.startswith("amikeeper:") or key == "Name")
        and key not in _NOT_CARRIED
        and not key.startswith(COPIED_PREFIX)
    }
    retention = str(destination.retention) if destination.retention else source.tags.get(RETAIN)
    own = {COPY_OF: source.image_id, SOURCE_REGION: source_region, SOURCE_ACCOUNT: source.owner_id or ""}
    return carried | ({RETAIN: retention} if retention else {}) | own


def client_token(source_image_id: str, destination_key: str) -> str:
    """The same copy asked for twice is one copy: EC2 answers a repeated token with the first copy."""
    return hashlib.sha256(f"{source_image_id}>{destination_key}".encode()).hexdigest()[:48]


def copy_description(source: Image, source_region: str) -> str:
    return f"amikeeper copy of {source.image_id} ({source_region}): {source.name}"[:DESCRIPTION_MAX]
