"""What the Lambda handlers share: Powertools objects, the per-container Services, metric names.

Handlers stay wiring only; everything here is created once per container and reused. Importing this
module stays light (Powertools' logger and metrics only): the application (pydantic models, the adapters'
requests / botocore stacks) is imported by ``services()`` when the first event arrives, so the
import Lambda's init phase pays is Powertools' own.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from license_notifications.observability import METRICS_NAMESPACE, SERVICE_NAME, install_log_redaction

if TYPE_CHECKING:
    from license_notifications.outcome import EnterpriseOutcome
    from license_notifications.services import Services

# By job name (``Job``'s values): importing ``events`` here would bring pydantic into the worker's init.
METRIC_PREFIX = {
    "license_expiration_reminders": "ExpirationReminders",
    "license_utilization": "UtilizationEmails",
    "subscription_plan_expiration_emails": "PlanExpirationEmails",
}
PACKAGE_LOGGER = "license_notifications"


def powertools() -> tuple[Logger, Metrics]:
    # Before anything logs: every record of the process (ours, botocore's, urllib3's), at any level, through
    # any handler (Powertools' stdout, the Lambda runtime's on the root logger), without a secret or a JWT.
    install_log_redaction()
    logger = Logger(service=SERVICE_NAME)
    logging.getLogger(PACKAGE_LOGGER)  # registered now, though its modules are imported later
    # Route the library's stdlib loggers (license_notifications.*, which propagate to the package's logger)
    # through the same JSON formatter, so their records carry the correlation id and the Lambda context keys.
    copy_config_to_registered_loggers(source_logger=logger, include={PACKAGE_LOGGER})
    return logger, Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


@cache
def services() -> Services:
    """Settings are validated on the first invocation; a bad setting fails it with a message naming it."""
    from license_notifications.config import load_settings
    from license_notifications.services import Services

    return Services(load_settings())


def record_outcome_metrics(metrics: Metrics, job: str, outcome: EnterpriseOutcome) -> None:
    prefix = METRIC_PREFIX[job]
    if outcome.dry_run:
        metrics.add_metric(name=f"{prefix}DryRunWouldSend", unit=MetricUnit.Count, value=outcome.would_send)
        return
    metrics.add_metric(name=f"{prefix}Due", unit=MetricUnit.Count, value=outcome.due)
    metrics.add_metric(name=f"{prefix}Sent", unit=MetricUnit.Count, value=outcome.sent)
    metrics.add_metric(name=f"{prefix}Failed", unit=MetricUnit.Count, value=outcome.failed)
    metrics.add_metric(name=f"{prefix}Skipped", unit=MetricUnit.Count, value=sum(outcome.skipped.values()))
    # of Failed: refused by Braze, sent but unrecorded, malformed upstream records; of Sent: Braze's errors list
    metrics.add_metric(name=f"{prefix}Rejected", unit=MetricUnit.Count, value=outcome.rejected)
    metrics.add_metric(name=f"{prefix}Unrecorded", unit=MetricUnit.Count, value=outcome.unrecorded)
    metrics.add_metric(name="MalformedUpstreamRecords", unit=MetricUnit.Count, value=outcome.malformed)
    metrics.add_metric(name="BrazeRecipientErrors", unit=MetricUnit.Count, value=outcome.warned)
    metrics.add_metric(name="BrazeRequests", unit=MetricUnit.Count, value=outcome.braze_requests)
    metrics.add_metric(
        name="EnterprisesFailed" if outcome.error else "EnterprisesProcessed", unit=MetricUnit.Count, value=1
    )
