"""Which backup a restore starts from: the newest available one, the one named, or the newest at or
before a time; or that backup's disaster-recovery copy in another region. Anything that does not resolve to
an available backup (or copy) of this stack of that instance ends as BadInput, before anything is changed."""

from __future__ import annotations

from datetime import datetime

from amikeeper.backups import newest_available
from amikeeper.model import MANAGED_BY, Image
from amikeeper_cli import locate
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput
from amikeeper_cli.locate import Located


def backup(
    deployment: Deployment, instance_id: str, *, image_id: str | None, at: str | None
) -> Located[Image]:
    if image_id is not None and at is not None:
        raise BadInput("give --backup or --at, not both")
    if image_id is not None:
        return _named(deployment, instance_id, image_id)
    moment = parse_time(at) if at is not None else None
    found = _backups(deployment, instance_id)
    chosen = [item for item in found if moment is None or item.item.backup_time <= moment]
    latest = newest_available(item.item for item in chosen)
    if latest is None:
        when = f" at or before {at}" if at is not None else ""
        raise BadInput(f"no available backup of {instance_id}{when} (see `amikeeper backups {instance_id}`)")
    return next(item for item in chosen if item.item is latest)


def copy(
    deployment: Deployment, instance_id: str, region: str, *, image_id: str | None, at: str | None
) -> Image:
    """The copy in ``region`` of the backup chosen as :func:`backup` chooses, judged from what ``region``
    lists alone: the source region may be the one that is down. ``image_id`` names the source backup or
    the copy itself."""
    if image_id is not None and at is not None:
        raise BadInput("give --backup or --at, not both")
    locate.require_instance_id(instance_id)
    stack = deployment.settings.stack_name
    copies = list(deployment.ec2(region).copies_of(stack, instance_id))
    if image_id is not None:
        return _named_copy(deployment, instance_id, region, image_id, copies)
    if not copies:
        raise BadInput(f"no copy of {instance_id} by stack {stack!r} in {region}")
    moment = parse_time(at) if at is not None else None
    latest = newest_available(item for item in copies if moment is None or item.backup_time <= moment)
    if latest is None:
        when = f" at or before {at}" if at is not None else ""
        raise BadInput(f"no available copy of {instance_id}{when} in {region}")
    return latest


def _named_copy(
    deployment: Deployment, instance_id: str, region: str, image_id: str, copies: list[Image]
) -> Image:
    if not locate.IMAGE_ID.match(image_id):
        raise BadInput(f"{image_id!r} is not an AMI id (ami-…)")
    for item in copies:
        if image_id in (item.image_id, item.copy_of):
            if item.state != "available":
                raise BadInput(
                    f"{item.image_id} ({region}), the copy of {item.copy_of}, is {item.state}: "
                    "only an available copy can be restored"
                )
            return item
    raise BadInput(_why_not_a_copy(deployment, instance_id, region, image_id))


def _why_not_a_copy(deployment: Deployment, instance_id: str, region: str, image_id: str) -> str:
    """What ``region`` knows of an AMI that is none of this stack's copies of that instance there."""
    stack = deployment.settings.stack_name
    image = deployment.ec2(region).image(image_id)
    if image is None:
        return f"no copy of {image_id} by stack {stack!r} in {region}"
    owner = image.tags.get(MANAGED_BY)
    if owner is None:
        return f"{image_id} ({region}) was not made by amikeeper: only copies made by stack {stack!r} qualify"
    if owner != stack:
        return f"{image_id} ({region}) belongs to amikeeper stack {owner!r}, not {stack!r} (see --stack)"
    if image.copy_of is None:
        return f"{image_id} ({region}) is a backup, not a copy: restore it without --from-copy"
    return f"{image_id} ({region}) is a copy of a backup of {image.instance_id or 'no instance'}, not of {instance_id}"


def parse_time(text: str) -> datetime:
    """ISO-8601 with its offset (2026-11-29T10:00:00+01:00, or Z): a time without one is ambiguous."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"--at {text!r} is not an ISO-8601 time (e.g. 2026-11-29T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise BadInput(f"--at {text!r} has no offset: add Z or +hh:mm")
    return moment


def _named(deployment: Deployment, instance_id: str, image_id: str) -> Located[Image]:
    locate.require_instance_id(instance_id)
    found = locate.managed_image(deployment, image_id)
    image = found.item
    if image.instance_id != instance_id:
        raise BadInput(
            f"{image_id} is a backup of {image.instance_id or 'no instance'}, not of {instance_id}"
        )
    if image.state != "available":
        raise BadInput(f"{image_id} is {image.state}: only an available backup can be restored")
    return found


def _backups(deployment: Deployment, instance_id: str) -> list[Located[Image]]:
    locate.require_instance_id(instance_id)
    stack = deployment.settings.stack_name
    found = [
        Located(region, image)
        for region in deployment.regions
        for image in deployment.ec2(region).backups_of(stack, instance_id)
    ]
    if not found:
        raise BadInput(f"no backups of {instance_id} by stack {stack!r} in {', '.join(deployment.regions)}")
    return found
