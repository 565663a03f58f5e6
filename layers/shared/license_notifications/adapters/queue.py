"""The work queue (SQS): one message per enterprise, sent with SendMessageBatch (10 a call)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from license_notifications.events import WorkMessage

logger = logging.getLogger(__name__)

BATCH_SIZE = 10  # SQS SendMessageBatch maximum


class EnqueueError(Exception):
    def __init__(self, failed: dict[str, Any]):
        self.failed = failed
        super().__init__(f"{len(failed)} message(s) could not be enqueued")


class WorkQueue:
    def __init__(
        self, sqs_client: Any, queue_url: str, *, attempts: int = 3, sleep: Callable[[float], None] = time.sleep
    ):
        self._sqs = sqs_client
        self.url = queue_url
        self._attempts = attempts
        self._sleep = sleep

    def send(self, messages: Sequence[WorkMessage]) -> int:
        """Enqueue every message. Entries SQS refuses for its own reasons are retried (only those); what
        still fails, or what SQS calls a sender fault, raises."""
        for start in range(0, len(messages), BATCH_SIZE):
            pending = {str(i): m for i, m in enumerate(messages[start : start + BATCH_SIZE])}
            for attempt in Retrying(
                retry=retry_if_exception_type(EnqueueError),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(multiplier=0.2, max=2),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    pending = self._send_batch(pending)
        return len(messages)

    def _send_batch(self, entries: dict[str, WorkMessage]) -> dict[str, WorkMessage]:
        """Send, and return nothing; or raise EnqueueError after narrowing ``entries`` to the failed ones."""
        reply = self._sqs.send_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": entry_id, "MessageBody": m.model_dump_json()} for entry_id, m in entries.items()],
        )
        failed = reply.get("Failed", [])
        if not failed:
            return {}
        logger.warning("SQS refused %d of %d entries", len(failed), len(entries), extra={"sqs_failed": failed})
        if any(f.get("SenderFault") for f in failed):
            raise RuntimeError(f"SQS rejected messages as malformed (sender fault): {failed}")
        remaining = {f["Id"]: entries[f["Id"]] for f in failed}
        entries.clear()
        entries.update(remaining)
        raise EnqueueError(remaining)
