"""Retention tick: apply the keep rules in every region, delete what expired (SPEC §4); {"dry_run": true} previews."""

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
    ec2=RUNTIME.ec2, autoscaling=RUNTIME.autoscaling, notifier=RUNTIME.notifier, ledger=RUNTIME.ledger
)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    # The continuation replays this exact tick, so that it computes the same plan from what is left.
    same_tick = {
        "scheduled_time": now.isoformat(),
        "execution_id": tick.execution_id,
        "dry_run": tick.dry_run,
    }
    invoker = RUNTIME.self_invoker(context.invoked_function_arn)
    result = run_retention(
        now,
        RUNTIME.settings.regions,
        RUNTIME.catalog(),
        CONFIG,
        DEPS,
        dry_run=tick.dry_run,
        remaining_ms=context.get_remaining_time_in_millis,
        continue_later=lambda: invoker.invoke_async(same_tick),
    )
    for name, value in result.metrics().items():
        metrics.add_metric(name, MetricUnit.Count, value)
    logger.info("retention run", extra=result.response())
    return result.response()
