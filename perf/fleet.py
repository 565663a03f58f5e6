"""The benchmark's servers and workers: stand-ins and moto each in a process of their own, worker threads in
this one, request counting, and license-manager's own Braze request pattern replayed.

* :func:`start_stand_ins`: the LMS, license-manager and Braze stand-ins in a child process, serving enterprises
  of activated licenses (each plan expiring in 10 days, so every license is due); Braze's ``latency`` is set
  at run time. ``/users/export/ids`` and ``/users/track`` (which the service never calls, license-manager
  does) are answered 201 through the stand-in's ``respond_next``, so the replay pays the same latency.
* :class:`Moto`: a :class:`devstack.aws.MotoStack` in a child process (the giant-enterprise simulation's work
  queue, ``perf/giant.py``).
* :class:`LedgerEngine`: AWS's DynamoDB Local (``devstack/dynamodb_local.py``, a java child process) holding the
  fleet's ledger tables, made from the template's; its CPU time, and :meth:`LedgerEngine.calibrate`: its time
  per request for the ledger's three kinds (the service's ledger claiming 50 keys, recording 50 sends, reading
  100 keys with ``sent()``: one request each), measured one request at a time, as the floor of a run on it.
* :class:`AwsRequestCounter`: every HTTP request botocore sends in this process (each attempt, retries
  included), by service and operation, through botocore's global history recorder. It sees every client,
  however it was built (pynamodb's, boto3's, a plain ``botocore.session`` one), so it counts the ledger the
  same way whichever implementation it has.
* :func:`run_fleet`: N worker threads take enterprises from one shared queue, each with its own
  ``Services`` (HTTP sessions, token, ledger client), as N concurrent Lambda workers would; the job is the
  real one (``Services.expiration_reminders()``, ``run_enterprise``); the ledger the real one on a
  :class:`LedgerEngine`'s fresh table, or a double.
* :func:`replay_license_manager`: license-manager's pattern (contract section 5), sequential: per batch of 25
  reminders ``/users/export/ids``, ``/users/alias/new``, ``/users/track`` and one trigger.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.history

# The wall clock's hour: the ledger's records expire (TTL) 90 days after their plan, and DynamoDB Local deletes
# expired items as it goes (within a second, often), so a fixed date months back would have the engine deleting
# the run's records while it writes them.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
BRAZE_KEY = "bench-key"
CAMPAIGN = "bench-campaign"
ALIAS_LABEL = "Enterprise"
LICENSE_MANAGER_BATCH = 25  # license-manager's reminders per trigger (contract section 5)
LICENSE_MANAGER_CALLS = ("/users/export/ids", "/users/alias/new", "/users/track", "/campaigns/trigger/send")
BRAZE_SEND_PATHS = ("/users/alias/new", "/campaigns/trigger/send")  # what the service calls per batch
_SPAWN = multiprocessing.get_context("spawn")


# --------------------------------------------------------------------------------------- request counting
class AwsRequestCounter(botocore.history.BaseHistoryHandler):
    """Counts botocore's ``HTTP_REQUEST`` history events (one per attempt) by (service, operation).

    The service is read from the request's SigV4 credential scope, the operation from ``X-Amz-Target`` (the
    JSON protocols: DynamoDB, SQS) when there is one."""

    _installed: AwsRequestCounter | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    @classmethod
    def install(cls) -> AwsRequestCounter:
        """The process's counter, registered on botocore's global history recorder once."""
        if cls._installed is None:
            counter = cls()
            recorder = botocore.history.get_global_history_recorder()
            recorder.add_handler(counter)
            recorder.enable()
            cls._installed = counter
        return cls._installed

    def emit(self, event_type: str, payload: Any, source: str) -> None:
        if event_type != "HTTP_REQUEST":
            return
        headers = payload.get("headers") or {}
        authorization = _text(headers.get("Authorization", ""))
        scope = authorization.partition("Credential=")[2].split(",", 1)[0].split("/")
        service = scope[3] if len(scope) > 3 else "?"
        operation = _text(headers.get("X-Amz-Target", "")).rpartition(".")[2] or "?"
        with self._lock:
            self._counts[(service, operation)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    @staticmethod
    def service(counts: Counter[tuple[str, str]], service: str) -> Counter[str]:
        """``{operation: requests}`` of one service in a snapshot (or a difference of two)."""
        return Counter({op: n for (svc, op), n in counts.items() if svc == service and n > 0})


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------- child processes
class _Child:
    """A child process answering ``(command, *args)`` messages on a pipe."""

    def __init__(self, target: Any, *args: Any) -> None:
        self._conn, child = _SPAWN.Pipe()
        self._process = _SPAWN.Process(target=target, args=(child, *args), daemon=True)
        self._process.start()
        self.hello = self._receive()

    def _receive(self) -> Any:
        reply = self._conn.recv()
        if isinstance(reply, BaseException):
            raise RuntimeError(f"benchmark child process failed: {reply!r}") from reply
        return reply

    def ask(self, *message: Any) -> Any:
        self._conn.send(message)
        return self._receive()

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
            self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _serve_commands(conn: Any, handlers: dict[str, Any]) -> None:
    while True:
        command, *args = conn.recv()
        if command == "stop":
            return
        try:
            conn.send(handlers[command](*args))
        except Exception as exc:  # report, keep serving
            conn.send(exc)


@dataclass(frozen=True)
class Group:
    """``enterprises`` enterprises of ``licenses`` activated licenses each, named ``<name>-<i>``."""

    name: str
    enterprises: int
    licenses: int


def _stand_ins_main(conn: Any, groups: list[Group], now: datetime) -> None:
    try:
        from devstack.dataset import Dataset
        from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn, Reply

        dataset = Dataset(now=now)
        uuids: dict[str, list[str]] = {}
        for group in groups:
            for i in range(group.enterprises):
                customer = dataset.add_customer(f"{group.name} {i}", slug=f"{group.name}-{i}")
                plan = dataset.add_plan(customer.uuid, title=f"{group.name} plan {i}", expires_in_days=10)
                dataset.add_licenses(plan.uuid, "activated", group.licenses)
                uuids.setdefault(group.name, []).append(customer.uuid)
        lms = LmsStandIn(dataset).start()
        lm = LicenseManagerStandIn(dataset, lms.registry, clock=lambda: now)
        _remember_plan_licenses(lm)
        lm.start()
        braze = BrazeStandIn(BRAZE_KEY).start()
    except Exception as exc:
        conn.send(exc)
        return
    # license-manager's alias step also calls these two; the service never does.
    forever = 10**12
    braze.respond_next(
        "/users/export/ids", lambda _: Reply(201, {"users": [], "invalid_user_ids": [], "message": "success"}),
        times=forever,
    )  # fmt: skip
    braze.respond_next("/users/track", lambda _: Reply(201, {"message": "success"}), times=forever)

    # Count Braze requests by path here, and keep neither the request log nor the outbox: a run of 200,000
    # reminders would hold every request body twice (about a gigabyte) in this process.
    counts: Counter[str] = Counter()
    recipients: Counter[str] = Counter()  # every recipient of a trigger request, by license uuid (or user id)
    counts_lock = threading.Lock()
    answer = braze.respond

    def counting(request: Any) -> Any:
        path = request.path.rstrip("/")
        reply = answer(request)
        with counts_lock:
            counts[path] += 1
        if path == "/campaigns/trigger/send" and 200 <= reply.status_code < 300:
            body = request.json_or_none() or {}
            sent = [_recipient_key(r) for r in body.get("recipients", []) if isinstance(r, dict)]
            with counts_lock:
                recipients.update(sent)
        return reply

    braze.respond = counting  # type: ignore[method-assign]

    def trim() -> None:
        while True:
            time.sleep(1.0)
            for server in (braze, lm, lms):
                server.clear_requests()
            braze.outbox.clear()

    threading.Thread(target=trim, name="trim-logs", daemon=True).start()

    def set_latency(seconds: float, upstream: float = 0.0) -> None:
        braze.latency = seconds
        lm.latency = lms.latency = upstream

    def usage() -> dict[str, Any]:
        with counts_lock:
            return {"cpu": time.process_time(), "braze": dict(counts)}

    def take_recipients() -> dict[str, int]:
        with counts_lock:
            taken = dict(recipients)
            recipients.clear()
        return {
            "total": sum(taken.values()),
            "distinct": len(taken),
            "duplicated": sum(1 for n in taken.values() if n > 1),
        }

    conn.send(
        {
            "enterprises": uuids,
            "lms": lms.url,
            "license_manager": lm.url,
            "braze": braze.url,
            "client_id": lms.client_id,
            "client_secret": lms.client_secret,
        }
    )
    try:
        _serve_commands(conn, {"latency": set_latency, "usage": usage, "recipients": take_recipients})
    finally:
        for server in (braze, lm, lms):
            server.stop()


def _remember_plan_licenses(lm: Any) -> None:
    """The license-manager stand-in filters and sorts a plan's whole license list for every page it serves,
    so paging through 200,000 licenses would cost it minutes. The benchmark's dataset does not change while it
    runs: keep each plan's sorted list for the next page of the same query."""
    sort = lm._plan_licenses
    remembered: dict[tuple[str, frozenset[str]], list[Any]] = {}
    lock = threading.Lock()

    def remembering(plan_uuid: str, statuses: frozenset[str]) -> list[Any]:
        with lock:
            if (plan_uuid, statuses) not in remembered:
                remembered[(plan_uuid, statuses)] = sort(plan_uuid, statuses)
            return list(remembered[(plan_uuid, statuses)])

    lm._plan_licenses = remembering


