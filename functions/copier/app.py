"""Copier: each SQS message is one backup and one destination (SPEC §9); start the copy, or look at a
started one, and hand the task back to the queue with a delay when there is more to do."""

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from amikeeper.config import load_settings
from amikeeper.copies import CopyDeps, handle_copy_task
from amikeeper.model import CopyTask
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = CopyDeps(
    ec2=RUNTIME.ec2,
    destination=RUNTIME.location,
    kms=RUNTIME.kms,
    destination_kms=RUNTIME.kms_at,
    queue=RUNTIME.copies,
    notifier=RUNTIME.notifier,
    ledger=RUNTIME.ledger,
    catalog=RUNTIME.catalog,
    stack_name=RUNTIME.settings.stack_name,
    pending_timeout=timedelta(hours=RUNTIME.settings.pending_timeout_hours),
)
logger, tracer, metrics = Logger(), Tracer(), Metrics()
METRIC = {
    "started": "CopiesStarted",
    "completed": "CopiesCompleted",
    "failed": "CopiesFailed",
    "limited": "CopiesLimited",
}


class CopyRecord(SqsRecordModel):
    body: Json[CopyTask]


# Only failed records go back to the queue; a malformed one fails its record until the dead-letter queue.
processor = BatchProcessor(event_type=EventType.SQS, model=CopyRecord, raise_on_entire_batch_failure=False)


@tracer.capture_method
def record_handler(record: CopyRecord) -> str:
    outcome = handle_copy_task(record.body, DEPS, datetime.now(UTC))
    if metric := METRIC.get(outcome.action):
        metrics.add_metric(metric, MetricUnit.Count, 1)
    log = logger.error if outcome.action == "failed" else logger.info
    log("copy " + outcome.action, extra=outcome.log_fields())
    return outcome.action


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
