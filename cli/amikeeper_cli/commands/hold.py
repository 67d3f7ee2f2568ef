"""``amikeeper hold AMI`` / ``amikeeper release AMI``: the legal hold, on this stack's backups only.

A hold is the tag ``<OptInTagKey>:Hold=true`` (amikeeper.backups.is_held). Release removes every hold
key on the AMI, including one placed under an earlier OptInTagKey, which is_held still honours: a
release that left such a key behind would leave the AMI held.
"""

from __future__ import annotations

from amikeeper.backups import HOLD_SUFFIX, is_held
from amikeeper.model import SLOT, Image
from amikeeper_cli import locate
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.render import Section, View

COLUMNS = ("region", "AMI", "instance", "slot", "held")


def hold(deployment: Deployment, image_id: str) -> View:
    found = locate.managed_image(deployment, image_id)
    key = deployment.settings.tag_keys.hold
    deployment.ec2(found.region).tag_image(image_id, key, "true")
    return _view(found.region, found.item, held=True, change=f"set {key}=true")


def release(deployment: Deployment, image_id: str) -> View:
    found = locate.managed_image(deployment, image_id)
    keys = [key for key in found.item.tags if key.strip().lower().endswith(HOLD_SUFFIX)]
    if keys:
        deployment.ec2(found.region).untag_image(image_id, keys)
    change = f"removed {', '.join(sorted(keys))}" if keys else "was not held; nothing changed"
    return _view(found.region, found.item, held=False, change=change)


def _view(region: str, image: Image, *, held: bool, change: str) -> View:
    slot = image.tags.get(SLOT, "-")
    document = {
        "region": region,
        "image_id": image.image_id,
        "instance_id": image.instance_id,
        "slot": slot,
        "held": held,
        "was_held": is_held(image.tags),
        "change": change,
    }
    row = [region, image.image_id, image.instance_id or "-", slot, "yes" if held else "no"]
    return View(document=document, sections=[Section(f"{image.image_id}: {change}", COLUMNS, [row])])