def _recipient_key(recipient: dict[str, Any]) -> str:
    properties = recipient.get("trigger_properties") or {}
    alias = (recipient.get("user_alias") or {}).get("alias_name")
    return str(properties.get("license_uuid") or recipient.get("external_user_id") or alias)


class StandIns(_Child):
    """The stand-ins' child process: ``hello`` has their URLs and ``enterprises`` by group name."""

    def __init__(self, groups: Iterable[Group]) -> None:
        super().__init__(_stand_ins_main, list(groups), NOW)  # this process's NOW: the child's import may be later

    def enterprises(self, group: str) -> list[str]:
        return list(self.hello["enterprises"].get(group, []))

    def settings_env(self, ledger_table: str = "unused") -> dict[str, str]:
        """The service's settings (environment variables) pointing at these stand-ins."""
        h = self.hello
        return {
            "LICENSE_MANAGER_URL": h["license_manager"],
            "LMS_URL": h["lms"],
            "OAUTH_CLIENT_ID": h["client_id"],
            "OAUTH_CLIENT_SECRET": h["client_secret"],
            "BRAZE_API_URL": h["braze"],
            "BRAZE_API_KEY": BRAZE_KEY,
            "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": CAMPAIGN,
            "LEDGER_TABLE_NAME": ledger_table,
        }

    def set_latency(self, braze: float, *, upstream: float = 0.0) -> None:
        """Braze's latency per request, and license-manager's and the LMS's (``upstream``)."""
        self.ask("latency", braze, upstream)

    def recipients(self) -> dict[str, int]:
        """Trigger recipients since the last call: total, distinct, and how many were sent more than once."""
        return self.ask("recipients")

    def usage(self) -> dict[str, Any]:
        return self.ask("usage")


