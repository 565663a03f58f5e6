"""The scaled giant-enterprise simulation (benchmark section 6): one enterprise of N due reminders (200,000)
shared by parallel workers, timed in AWS terms.

What runs is the deployed path, less Lambda itself: the dispatcher's one work message goes to an SQS queue
(moto, made from ``template.yaml``: the work queue with its DLQ and ``maxReceiveCount``). ``workers`` threads
(the template's ``WorkerMaximumConcurrency``) each act as one concurrent Lambda worker: receive up to
``WorkerBatchSize`` messages, run each through ``jobs.work.process_work_message`` with the worker's deadline
(the invocation's start + the function's ``Timeout`` - the worker's time margin, as ``functions/worker/worker.py``
computes it) and the queue as the sink of continuation messages, delete a message that completed and make a
failed one visible again at once (as if its visibility timeout had passed; the fifth receive goes to the DLQ).
Each worker has its own ``Services`` (HTTP sessions, OAuth token, Braze send pacer), as a Lambda container has.

AWS terms and the scale: Braze answers in 100 ms, license-manager and the LMS in 300 ms, DynamoDB in 10 ms a
request; the function's timeout is the template's (900 s) and the Braze budget the template's default
(``BRAZE_SEND_REQUESTS_PER_HOUR`` 100,000 shared by the workers). Every one of those times is multiplied by
``scale`` (0.2: Braze 20 ms, pages 60 ms, a timeout of 180 s, the pacer's interval a fifth); the wall time is
divided by it. What does not scale makes the figure pessimistic: the workers' CPU (threads of one process
sharing one GIL; each Lambda worker has a CPU of its own) and moto's.

The ledger: the test double (``tests/fakes.py``, the ledger protocol under one lock, shared by every worker as
the DynamoDB table is) behind a proxy that waits the scaled DynamoDB latency per request the real ledger would
make (``sent()``: one BatchGetItem per 100 keys; each claim, record, release or hold of a batch: one
TransactWriteItems). The real ledger cannot be used at this size: moto spends about 9 ms of CPU per reminder
parsing its update expressions (section 4), so 200,000 reminders would take it half an hour, whatever the
service does.

The Braze stand-in counts every recipient of every trigger request by license uuid, so the run shows that each
reminder went out exactly once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from perf.fleet import NOW, StandIns

BRAZE_SECONDS = 0.100  # AWS terms: one Braze request
UPSTREAM_SECONDS = 0.300  # one license-manager page, one LMS request
DYNAMODB_SECONDS = 0.010  # one DynamoDB request
GOAL_SECONDS = 15 * 60
BATCH_GET_KEYS = 100  # BatchGetItem's limit: the real ledger's sent() makes one request per 100 keys


class LatentLedger:
    """The ledger double behind the DynamoDB latency the real ledger would meet (see the module docstring)."""

    def __init__(self, ledger: Any, latency: float) -> None:
        self._ledger = ledger
        self._latency = latency
        self.requests = 0
        self._lock = threading.Lock()

    def _wait(self, requests: int) -> None:
        with self._lock:
            self.requests += requests
        time.sleep(self._latency * requests)

    def sent(self, keys: Any) -> Any:
        keys = list(keys)
        self._wait(max(1, math.ceil(len(keys) / BATCH_GET_KEYS)))
        return self._ledger.sent(keys)

    def states(self, keys: Any) -> Any:
        keys = list(keys)
        self._wait(max(1, math.ceil(len(keys) / BATCH_GET_KEYS)))
        return self._ledger.states(keys)

    def __getattr__(self, name: str) -> Any:  # claim_many, mark_sent_many, release_many, hold_many...
        method = getattr(self._ledger, name)
        if not callable(method):
            return method

        def one_request(*args: Any, **kwargs: Any) -> Any:
            self._wait(1)
            return method(*args, **kwargs)

        return one_request


class RecordingNotifier:
    """The error notifier's interface; counts what would have been published."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self._lock = threading.Lock()

    def publish(self, outcome: Any, *, run_id: str) -> int:
        entries = [
            f"{outcome.enterprise_customer_uuid}: {failure}" for failure in [*outcome.failures, *outcome.problems]
        ]
        with self._lock:
            self.published += entries
        return len(entries)


