"""``license-notifications redrive``: move the work queue's dead letters back to it, once what made them fail
is fixed; a redrive never sends twice, as the sends already recorded are skipped. SQS ``StartMessageMoveTask``
does the move. When to use it: docs/operations.md#redrive-dead-letters-back-to-the-queue.

The dead-letter queue is the work queue's own (its ``RedrivePolicy``), so the command needs only
``WORK_QUEUE_URL``. An SQS endpoint that is not AWS's own (``AWS_ENDPOINT_URL``: moto, the local stack, which
has no ``StartMessageMoveTask``) gets the messages moved one by one instead (receive, send to the work queue,
then delete): the same outcome, slower.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RedriveResult:
    dead_letter_queue_arn: str
    work_queue_arn: str
    messages: int  # in the DLQ before the move (approximate, as SQS counts)
    moved: bool
    how: str  # "StartMessageMoveTask <handle>", "one by one", or "dry run"


def redrive(sqs: Any, work_queue_url: str, *, dry_run: bool = False) -> RedriveResult:
    attributes = sqs.get_queue_attributes(QueueUrl=work_queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])
    attributes = attributes["Attributes"]
    if "RedrivePolicy" not in attributes:
        raise ValueError(f"{work_queue_url} has no dead-letter queue (no RedrivePolicy)")
    work_arn = attributes["QueueArn"]
    dlq_arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    dlq_url = sqs.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"]
    count = int(
        sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    if dry_run or count == 0:
        return RedriveResult(dlq_arn, work_arn, count, False, "dry run" if dry_run else "nothing to move")
    if not _is_aws(sqs.meta.endpoint_url):
        return RedriveResult(dlq_arn, work_arn, _move_one_by_one(sqs, dlq_url, work_queue_url), True, "one by one")
    handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=work_arn)["TaskHandle"]
    return RedriveResult(dlq_arn, work_arn, count, True, f"StartMessageMoveTask {handle}")


def _is_aws(endpoint_url: str) -> bool:
    host = urlsplit(endpoint_url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _move_one_by_one(sqs: Any, dlq_url: str, work_queue_url: str) -> int:
    """Receive, send on, delete: a message is deleted only after the work queue took it."""
    moved = 0
    while True:
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(QueueUrl=work_queue_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
