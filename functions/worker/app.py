"""Worker: each SQS message backs up one instance; only failed messages go back to the queue, and one that
can never be a work item goes straight to the dead-letter queue."""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.runtime import Runtime
from amikeeper.worker import DeadLetterError, MalformedWorkItem, WorkerDeps, back_up, receive

RUNTIME = Runtime(load_settings(os.environ))
DEPS = WorkerDeps(
    ec2=RUNTIME.ec2,
    notifier=RUNTIME.notifier,
    ledger=RUNTIME.ledger,
    dead_letters=RUNTIME.dead_letters,
    notes=RUNTIME.backup_notes,
)
logger, tracer, metrics = Logger(), Tracer(), Metrics()
# Always answer with batchItemFailures, even when every record failed: SQS retries exactly those.
# No model here: receive() validates each record itself, so that a malformed one is not retried in silence.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

OUTCOME_METRIC = {"created": "BackupsStarted", "duplicate": "DuplicateBackupsSkipped", "instance-gone": None}


@tracer.capture_method
def record_handler(record: SQSRecord) -> str:
    work = receive(record.raw_event, DEPS)  # a malformed message goes to the dead-letter queue at once
    if isinstance(work, MalformedWorkItem):
        metrics.add_metric("MalformedWorkItems", MetricUnit.Count, 1)
        logger.error(work.message, extra=work.log_fields())
        if not work.dead_lettered:
            raise DeadLetterError(work.message)  # fail the record: SQS delivers it again
        return "dead-lettered"
    item = work.body
    try:
        outcome = back_up(item, int(work.attributes.ApproximateReceiveCount), DEPS, datetime.now(UTC))
    except Exception:
        metrics.add_metric("BackupsFailed", MetricUnit.Count, 1)
        logger.exception("backup failed", extra={"instance_id": item.instance_id, "region": item.region})
        raise
    if outcome.note_error is not None:
        logger.warning(
            "backup note not written", extra={"image_id": outcome.image_id, "error": outcome.note_error}
        )
    if metric := OUTCOME_METRIC[outcome.status]:
        metrics.add_metric(metric, MetricUnit.Count, 1)
    logger.info(
        "backup " + outcome.status, extra={"instance_id": item.instance_id, "image_id": outcome.image_id}
    )
    return outcome.status


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
