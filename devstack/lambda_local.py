"""Run the real Lambda handlers locally, the way AWS would invoke them.

- :func:`load_handler` imports ``functions/<name>/<name>.py`` by path (as the Lambda runtime does with the
  function's CodeUri on the path and the layer under /opt/python).
- :class:`LocalContext` is a LambdaContext with the fields Powertools reads.
- :class:`LocalEventSourceMapping` does what the SQS event source mapping does: receive up to ``batch_size``
  messages, invoke the worker with an ``aws:sqs`` event, delete the messages the function did not report in
  ``batchItemFailures``, and leave the rest for redelivery (and, after maxReceiveCount, the DLQ).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_handler(name: str) -> ModuleType:
    """Import ``functions/<name>/<name>.py`` once (module name ``<name>``) and return the module."""
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "functions" / name / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LocalContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 900_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The event Lambda's SQS event source mapping delivers, built from ReceiveMessage results."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclass
class DrainReport:
    invocations: int = 0
    processed: int = 0
    failed_deliveries: int = 0
    responses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)  # invocations that raised (e.g. every record failed)


class LocalEventSourceMapping:
    def __init__(
        self, sqs_client: Any, queue_url: str, handler: Any, *, batch_size: int = 5, function_name: str = "worker"
    ):
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.handler = handler
        self.batch_size = batch_size
        self.function_name = function_name

    def drain(self, *, redeliver_failures: bool = False, max_invocations: int = 100) -> DrainReport:
        """Invoke the worker until the queue is empty. Failed messages stay in flight (their visibility timeout
        runs) unless ``redeliver_failures`` makes them visible again at once, as if that time had passed."""
        report = DrainReport()
        while report.invocations < max_invocations:
            reply = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = reply.get("Messages", [])
            if not messages:
                break
            report.invocations += 1
            try:
                response = self.handler(sqs_event(messages, self.queue_arn), LocalContext(self.function_name))
            except Exception as exc:  # an invocation error: Lambda returns the whole batch to the queue
                report.errors.append(exc)
                response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
            report.responses.append(response)
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] in failed:
                    report.failed_deliveries += 1
                    if redeliver_failures:
                        self.sqs.change_message_visibility(
                            QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                        )
                else:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
                    report.processed += 1
        return report


def invoke(handler: Any, event: dict[str, Any], function_name: str) -> Any:
    """Invoke a handler with a JSON round-tripped event (as Lambda would deliver it)."""
    return handler(json.loads(json.dumps(event)), LocalContext(function_name))
