"""Region planner: plan one region of one planner tick and queue a work item per due instance (SPEC §6).

Fed by the planner's FIFO task queue one task at a time; see amikeeper.planner.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import RegionTaskEvent, parse_or_refuse
from amikeeper.planner import PlannerDeps, plan_region_task
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = PlannerDeps(ec2=RUNTIME.ec2, queue=RUNTIME.queue, notifier=RUNTIME.notifier, ledger=RUNTIME.ledger)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(RegionTaskEvent)
def handler(event: RegionTaskEvent, context: LambdaContext) -> dict[str, Any]:
    [record] = event.Records
    task = record.body
    logger.set_correlation_id(task.execution_id or record.messageId)
    plan = plan_region_task(task, RUNTIME.catalog(), RUNTIME.stack, DEPS)
    metrics.add_metric("InstancesSeen", MetricUnit.Count, plan.opted_in)
    metrics.add_metric("BackupsRequested", MetricUnit.Count, plan.enqueued)
    metrics.add_metric("InvalidPolicies", MetricUnit.Count, len(plan.invalid))
    # The heartbeat that the "planner stopped running" alarm watches: a region actually planned.
    metrics.add_metric("PlannerRuns", MetricUnit.Count, 1)
    answer = {
        "region": plan.region,
        "due": len(plan.due),
        "enqueued": plan.enqueued,
        "invalid": len(plan.invalid),
        "error": plan.error,
    }
    logger.info("planned region", extra=answer)
    return answer
