"""One retention Verdict as a table row and as JSON, shared by ``backups`` and ``plan``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amikeeper.backups import is_held
from amikeeper.model import Image
from amikeeper.naming import format_slot
from amikeeper.retention_plan import Verdict


def action(verdict: Verdict) -> str:
    return "delete" if verdict.delete else "keep"


def why(verdict: Verdict) -> str:
    return "; ".join(verdict.reasons)


def document(verdict: Verdict, image: Image | None) -> dict[str, Any]:
    tags: Mapping[str, str] = image.tags if image is not None else {}
    return {
        "image_id": verdict.image_id,
        "image_name": image.name if image is not None else None,
        "instance_id": verdict.instance_id,
        "slot": format_slot(verdict.backup_time),
        "trigger": image.trigger if image is not None else None,
        "state": verdict.state,
        "action": action(verdict),
        "outcome": verdict.outcome,
        "reasons": list(verdict.reasons),
        "held": is_held(tags),
        "used_by": list(verdict.used_by),
        # Destination -> copy id of each completed disaster-recovery copy; a copy itself names its source.
        "copies": image.copies if image is not None else {},
        "copy_of": image.copy_of if image is not None else None,
    }