@dataclass
class GiantResult:
    reminders: int  # due
    workers: int
    batch_size: int
    scale: float
    timeout_seconds: float  # AWS terms
    wall_seconds: float  # measured
    aws_seconds: float  # wall / scale
    sent: int  # recipients of accepted trigger requests
    distinct: int
    duplicated: int  # recipients sent more than once
    messages: int  # work messages processed to completion (the first one and its continuations)
    continuation_messages: int
    deadline_handoffs: int  # continuation messages handed on because a worker neared its deadline
    invocations: int
    failed_deliveries: int
    dead_letters: int
    notifications: int
    longest_invocation_aws_seconds: float
    braze_requests: dict[str, int]
    dynamodb_requests: int
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.sent == self.reminders == self.distinct
            and not self.duplicated
            and not self.failed_deliveries
            and not self.dead_letters
            and not self.notifications
            and not self.errors
            and self.longest_invocation_aws_seconds <= self.timeout_seconds
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "within_goal": self.ok and self.aws_seconds <= GOAL_SECONDS}


def template_defaults() -> dict[str, Any]:
    """The worker's timeout, maximum concurrency and batch size, and the Braze budget, as the template sets them."""
    from devstack.aws import load_template

    template = load_template()
    parameters = template["Parameters"]
    return {
        "timeout": float(template["Resources"]["WorkerFunction"]["Properties"]["Timeout"]),
        "workers": int(parameters["WorkerMaximumConcurrency"]["Default"]),
        "batch_size": int(parameters["WorkerBatchSize"]["Default"]),
        "braze_budget": int(parameters["BrazeSendRequestsPerHour"]["Default"]),
    }


def simulate(
    stand_ins: StandIns,
    enterprise: str,
    reminders: int,
    *,
    moto_endpoint: str,
    scale: float = 0.2,
    timeout: float | None = None,
    run_id: str = "bench-giant",
) -> GiantResult:
    """One run of the simulation for ``enterprise`` (``reminders`` activated licenses, all due) on ``stand_ins``;
    ``timeout`` (AWS seconds) overrides the template's function timeout."""
    import boto3
    from devstack.aws import create_resources_from_template
    from tests.fakes import InMemoryLedger

    from license_notifications.config import load_settings
    from license_notifications.events import Job, WorkMessage
    from license_notifications.jobs.work import process_work_message
    from license_notifications.services import Services

    defaults = template_defaults()
    timeout = defaults["timeout"] if timeout is None else timeout
    workers, batch_size = defaults["workers"], defaults["batch_size"]
    queues = create_resources_from_template(moto_endpoint, suffix=None)
    settings = load_settings(
        {
            **stand_ins.settings_env("unused"),
            "WORK_QUEUE_URL": queues.work_queue_url,
            "WORKER_MAX_CONCURRENCY": str(workers),
            "BRAZE_SEND_REQUESTS_PER_HOUR": str(defaults["braze_budget"]),
        }
    )
    # The pacer's interval scaled with every other time (model_copy does not validate: the budget may exceed
    # Braze's 250,000 an hour here because the hour is shorter).
    settings = settings.model_copy(update={"braze_send_requests_per_hour": defaults["braze_budget"] / scale})
    ledger = LatentLedger(InMemoryLedger(), DYNAMODB_SECONDS * scale)
    notifier = RecordingNotifier()
    fleet = []
    for _ in range(workers):  # built here, not in the threads: boto3's default session is not thread-safe
        services = Services(settings)
        services.__dict__["ledger"] = ledger
        for adapter in ("license_manager", "lms", "braze", "queue"):
            getattr(services, adapter)
        fleet.append((services, boto3.client("sqs")))
    budget = (timeout - fleet[0][0].time_margin_seconds) * scale  # the worker's deadline, scaled

    stand_ins.set_latency(BRAZE_SECONDS * scale, upstream=UPSTREAM_SECONDS * scale)
    stand_ins.recipients()  # reset the count
    braze_before = stand_ins.usage()["braze"]
    first = WorkMessage(job=Job.EXPIRATION_REMINDERS, run_id=run_id, enterprise_customer_uuid=enterprise, as_of=NOW)
    fleet[0][0].queue.send([first])

    lock = threading.Lock()
    counts: Counter[str] = Counter()
    longest = [0.0]
    errors: list[str] = []

    def queue_empty(sqs: Any) -> bool:
        """No message waiting, delayed or in flight. A worker sends a message's continuations before it deletes
        the message, and a received message counts as in flight until then, so an empty queue means the run is
        over. (Counting workers busy in ``receive_message`` instead never ends when moto is slow: some worker is
        always inside a receive.)"""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = sqs.get_queue_attributes(QueueUrl=queues.work_queue_url, AttributeNames=names)["Attributes"]
        return all(attributes[name] == "0" for name in names)

    def invoke(services: Services, sqs: Any, messages: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        deadline = started + budget
        for raw in messages:
            outcome = None
            try:
                message = WorkMessage.model_validate_json(raw["Body"])
                outcome = process_work_message(
                    message, services.job_for, notifier, deadline=deadline, enqueue=services.queue.send
                )
            except Exception as exc:  # the handler would report the record as failed
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            if outcome is not None and not outcome.needs_redelivery:
                sqs.delete_message(QueueUrl=queues.work_queue_url, ReceiptHandle=raw["ReceiptHandle"])
                with lock:
                    counts["messages"] += 1
                    if message.plan_uuid is not None:
                        counts["continuations"] += 1
                        counts["deadline_handoffs"] += outcome.handed_on
            else:
                sqs.change_message_visibility(
                    QueueUrl=queues.work_queue_url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0
                )
                with lock:
                    counts["failed_deliveries"] += 1
        with lock:
            counts["invocations"] += 1
            longest[0] = max(longest[0], time.monotonic() - started)

    def worker(services: Services, sqs: Any) -> None:
        while True:
            reply = sqs.receive_message(
                QueueUrl=queues.work_queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0
            )
            messages = reply.get("Messages", [])
            if messages:
                invoke(services, sqs, messages)
            elif queue_empty(sqs):
                return
            else:
                time.sleep(0.005)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=pair, name=f"giant-worker-{i}") for i, pair in enumerate(fleet)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started

    stand_ins.set_latency(0.0, upstream=0.0)
    recipients = stand_ins.recipients()
    braze_after = stand_ins.usage()["braze"]
    sqs = fleet[0][1]
    dead = sqs.get_queue_attributes(QueueUrl=queues.work_dead_letter_queue_url, AttributeNames=["All"])["Attributes"]
    return GiantResult(
        reminders=reminders,
        workers=workers,
        batch_size=batch_size,
        scale=scale,
        timeout_seconds=timeout,
        wall_seconds=wall,
        aws_seconds=wall / scale,
        sent=recipients["total"],
        distinct=recipients["distinct"],
        duplicated=recipients["duplicated"],
        messages=counts["messages"],
        continuation_messages=counts["continuations"],
        deadline_handoffs=counts["deadline_handoffs"],
        invocations=counts["invocations"],
        failed_deliveries=counts["failed_deliveries"],
        dead_letters=int(dead["ApproximateNumberOfMessages"]) + int(dead["ApproximateNumberOfMessagesNotVisible"]),
        notifications=len(notifier.published),
        longest_invocation_aws_seconds=longest[0] / scale,
        braze_requests={
            path: n - braze_before.get(path, 0) for path, n in braze_after.items() if n > braze_before.get(path, 0)
        },
        dynamodb_requests=ledger.requests,
        errors=errors[:10] + notifier.published[:10],
    )


