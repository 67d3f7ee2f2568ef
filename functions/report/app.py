"""Daily report: every opted-in instance's newest backup, RPO violations and stale pending AMIs (SPEC §6)."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import ScheduledTick, parse_or_refuse
from amikeeper.report import ReportDeps, report_run, run_report
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = ReportDeps(ec2=RUNTIME.ec2, notifier=RUNTIME.notifier, ledger=RUNTIME.ledger)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(ScheduledTick)
def handler(tick: ScheduledTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    report = run_report(report_run(RUNTIME.settings, RUNTIME.catalog(), now), DEPS)
    metrics.add_metric("RpoViolations", MetricUnit.Count, len(report.violations))
    metrics.add_metric("StalePendingAmis", MetricUnit.Count, len(report.stale))
    metrics.add_metric("LateCopies", MetricUnit.Count, len(report.late_copies))
    regions = [region.document() for region in report.regions]
    for region in regions:
        logger.info("reported region", extra=region)
    # The heartbeat that the "no daily report" alarm watches.
    metrics.add_metric("DailyReports", MetricUnit.Count, 1)
    return {"regions": regions}
