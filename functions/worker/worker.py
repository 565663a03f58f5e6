"""Worker Lambda: SQS work messages -> one enterprise each, partial batch failures reported to SQS.

Wiring only; the logic is license_notifications.jobs.work. A message whose enterprise did not complete
raises, so BatchProcessor reports it in ``batchItemFailures`` and SQS delivers it again (then to the DLQ).
A message that cannot be read (not JSON, not a valid work message) fails the same way, after an error
notification naming its SQS message id.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from license_notifications.lambda_runtime import powertools, record_outcome_metrics, services
from license_notifications.observability import mask_emails

logger, metrics = powertools()
tracer = Tracer()
# A batch whose every record failed is answered like any other, every record in batchItemFailures, instead of
# failing the invocation (Powertools' default): each failure has already been logged and announced, and SQS
# redelivers exactly the same messages either way.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


# What an unreadable message's notification carries from its body (each value cut to this length).
READABLE_FIELDS = ("job", "run_id", "enterprise_customer_uuid")
MAX_FIELD_CHARS = 200
MAX_ERROR_CHARS = 2000


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    # The application is imported with the first record, not at init (see lambda_runtime): cached afterwards.
    from aws_lambda_powertools.utilities.parser import parse

    from license_notifications.events import WorkMessage
    from license_notifications.jobs.work import EnterpriseFailedError, process_work_message

    try:
        message = parse(event=record.body, model=WorkMessage)
    except ValueError as exc:  # not JSON, or not a work message (pydantic's ValidationError is a ValueError)
        report_unreadable_message(record, exc)
        raise
    logger.set_correlation_id(message.run_id)
    # No new Braze request or page after this: what Braze accepts always has time to be recorded in the ledger.
    svc = services()
    deadline = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000 - svc.time_margin_seconds
    keys = {"job": message.job.value, "enterprise_customer_uuid": str(message.enterprise_customer_uuid)}
    with logger.append_context_keys(**keys):  # this record's keys only, whatever happens
        outcome = process_work_message(message, svc.job_for, svc.notifier, deadline=deadline, enqueue=svc.queue.send)
    record_outcome_metrics(metrics, message.job, outcome)
    if outcome.needs_redelivery:  # failures a redelivery cannot change are reported, not retried
        raise EnterpriseFailedError(outcome)
    return {"enterprise_customer_uuid": outcome.enterprise_customer_uuid, "sent": outcome.sent}


def readable_fields(body: str) -> dict[str, str]:
    """The job, run id and enterprise of a message body that did not validate, those that can be read."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: mask_emails(value[:MAX_FIELD_CHARS]) for key in READABLE_FIELDS if isinstance(value := data.get(key), str)
    }


def report_unreadable_message(record: SQSRecord, exc: Exception) -> None:
    """Log, count and announce (when ERROR_TOPIC_ARN is set) a message that cannot be processed. Never raises:
    the record fails either way."""
    fields = readable_fields(record.body)
    error = mask_emails(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_CHARS]  # the body may echo an email
    logger.set_correlation_id(fields.get("run_id"))
    logger.error(
        "Unreadable work message %s: %s",
        record.message_id,
        error,
        extra={"sqs_message_id": record.message_id, **fields},
    )
    metrics.add_metric(name="MalformedMessages", unit=MetricUnit.Count, value=1)
    try:
        notifier = services().notifier
        if notifier is not None:
            notifier.publish_message_failure(message_id=record.message_id, error=error, **fields)
    except Exception:  # e.g. a setting that does not validate: still report the record as failed
        logger.exception("could not announce the unreadable work message %s", record.message_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
