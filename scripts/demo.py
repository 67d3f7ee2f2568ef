"""`make demo`: amikeeper's main job on the embedded default — moto in-process, no AWS account.

Every step invokes the real handlers from template.yaml (same code, layer and environment as deployed)
with the events/ files, against a simulated AWS that behaves like EC2 where moto does not.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from scripts.demo_backup import POLICIES, scheduled_backups
from scripts.demo_copies import disaster_recovery_copies
from scripts.demo_drills import restore_drills
from scripts.demo_events import events_and_report
from scripts.demo_restore import operator_restore
from scripts.demo_retention import retention_history
from scripts.demo_world import demo_world

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def main() -> None:
    logging.getLogger("botocore").setLevel(logging.WARNING)
    with demo_world(POLICIES) as world:
        fleet = scheduled_backups(world, NOW)
        next_day = retention_history(world, fleet, NOW)
        events_and_report(world, fleet, next_day)
        disaster_recovery_copies(world, POLICIES, next_day)
        # After chapter 3's 07:00 report, the operator looks.
        operator_restore(world, fleet, next_day + timedelta(hours=7, minutes=30))
        restore_drills(world, fleet, next_day + timedelta(hours=8))
    print("\nDone: everything above ran in-process against moto; no AWS account was used.")


if __name__ == "__main__":
    main()