# -- moto
def _moto_main(conn: Any) -> None:
    try:
        from devstack.aws import MotoStack, create_resources_from_template, load_template

        moto = MotoStack().start()
        template = load_template()
        ledger_only = {**template, "Resources": {"LedgerTable": template["Resources"]["LedgerTable"]}}
    except Exception as exc:
        conn.send(exc)
        return

    def table() -> str:
        return create_resources_from_template(moto.endpoint_url, ledger_only, suffix=None).ledger_table_name

    conn.send({"env": moto.env()})
    try:
        _serve_commands(conn, {"cpu": time.process_time, "table": table})
    finally:
        moto.stop()


class Moto(_Child):
    """moto's child process: ``env`` points boto3 / botocore at it (every service, DynamoDB included);
    ``table()`` makes an empty ledger table from the template there (the fleet's previous engine, ``--moto``)."""

    name = "moto"

    def __init__(self) -> None:
        super().__init__(_moto_main)
        self.env: dict[str, str] = self.hello["env"]

    def table(self) -> str:
        return self.ask("table")

    def cpu(self) -> float:
        return self.ask("cpu")


# -- DynamoDB Local
CALIBRATION_ROUNDS = 20  # claim and record transactions measured (after a few untimed ones), and reads
CALIBRATION_WARM_UP = 5
TRANSACTION_KEYS = 50  # the job's batch: one claim and one record transaction of 50 keys
READ_KEYS = 100  # BatchGetItem's limit: the ledger's sent() reads a page of 500 keys in 5 requests


