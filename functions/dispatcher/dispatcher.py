"""Dispatcher Lambda: schedule / manual invoke -> one SQS work message per enterprise.

Wiring only; the logic is license_notifications.jobs.dispatch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from license_notifications.events import DispatchRequest
from license_notifications.jobs.dispatch import dispatch
from license_notifications.lambda_runtime import powertools, services

logger, metrics = powertools()
tracer = Tracer()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=DispatchRequest)
    svc = services()
    result = dispatch(
        request, settings=svc.settings, license_manager=svc.license_manager, queue=svc.queue, notifier=svc.notifier
    )
    metrics.add_metric(name="EnterprisesEnqueued", unit=MetricUnit.Count, value=len(result.enterprise_customer_uuids))
    metrics.add_metric(
        name="InvalidEnterpriseUuids", unit=MetricUnit.Count, value=len(result.invalid_enterprise_customer_uuids)
    )
    return result.as_json()
