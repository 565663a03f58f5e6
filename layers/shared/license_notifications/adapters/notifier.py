"""Error notifications (SNS): every failure names the job, the enterprise, the admin or licenses when there
are some, the error and the run id (ADR 9: "a notification with information on which enterprise customer
and/or admin the error occurred for"). Publishing never raises: a notification problem is logged, it must
not turn a processed enterprise into a failed one."""

from __future__ import annotations

import json
import logging
from typing import Any

from license_notifications.outcome import EnterpriseOutcome, Failure

logger = logging.getLogger(__name__)

MAX_SUBJECTS_LISTED = 50  # a batch is at most 50 recipients
SNS_SUBJECT_LIMIT = 100


def failure_message(failure: Failure, *, run_id: str, dry_run: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "job": failure.job,
        "run_id": run_id,
        "dry_run": dry_run,
        "enterprise_customer_uuid": failure.enterprise_customer_uuid,
        "error": failure.error,
    }
    if failure.subject_kind == "admin":
        message["admin_ids"] = list(failure.subjects[:MAX_SUBJECTS_LISTED])
    elif failure.subject_kind == "license":
        message["license_uuids"] = list(failure.subjects[:MAX_SUBJECTS_LISTED])
    if failure.subjects:
        message["recipients_affected"] = failure.count
    return message


def _printable(text: str) -> str:
    return "".join(c for c in text if " " <= c <= "~")


class ErrorNotifier:
    def __init__(self, sns_client: Any, topic_arn: str):
        self._sns = sns_client
        self.topic_arn = topic_arn

    def publish_run_failure(self, *, job: str, error: str, run_id: str | None = None) -> None:
        """A failure before any enterprise was reached (the dispatcher could not plan or enqueue the run)."""
        message = {"job": job, "run_id": run_id, "enterprise_customer_uuid": None, "error": error}
        try:
            self._sns.publish(
                TopicArn=self.topic_arn,
                Subject=f"license-notifications: {job} run failed"[:SNS_SUBJECT_LIMIT],
                Message=json.dumps(message, indent=2),
            )
        except Exception:
            logger.exception("could not publish the error notification", extra={"notification": message})

    def publish_message_failure(
        self,
        *,
        message_id: str,
        error: str,
        job: str | None = None,
        enterprise_customer_uuid: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """A work message the worker could not read (not JSON, or not a valid work message): it names the SQS
        message id, and the job, enterprise and run when they could be read from the body."""
        message = {
            "job": job,
            "run_id": run_id,
            "enterprise_customer_uuid": enterprise_customer_uuid,
            "sqs_message_id": message_id,
            "error": error,
        }
        # Only the message id in the subject: the other values come from an unreadable body (SNS subjects
        # must be printable ASCII without line breaks).
        try:
            self._sns.publish(
                TopicArn=self.topic_arn,
                Subject=_printable(f"license-notifications: unreadable work message {message_id}")[:SNS_SUBJECT_LIMIT],
                Message=json.dumps(message, indent=2),
            )
        except Exception:
            logger.exception("could not publish the error notification", extra={"notification": message})

    def publish(self, outcome: EnterpriseOutcome, *, run_id: str) -> int:
        """Publish one notification per failure of ``outcome``; returns how many were published."""
        published = 0
        for failure in [*outcome.failures, *outcome.problems]:
            message = failure_message(failure, run_id=run_id, dry_run=outcome.dry_run)
            who = f"enterprise {failure.enterprise_customer_uuid}"
            if failure.subject_kind == "admin" and failure.subjects:
                who += f" admin {', '.join(failure.subjects[:3])}" + ("..." if failure.count > 3 else "")
            subject = f"license-notifications: {failure.job} failed for {who}"[:SNS_SUBJECT_LIMIT]
            try:
                self._sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=json.dumps(message, indent=2))
                published += 1
            except Exception:
                logger.exception("could not publish the error notification", extra={"notification": message})
        return published
