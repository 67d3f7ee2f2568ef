"""Retention tick: plan every region in one read each and queue what expired for the deleter (SPEC §4);
{"dry_run": true} previews and changes nothing."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import ScheduledTick, parse_or_refuse
from amikeeper.retention import RetentionDeps, run_retention
from amikeeper.retention_plan import RetentionConfig
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
CONFIG = RetentionConfig.from_settings(RUNTIME.settings)
DEPS = RetentionDeps(
    ec2=RUNTIME.location,
    autoscaling=RUNTIME.autoscaling_at,
    deletions=RUNTIME.deletions,
    copies=RUNTIME.copies,
    notifier=RUNTIME.notifier,
    ledger=RUNTIME.ledger,
)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    result = run_retention(
        now, RUNTIME.settings.regions, RUNTIME.catalog(), CONFIG, DEPS, dry_run=tick.dry_run
    )
    for name, value in result.plan_metrics().items():
        metrics.add_metric(name, MetricUnit.Count, value)
    logger.info("retention run", extra=result.response())
    return result.response()