@dataclass
class Calibration:
    """DynamoDB Local's time per request, measured one request at a time from this process: the wall time of
    each request less this process's CPU time meanwhile (botocore's serialising and parsing), so what is left
    is the engine's (and the loopback's). Medians of ``rounds``."""

    claim_seconds: float  # the ledger's claim of 50 new keys: one TransactWriteItems
    record_seconds: float  # the ledger's record of those 50 sends: one TransactWriteItems (sent_at, run_id: indexed)
    read_seconds: float  # the ledger's sent() of 100 keys: one BatchGetItem (eventually consistent, as the run's)
    client_cpu_seconds: float  # median of this process's CPU per request (excluded above)
    rounds: int

    @classmethod
    def mean(cls, *calibrations: Calibration) -> Calibration:
        """The mean of several (e.g. one before a run and one after it: the engine's speed drifts with the
        machine's load)."""
        n = len(calibrations)
        return cls(
            claim_seconds=sum(c.claim_seconds for c in calibrations) / n,
            record_seconds=sum(c.record_seconds for c in calibrations) / n,
            read_seconds=sum(c.read_seconds for c in calibrations) / n,
            client_cpu_seconds=sum(c.client_cpu_seconds for c in calibrations) / n,
            rounds=sum(c.rounds for c in calibrations),
        )

    @property
    def transaction_seconds(self) -> float:
        """A transaction of the fleet's: as many claims as records, all of 50 keys."""
        return (self.claim_seconds + self.record_seconds) / 2

    def floor(self, requests: Counter[str]) -> float:
        """The seconds the engine needs for ``requests`` (by operation) served one at a time: transactions and
        batch reads at their measured time; any other operation counted at a read's (the fleet makes none)."""
        transactions = requests.get("TransactWriteItems", 0)
        return transactions * self.transaction_seconds + (sum(requests.values()) - transactions) * self.read_seconds


