"""Messages per day: what a subscriber of the topic receives, and what the e-mail subscription delivers.

A week of daily backups at the default schedules and retention makes the history; then one whole day is
simulated through the template's handlers: 96 planner ticks (each followed by the workers), 24 retention
runs and the daily report. It runs twice: a quiet day, and a day on which EC2 fails one instance's
03:00 AMI (the AMI-state rule delivers the failure; the next planner tick retries the slot).

    PYTHONPATH=layers/shared:. .venv/bin/python -m scripts.bench_messages --sizes 1,1000

E-mails are counted with the stack's default filter (NotificationEmailSeverity=warning: severities
warning and error, and every message without a severity attribute, i.e. CloudWatch alarms).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from scripts.bench_world import FIRST_TICK, World, _quietly, bench_world
from tests.fixtures.end_state import tick
from tests.fixtures.stack import managed_images
from tests.sam_local import load_event

ROOT = Path(__file__).resolve().parent.parent
HISTORY_DAYS = 7
EMAILED = {"warning", "error", ""}


def history(world: World, days: int) -> None:
    for number in range(1, days + 1):
        _quietly(world.day, number)
    world.stack.notifications()


def whole_day(world: World, history_days: int, *, fail_one: bool) -> Counter[tuple[str, str]]:
    """The day after the history, at the defaults; what the topic delivered, by (event, severity)."""
    start = (FIRST_TICK + timedelta(days=history_days)).replace(hour=0, minute=0)
    received: Counter[tuple[str, str]] = Counter()
    functions = world.functions
    for quarter in range(96):
        now = start + timedelta(minutes=15 * quarter + 1)
        busy = quarter == 12  # the 03:01 tick, the first in the 03:00 slot
        world.fidelity.start_pending(fail_one and busy)
        _quietly(functions["PlannerFunction"].invoke, tick(now))
        world._drain()
        if fail_one and busy:
            pending = sorted(i["ImageId"] for i in managed_images(world.region) if i["State"] == "pending")
            for image_id in pending[1:]:
                world.fidelity.set_image_state(world.region, image_id, "available")
            world.fidelity.set_image_state(world.region, pending[0], "failed", reason="volume went away")
            event = load_event(ROOT / "events" / "ami-state-failed.json")
            event["region"] = world.region
            event["detail"] = event["detail"] | {"ImageId": pending[0]}
            _quietly(functions["AmiStateFunction"].invoke, event)
        if quarter % 4 == 0:
            _quietly(functions["RetentionFunction"].invoke, tick(now + timedelta(minutes=4), dry_run=False))
        if quarter == 28:
            _quietly(functions["ReportFunction"].invoke, tick(now.replace(minute=0)))
        received.update((note.event, note.severity) for note in world.stack.notifications())
    return received


def measure(size: int, history_days: int, *, fail_one: bool) -> Counter[tuple[str, str]]:
    with bench_world(default_retention="daily=7 weekly=4 monthly=6") as world:
        world.launch(size)
        history(world, history_days)
        return whole_day(world, history_days, fail_one=fail_one)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="1,1000", help="comma-separated fleet sizes")
    parser.add_argument("--history", type=int, default=HISTORY_DAYS, help="days of backups made before")
    parser.add_argument("--days", default="quiet,failed", help="which days: quiet, failed or both")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(text) for text in args.sizes.split(",")):
        for fail_one in [day == "failed" for day in args.days.split(",")]:
            received = measure(size, args.history, fail_one=fail_one)
            emails = sum(count for (_, severity), count in received.items() if severity in EMAILED)
            day = "one failed backup" if fail_one else "quiet"
            listed = {f"{event}/{severity}": count for (event, severity), count in sorted(received.items())}
            rows.append((size, day, sum(received.values()), emails, listed))
            print(
                f"{size:>6} instances, {day:>17} day: {sum(received.values())} message(s), "
                f"{emails} e-mail(s) with the default filter: {json.dumps(listed)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
