"""AMI state changes: completion metrics for this stack's backups, a notice when one fails (SPEC §6)."""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.ami_events import AmiEventDeps, handle_ami_state
from amikeeper.config import load_settings
from amikeeper.ec2_events import AmiStateChange, parse_or_ignore
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
logger, tracer, metrics = Logger(), Tracer(), Metrics()
IDEMPOTENCY = RUNTIME.idempotency(logger)
DEPS = AmiEventDeps(
    ec2=RUNTIME.ec2,
    notifier=RUNTIME.notifier,
    stack_name=RUNTIME.settings.stack_name,
    notes=RUNTIME.backup_notes,
    copies=RUNTIME.copies,
)


def count_malformed(reason: str) -> None:
    """A malformed AWS event is acknowledged (a retry cannot fix it) but counted: AWS changed its shape."""
    metrics.add_metric("MalformedEvents", MetricUnit.Count, 1)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_ignore(AmiStateChange, logger, on_malformed=count_malformed)
@IDEMPOTENCY.once_per_event
def handler(event: AmiStateChange, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(event.id)
    outcome = handle_ami_state(event, DEPS)
    if outcome.action == "completed" and outcome.seconds_to_available is not None:
        metrics.add_metric("BackupsCompleted", MetricUnit.Count, 1)
        metrics.add_metric("TimeToAvailableSeconds", MetricUnit.Seconds, outcome.seconds_to_available)
    elif outcome.action == "failed":
        metrics.add_metric("BackupsFailed", MetricUnit.Count, 1)
    if outcome.copy_error is not None:
        logger.warning("copies not queued; retention's catch-up asks for them", extra=outcome.log_fields())
    logger.info(outcome.message, extra=outcome.log_fields())
    return outcome.response()