class LedgerEngine:
    """DynamoDB Local in a child process: ``env`` sends this process's DynamoDB clients (and nothing else) to it;
    ``table()`` makes an empty ledger table from the template (one per run: every run sends to the same
    licenses); ``cpu()`` is the java process's CPU seconds so far."""

    name = "DynamoDB Local"

    def __init__(self, local: Any = None) -> None:
        """``local``: a running :class:`devstack.dynamodb_local.DynamoDBLocal` to use (left running on close);
        by default one is started here, warmed up, and stopped on close."""
        from devstack.aws import load_template
        from devstack.dynamodb_local import DynamoDBLocal

        self._owned = local is None
        self._local = DynamoDBLocal().start() if local is None else local
        if self._owned:
            self._local.warm_up()
        template = load_template()
        self._ledger_only = {**template, "Resources": {"LedgerTable": template["Resources"]["LedgerTable"]}}
        self.endpoint_url = self._local.endpoint_url
        self.env = self._local.env(credentials=True)
        self.tables: list[str] = []

    def table(self) -> str:
        from devstack.aws import create_tables_from_template

        name = create_tables_from_template(self.endpoint_url, self._ledger_only, suffix=None)["LedgerTable"]
        self.tables.append(name)
        return name

    def drop_tables(self) -> None:
        """Drop the tables made so far (a run's 10,000 records would otherwise stay in the engine's memory)."""
        client = self._local.client()
        for name in self.tables:
            client.update_table(TableName=name, DeletionProtectionEnabled=False)
            client.delete_table(TableName=name)
        self.tables.clear()

    def cpu(self) -> float:
        """The java process's user + system CPU seconds (Linux ``/proc``)."""
        fields = Path(f"/proc/{self._local.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def calibrate(self, rounds: int = CALIBRATION_ROUNDS) -> Calibration:
        """The engine's time per request of each kind the fleet makes, on a table of its own (module docstring).

        The requests are the service's own: its ledger's public calls, one at a time, each one request in the
        steady state (``claim_many`` and ``mark_sent_many`` of 50 new keys, ``sent()`` of 100), so the items,
        conditions and indexes are those of the run. This process's environment must send DynamoDB clients
        here (``env``). A call that made more than one request (a retry) counts as that many."""
        from license_notifications.adapters.ledger import Ledger

        ledger, counter = Ledger(self.table()), AwsRequestCounter.install()
        times: dict[str, list[float]] = {"claim": [], "record": [], "read": []}
        cpu: list[float] = []
        keys: list[str] = []

        def timed(kind: str, measured: bool, call: Any, *args: Any, **kwargs: Any) -> Any:
            before = counter.snapshot()
            wall, used = time.perf_counter(), time.process_time()
            result = call(*args, **kwargs)
            wall, used = time.perf_counter() - wall, time.process_time() - used
            made = counter.snapshot()
            made.subtract(before)
            requests = max(1, sum(AwsRequestCounter.service(made, "dynamodb").values()))
            if measured:
                times[kind].append(max(0.0, wall - used) / requests)
                cpu.append(used / requests)
            return result

        expires = NOW + timedelta(days=100)
        for i in range(CALIBRATION_WARM_UP + rounds):
            measured = i >= CALIBRATION_WARM_UP
            batch = [f"expiration_reminder#calibration-{i:03d}-{j:03d}" for j in range(TRANSACTION_KEYS)]
            keys += batch
            requests = [{"key": key, "kind": "expiration_reminder", "run_id": "calibration", "expires_at": expires,
                         "enterprise_customer_uuid": f"00000000-0000-4000-8000-{i % 20:012d}",
                         "subject_uuid": key.rpartition("-")[2]} for key in batch]  # fmt: skip
            claims = timed("claim", measured, ledger.claim_many, requests)
            taken = [claim for claim in claims if claim is not None]
            timed("record", measured, ledger.mark_sent_many, taken, as_of=NOW, run_id="calibration",
                  dispatch_id=f"calibration-{i}")  # fmt: skip
            if len(keys) >= READ_KEYS:
                timed("read", measured, ledger.sent, keys[-READ_KEYS:])
        return Calibration(
            claim_seconds=statistics.median(times["claim"]),
            record_seconds=statistics.median(times["record"]),
            read_seconds=statistics.median(times["read"]),
            client_cpu_seconds=statistics.median(cpu),
            rounds=rounds,
        )

    def close(self) -> None:
        self.drop_tables()
        if self._owned:
            self._local.stop()

    def __enter__(self) -> LedgerEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- the fleet
@dataclass
class FleetResult:
    concurrency: int
    enterprises: int
    reminders: int  # sent, over every enterprise
    seconds: float
    braze_requests: int  # the service's Braze clients' own count (every attempt)
    braze_seen: int  # alias + trigger requests the stand-in answered (a cross-check)
    dynamodb_requests: Counter[str]  # by operation, every attempt
    worker_cpu: float  # this process, every thread
    engine_cpu: float | None  # the ledger's engine (DynamoDB Local's java process); None with a double
    stand_ins_cpu: float
    expected: int = 0  # licenses due over every enterprise (all of them: each plan expires within the window)
    skipped: dict[str, int] = field(default_factory=dict)  # e.g. claimed_elsewhere: a claim this run lost
    failures: list[str] = field(default_factory=list)  # enterprises that failed their last allowed attempt
    redelivered: list[str] = field(default_factory=list)  # attempts that failed and went back to the queue

    @property
    def dynamodb_total(self) -> int:
        return sum(self.dynamodb_requests.values())


def run_fleet(
    stand_ins: StandIns,
    enterprises: list[str],
    *,
    concurrency: int,
    run_id: str,
    ledger_factory: Any = None,
    engine: LedgerEngine | Moto | None = None,
) -> FleetResult:
    """Every enterprise through the real job, ``concurrency`` workers taking them from one queue.

    The ledger is the real one on a fresh table made from the template's on ``engine`` (this process's
    environment points DynamoDB clients at it: ``engine.env``), or ``ledger_factory()`` (a double, called for
    each enterprise) when given. An enterprise whose attempt fails as one the worker reports for redelivery
    goes back to the queue at once, as SQS delivers the message again once its visibility timeout passed, up
    to the work queue's ``maxReceiveCount`` (the template's) attempts; only the last one counts as failed."""
    from devstack.aws import load_template

    from license_notifications.config import load_settings
    from license_notifications.jobs.enterprise_run import JobRun
    from license_notifications.services import Services

    max_receive = int(load_template()["Resources"]["WorkQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
    counter = AwsRequestCounter.install()
    work: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
    for enterprise in enterprises:
        work.put((enterprise, 1))
    settings = load_settings(stand_ins.settings_env(engine.table() if engine is not None else "unused"))
    workers = [Services(settings) for _ in range(concurrency)]
    outcomes: list[Any] = []
    failures: list[str] = []
    redelivered: list[str] = []
    retried: set[int] = set()  # id() of the outcomes whose message went back to the queue
    first_attempts: dict[str, Any] = {}  # due there: nothing was sent before it on the fresh table
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    run = JobRun(run_id=run_id, as_of=NOW)

    def work_loop(services: Services) -> None:
        start.wait()
        while True:
            try:
                enterprise, receive = work.get_nowait()
            except queue.Empty:
                return
            try:
                # The ledger this message uses (a Lambda worker's Services keeps its adapters across messages).
                if ledger_factory is not None:
                    services.__dict__["ledger"] = ledger_factory()
                outcome = services.expiration_reminders().run_enterprise(enterprise, run)
            except Exception as exc:
                with lock:
                    failures.append(f"{enterprise}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                outcomes.append(outcome)
                first_attempts.setdefault(enterprise, outcome)
                if outcome.needs_redelivery and receive < max_receive:
                    redelivered.append(f"{enterprise} (attempt {receive}): {outcome.error or 'failed recipients'}")
                    retried.add(id(outcome))
                    work.put((enterprise, receive + 1))

    threads = [threading.Thread(target=work_loop, args=(s,), name=f"bench-worker-{i}") for i, s in enumerate(workers)]
    for thread in threads:
        thread.start()
    engine_before = engine.cpu() if engine is not None else None
    stand_ins_before = stand_ins.usage()
    counted_before = counter.snapshot()
    cpu_before = time.process_time()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    worker_cpu = time.process_time() - cpu_before
    counted = counter.snapshot()
    counted.subtract(counted_before)
    stand_ins_after = stand_ins.usage()
    engine_cpu = engine.cpu() - engine_before if engine is not None and engine_before is not None else None
    braze = Counter(stand_ins_after["braze"])
    braze.subtract(stand_ins_before["braze"])
    skipped = _tally([o for o in outcomes if id(o) not in retried], failures)
    return FleetResult(
        concurrency=concurrency,
        enterprises=len(enterprises),
        reminders=sum(outcome.sent for outcome in outcomes),
        seconds=seconds,
        braze_requests=sum(outcome.braze_requests for outcome in outcomes),
        braze_seen=sum(braze[path] for path in BRAZE_SEND_PATHS),
        dynamodb_requests=AwsRequestCounter.service(counted, "dynamodb"),
        worker_cpu=worker_cpu,
        engine_cpu=engine_cpu,
        stand_ins_cpu=stand_ins_after["cpu"] - stand_ins_before["cpu"],
        expected=sum(outcome.due for outcome in first_attempts.values()),
        skipped={reason: n for reason, n in skipped.items() if n},
        failures=failures,
        redelivered=redelivered,
    )


def _tally(outcomes: list[Any], failures: list[str]) -> Counter[str]:
    """The outcomes' skip reasons, counted; each failed enterprise appended to ``failures``."""
    skipped: Counter[str] = Counter()
    for outcome in outcomes:
        skipped.update(outcome.skipped)
        if outcome.error or outcome.failed:
            first = outcome.failures[0].error if outcome.failures else ""
            detail = outcome.error or f"{outcome.failed} failed ({outcome.unrecorded} unrecorded), first: {first}"
            failures.append(f"{outcome.enterprise_customer_uuid}: {detail}")
    return skipped


# ---------------------------------------------------------------------------------- license-manager's pattern
@dataclass
class ReplayResult:
    reminders: int
    seconds: float
    braze_requests: int  # sent by the replay
    braze_seen: int  # answered by the stand-in (a cross-check)
    stand_ins_cpu: float


def replay_license_manager(stand_ins: StandIns, reminders: int) -> ReplayResult:
    """license-manager's Braze requests for ``reminders`` reminders, one after the other as its management
    command makes them: per batch of 25, the three alias-step calls, then one trigger. Only its Braze calls
    are replayed (not its own database reads and writes), which flatters it a little."""
    import requests

    base = stand_ins.hello["braze"]
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {BRAZE_KEY}", "Content-Type": "application/json"})
    emails = [f"replay{i:06d}@license-manager.example.com" for i in range(reminders)]
    before = stand_ins.usage()
    sent = 0
    started = time.perf_counter()
    for first in range(0, reminders, LICENSE_MANAGER_BATCH):
        batch = emails[first : first + LICENSE_MANAGER_BATCH]
        aliases = [{"alias_name": email, "alias_label": ALIAS_LABEL} for email in batch]
        bodies = (
            {"user_aliases": aliases, "fields_to_export": ["external_id", "user_aliases", "email"]},
            {"user_aliases": aliases},
            {"attributes": [{"user_alias": alias, "email": alias["alias_name"]} for alias in aliases]},
            {
                "campaign_id": CAMPAIGN,
                "recipients": [
                    {
                        "user_alias": alias,
                        "send_to_existing_only": False,
                        "attributes": {"email": alias["alias_name"], "enterprise_default_language": "en"},
                        "trigger_properties": {"subscription_plan_title": "Replay plan", "days_until_expiration": 10},
                    }
                    for alias in aliases
                ],
            },
        )
        for path, body in zip(LICENSE_MANAGER_CALLS, bodies, strict=True):
            response = session.post(base + path, json=body, timeout=30)
            sent += 1
            if response.status_code >= 300:
                raise RuntimeError(f"replay: {path} answered {response.status_code}: {response.text[:200]}")
    seconds = time.perf_counter() - started
    after = stand_ins.usage()
    calls = Counter(after["braze"])
    calls.subtract(before["braze"])
    return ReplayResult(
        reminders=reminders,
        seconds=seconds,
        braze_requests=sent,
        braze_seen=sum(calls[path] for path in LICENSE_MANAGER_CALLS),
        stand_ins_cpu=after["cpu"] - before["cpu"],
    )


def apply_env(env: dict[str, str]) -> None:
    """Point this process's AWS clients at moto or DynamoDB Local (fake credentials, no ~/.aws); an endpoint
    variable ``env`` does not set is removed, so no client follows an earlier one."""
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL") and name not in env]:
        del os.environ[name]
    os.environ.update(env)
