"""Restore drills' checker: each SQS message is one drill instance to look at (SPEC §10); a drill still
coming up goes back to the queue with a delay, a settled one is terminated and recorded."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from amikeeper.config import load_settings
from amikeeper.drills import check_drill
from amikeeper.model import DrillTask
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = RUNTIME.drill_deps()
logger, tracer, metrics = Logger(), Tracer(), Metrics()


class DrillRecord(SqsRecordModel):
    body: Json[DrillTask]


# Only failed records go back to the queue; a malformed one fails its record until the dead-letter queue.
processor = BatchProcessor(event_type=EventType.SQS, model=DrillRecord, raise_on_entire_batch_failure=False)


@tracer.capture_method
def record_handler(record: DrillRecord) -> str:
    outcome = check_drill(record.body, DEPS, datetime.now(UTC))
    if outcome.action == "verified":
        metrics.add_metric("DrillsVerified", MetricUnit.Count, 1)
        metrics.add_metric("DrillSecondsToStatusOk", MetricUnit.Seconds, outcome.seconds_to_ok or 0)
    elif outcome.action == "failed":
        metrics.add_metric("DrillsFailed", MetricUnit.Count, 1)
    log = logger.error if outcome.action == "failed" else logger.info
    log("drill " + outcome.action, extra=outcome.log_fields())
    return outcome.action


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
