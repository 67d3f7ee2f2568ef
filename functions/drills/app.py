"""Restore drills' tick (SPEC §10): sweep drill instances past their limit, then start the drills due."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.drills import run_drill_tick
from amikeeper.events import ScheduledTick, parse_or_refuse
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = RUNTIME.drill_deps()
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    result = run_drill_tick(DEPS, tick.scheduled_time or datetime.now(UTC))
    metrics.add_metric("DrillsStarted", MetricUnit.Count, len(result.started))
    metrics.add_metric("DrillsFailed", MetricUnit.Count, len(result.failed))
    metrics.add_metric("DrillsSwept", MetricUnit.Count, len(result.swept))
    logger.info("drill tick", extra=result.document())
    return result.document()
