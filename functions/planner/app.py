"""Planner tick: queue a backup for every opted-in instance that is due (SPEC §6).

Short of time, it hands the rest of the tick to a new asynchronous invocation of itself (see
amikeeper.planner); that invocation's event is this tick plus a ``continuation``.
"""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from amikeeper.config import load_settings
from amikeeper.events import parse_or_refuse
from amikeeper.planner import Continuation, PlannerDeps, PlannerTick, TimeBudget, run_planner
from amikeeper.runtime import Runtime

RUNTIME = Runtime(load_settings(os.environ))
DEPS = PlannerDeps(ec2=RUNTIME.ec2, queue=RUNTIME.queue, notifier=RUNTIME.notifier, ledger=RUNTIME.ledger)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@parse_or_refuse(PlannerTick)
def handler(tick: PlannerTick, context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(tick.execution_id or context.aws_request_id)
    now = tick.scheduled_time or datetime.now(UTC)
    invoker = RUNTIME.self_invoker(context.invoked_function_arn)

    def hand_off(rest: Continuation) -> None:
        invoker.invoke_async(tick.continued(now, rest))

    run = run_planner(
        now,
        RUNTIME.settings.regions,
        RUNTIME.catalog(),
        RUNTIME.stack,
        DEPS,
        budget=TimeBudget(context.get_remaining_time_in_millis),
        continuation=tick.continuation,
        hand_off=hand_off,
    )
    for plan in run.plans:
        metrics.add_metric("InstancesSeen", MetricUnit.Count, plan.opted_in)
        metrics.add_metric("BackupsRequested", MetricUnit.Count, plan.enqueued)
        metrics.add_metric("InvalidPolicies", MetricUnit.Count, len(plan.invalid))
        logger.info(
            "planned region", extra={"region": plan.region, "due": len(plan.due), "error": plan.error}
        )
    if run.handed_off is not None:
        logger.info("handed the rest on", extra={"regions": list(run.handed_off.regions)})
    # The heartbeat that the "planner stopped running" alarm watches.
    metrics.add_metric("PlannerRuns", MetricUnit.Count, 1)
    return run.response()
