"""Worker Lambda: SQS work messages -> one enterprise each, partial batch failures reported to SQS.

Wiring only; the logic is license_notifications.jobs.work. A message whose enterprise did not complete
raises, so BatchProcessor reports it in ``batchItemFailures`` and SQS delivers it again (then to the DLQ).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from license_notifications.events import WorkMessage
from license_notifications.jobs.work import EnterpriseFailedError, process_work_message
from license_notifications.lambda_runtime import powertools, record_outcome_metrics, services

logger, metrics = powertools()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    logger.remove_keys(["job", "enterprise_customer_uuid"])  # no stale keys from the previous record
    message = parse(event=record.body, model=WorkMessage)
    logger.set_correlation_id(message.run_id)
    logger.append_keys(job=message.job.value, enterprise_customer_uuid=str(message.enterprise_customer_uuid))
    # No new Braze request or page after this: what Braze accepts always has time to be recorded in the ledger.
    svc = services()
    deadline = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000 - svc.time_margin_seconds
    outcome = process_work_message(message, svc.job_for, svc.notifier, deadline=deadline)
    record_outcome_metrics(metrics, message.job, outcome)
    if outcome.needs_redelivery:  # failures a redelivery cannot change are reported, not retried
        raise EnterpriseFailedError(outcome)
    return {"enterprise_customer_uuid": outcome.enterprise_customer_uuid, "sent": outcome.sent}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
