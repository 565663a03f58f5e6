"""The SQS work-queue adapter: SendMessageBatch 10 at a time, retrying only the entries SQS refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from license_notifications.adapters.queue import EnqueueError, WorkQueue
from license_notifications.events import Job, WorkMessage


class FakeSqs:
    """Records SendMessageBatch calls; refuses the entries listed in ``refuse`` (one list per call)."""

    def __init__(self, refuse: list[list[dict]] | None = None):
        self.calls: list[list[dict]] = []
        self.refuse = list(refuse or [])

    def send_message_batch(self, QueueUrl, Entries):
        self.calls.append(Entries)
        failed = self.refuse.pop(0) if self.refuse else []
        return {"Successful": [], "Failed": failed}


def queue(sqs: FakeSqs, **kwargs) -> WorkQueue:
    """The adapter with its retry waits recorded instead of slept."""
    waits: list[float] = []
    adapter = WorkQueue(sqs, "url", sleep=waits.append, **kwargs)
    adapter.waits = waits  # type: ignore[attr-defined]
    return adapter


def messages(n: int) -> list[WorkMessage]:
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        WorkMessage(
            job=Job.EXPIRATION_REMINDERS,
            run_id="r",
            enterprise_customer_uuid=f"{i:08d}-0000-4000-8000-000000000000",
            as_of=as_of,
        )
        for i in range(n)
    ]


def test_sends_ten_per_call():
    sqs = FakeSqs()
    assert queue(sqs).send(messages(23)) == 23
    assert [len(c) for c in sqs.calls] == [10, 10, 3]
    bodies = [WorkMessage.model_validate_json(e["MessageBody"]) for call in sqs.calls for e in call]
    assert bodies == messages(23)


def test_only_refused_entries_are_retried():
    sqs = FakeSqs(refuse=[[{"Id": "3", "SenderFault": False, "Code": "InternalError"}]])
    adapter = queue(sqs)
    adapter.send(messages(5))
    assert [len(c) for c in sqs.calls] == [5, 1]
    assert len(adapter.waits) == 1  # one backoff, recorded rather than slept
    assert sqs.calls[1][0]["Id"] == "3"
    assert sqs.calls[1][0]["MessageBody"] == sqs.calls[0][3]["MessageBody"]


def test_entries_still_refused_after_the_attempts_raise():
    refusal = [{"Id": "0", "SenderFault": False, "Code": "ServiceUnavailable"}]
    sqs = FakeSqs(refuse=[refusal, refusal, refusal])
    with pytest.raises(EnqueueError):
        queue(sqs, attempts=3).send(messages(1))
    assert len(sqs.calls) == 3


def test_a_sender_fault_is_not_retried():
    sqs = FakeSqs(refuse=[[{"Id": "0", "SenderFault": True, "Code": "InvalidMessageContents"}]])
    with pytest.raises(RuntimeError, match="sender fault"):
        queue(sqs).send(messages(2))
    assert len(sqs.calls) == 1
