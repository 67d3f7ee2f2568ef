"""Instance state changes: an on-stop backup, or a termination notice with the newest backup (SPEC §6)."""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.ec2_events import InstanceStateChange, parse_or_ignore
from amikeeper.instance_events import NOTICE_PURPOSE, InstanceEventDeps, handle_instance_state
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
logger, tracer, metrics = Logger(), Tracer(), Metrics()
IDEMPOTENCY = RUNTIME.idempotency(logger)
DEPS = InstanceEventDeps(
    ec2=RUNTIME.ec2,
    queue=RUNTIME.queue,
    notifier=RUNTIME.notifier,
    catalog=RUNTIME.catalog,
    stack=RUNTIME.stack,
    orphan_grace_days=RUNTIME.settings.orphan_grace_days,
    once_per_instance=IDEMPOTENCY.once_per_key(NOTICE_PURPOSE),
)


def count_malformed(reason: str) -> None:
    """A malformed AWS event is acknowledged (a retry cannot fix it) but counted: AWS changed its shape."""
    metrics.add_metric("MalformedEvents", MetricUnit.Count, 1)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_ignore(InstanceStateChange, logger, on_malformed=count_malformed)
@IDEMPOTENCY.once_per_event
def handler(event: InstanceStateChange, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(event.id)
    outcome = handle_instance_state(event, DEPS)
    if outcome.action == "backup-queued":
        metrics.add_metric("BackupsRequested", MetricUnit.Count, 1)
    logger.info(outcome.message, extra=outcome.log_fields())
    return outcome.response()