def print_giant(rows: list[dict[str, Any]], say: Any) -> None:
    say("6. Scaled giant-enterprise simulation (AWS terms: Braze 100 ms, license-manager / LMS 300 ms, DynamoDB 10 ms"
        " a request; every time x scale, the wall time / scale)")  # fmt: skip
    for r in rows:
        say(f"   {r['reminders']:,} due reminders, {r['workers']} workers x {r['batch_size']} messages, function "
            f"timeout {r['timeout_seconds']:.0f} s, scale {r['scale']}: {r['aws_seconds']:.0f} s in AWS terms "
            f"({r['aws_seconds'] / 60:.1f} min; wall {r['wall_seconds']:.1f} s)   goal <= 15 min, nothing failed   "
            f"{'PASS' if r['within_goal'] else 'FAIL'}")  # fmt: skip
        say(f"      sent {r['sent']:,} ({r['distinct']:,} distinct, {r['duplicated']} twice); messages "
            f"{r['messages']} (1 + {r['continuation_messages']} continuations, {r['deadline_handoffs']} handed on at a "
            f"deadline) in {r['invocations']} invocations, longest {r['longest_invocation_aws_seconds']:.0f} s; "
            f"failed deliveries {r['failed_deliveries']}, DLQ {r['dead_letters']}, notifications "
            f"{r['notifications']}")  # fmt: skip
        say(f"      requests: Braze {r['braze_requests']}, DynamoDB {r['dynamodb_requests']:,}")
        for error in r["errors"]:
            say(f"      ! {error}")
