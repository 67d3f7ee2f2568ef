"""Deleter: carry out one batch of retention's deletions at EC2's delete pace (SPEC §4).

Fed by the FIFO deletion queue one batch at a time, one region at a time; see amikeeper.retention.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import DeletionBatchEvent, parse_or_refuse
from amikeeper.retention import DeleterDeps, delete_batch
from amikeeper.retention_plan import RetentionConfig
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
CONFIG = RetentionConfig.from_settings(RUNTIME.settings)
DEPS = DeleterDeps(ec2=RUNTIME.location, notifier=RUNTIME.notifier, ledger=RUNTIME.ledger)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(DeletionBatchEvent)
def handler(event: DeletionBatchEvent, context: LambdaContext) -> dict[str, Any]:
    [record] = event.Records
    logger.set_correlation_id(record.messageId)
    result = delete_batch(record.body, CONFIG, DEPS)
    for name, value in result.deletion_metrics().items():
        metrics.add_metric(name, MetricUnit.Count, value)
    logger.info("deletion batch", extra=result.response())
    return result.response()
