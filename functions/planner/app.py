"""Planner tick: hand one planning task per configured region to the planner's task queue (SPEC §6).

RegionPlannerFunction, the queue's consumer, plans each region; see amikeeper.planner.
"""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import ScheduledTick, parse_or_refuse
from amikeeper.planner import fan_out
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    tasks = fan_out(now, tick.execution_id, RUNTIME.settings.regions, RUNTIME.planner_tasks)
    metrics.add_metric("RegionTasksQueued", MetricUnit.Count, len(tasks))
    logger.info("queued region tasks", extra={"regions": [task.region for task in tasks]})
    return {"scheduled_time": now.isoformat(), "regions": [task.region for task in tasks]}
