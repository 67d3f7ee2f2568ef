"""Planner tick: queue a backup for every opted-in instance that is due (SPEC §6)."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import ScheduledTick
from amikeeper.planner import run_planner
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    settings = RUNTIME.settings
    plans = run_planner(now, settings.regions, RUNTIME.catalog(), RUNTIME.stack, RUNTIME.planner_deps())
    for plan in plans:
        metrics.add_metric("InstancesSeen", MetricUnit.Count, plan.opted_in)
        metrics.add_metric("BackupsRequested", MetricUnit.Count, plan.enqueued)
        metrics.add_metric("InvalidPolicies", MetricUnit.Count, len(plan.invalid))
        logger.info(
            "planned region", extra={"region": plan.region, "due": len(plan.due), "error": plan.error}
        )
    return {
        "regions": [
            {
                "region": p.region,
                "due": len(p.due),
                "enqueued": p.enqueued,
                "invalid": len(p.invalid),
                "error": p.error,
            }
            for p in plans
        ]
    }
