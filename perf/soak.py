"""``make soak``: the real pipeline under random faults, over many simulated hourly runs, then clean runs.

What runs: the ledger table on AWS's DynamoDB Local behind a proxy that throttles on purpose, moto (server mode)
for SQS and SNS (table and queues from template.yaml, the work queue's visibility timeout cut to
a few seconds), the license-manager, LMS (OAuth2) and Braze stand-ins, a "foreign host" that redirects point
to, the dispatcher handler in this process and ``--workers`` worker processes (``perf/soak_worker.py``:
the SQS event source mapping + ``functions/worker/worker.py``) that the soak SIGKILLs and restarts.

Each simulated hour the data grows (licenses activated or added, plans entering the 30-day window), faults are
armed (seeded), the dispatcher runs with that hour's ``as_of``, and the hour lasts until the queue is empty or
its time budget ran out (unfinished work carries on, as SQS redelivers it). Hour 0, with the most sends, arms
the two faults that need a send Braze accepts; every other kind is armed once for sure in a later hour, then
at random: Braze 5xx, 429 with and without reset headers, a send accepted but answered after the client's
timeout, redirects to another host (Braze, license-manager, LMS), DynamoDB throttling (a share of requests
and a burst), duplicate SQS deliveries, a worker killed at a random point or right after Braze accepted its
send (no kill in the last hour). For the whole soak: a recipient Braze refuses in triggers, one refused in
alias creation, one accepted with a minor error, and malformed license records (unknown status, no uuid, a
non-string email) in one enterprise's plan. ``--skip`` leaves fault kinds out.

Then kills stop, the work queue is purged, the soak waits until every lease a killed worker held has run out
(one-shot faults still armed may fire meanwhile, then they are cleared) and runs ``--final-runs`` clean
hourly runs; the queue is purged again and the figures are taken once no send can be in flight.

The oracle knows, for each run, who was due a reminder (spec 003: activated license, active plan expiring
in ``(as_of, as_of + 30 days]``, enterprise not opted out, an email; once per license ever) and compares it
with what Braze accepted (its outbox) and what the ledger recorded. Figures and PASS/FAIL targets are
printed and written to ``<out>/soak.json`` (``.soak/``); the exit status is 1 when a target fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from devstack.aws import MotoStack, create_resources_from_template, load_template
from devstack.dataset import Dataset, iso_z
from devstack.dynamodb_faults import ThrottlingProxy
from devstack.dynamodb_local import DynamoDBLocal
from devstack.lambda_local import ROOT, invoke, load_handler
from devstack.standins import BrazeStandIn, ForeignHost, LicenseManagerStandIn, LmsStandIn
from devstack.standins.base import Request
from devstack.standins.braze import ALIAS_PATH, TRIGGER_PATH

from perf.soak_worker import WORKER_HEADER

OUT = ROOT / ".soak"
BRAZE_KEY = "soak-braze-rest-key"
CAMPAIGN = "soak-license-expiration-reminder"
JOB = "license_expiration_reminders"
LEDGER_PREFIX = "expiration_reminder#"
DAYS = 30
# The simulated hours start at the wall clock's hour: ledger records expire (TTL ``expires_at``) 90 days after
# their plan, and DynamoDB Local deletes an expired item within about a second (moto never does, DynamoDB in AWS
# within days), so a simulated clock months behind the wall clock would see its own records vanish mid-soak.
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
EMAIL_DOMAIN = "soak.example.com"

# Fault kinds armed per simulated hour (each at least once over the soak, then at random).
HOURLY_FAULTS = ("braze_5xx", "braze_429_with_reset", "braze_429_without_reset", "braze_accept_then_stall",
                 "braze_redirect", "license_manager_redirect", "lms_redirect", "dynamodb_throttling",
                 "sqs_duplicate_delivery", "kill_random", "kill_after_braze_accepted")  # fmt: skip
# One-shot faults that wait for the next Braze request: armed for sure in hour 1, which always has new sends
# (a later hour may see none before the clean runs, and the self-check would then fail by chance).
BRAZE_REQUEST_FAULTS = frozenset({"braze_5xx", "braze_429_with_reset", "braze_429_without_reset", "braze_redirect"})

HOUR_CAP = 3  # a simulated hour lasts at most this many times its budget (see Soak.wait_for_hour)

# Faults present for the whole soak (the final clean runs included: they are data, not weather).
STANDING_FAULTS = ("braze_rejected_recipient", "braze_rejected_alias", "braze_minor_error", "malformed_licenses")


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SoakSettings:
    seed: int = 1
    hours: int = 24
    enterprises: int = 8
    workers: int = 3
    final_runs: int = 2
    hour_seconds: float = 4.0  # wall-clock budget of one simulated hour
    fault_probability: float = 0.35  # per hour and kind, on top of the one guaranteed hour per kind
    visibility_timeout: int = 6  # the work queue's (template: 5400 s)
    lease_seconds: int = 10  # CLAIM_LEASE_SECONDS
    http_timeout: float = 1.0  # HTTP_TIMEOUT_SECONDS
    http_attempts: int = 3  # HTTP_MAX_ATTEMPTS
    http_max_wait: float = 0.5  # HTTP_MAX_WAIT_SECONDS
    final_run_timeout: float = 60.0
    short: bool = False
    skip: tuple[str, ...] = ()  # fault kinds left out (e.g. to check that the others alone meet the targets)

    @property
    def slowest_batch(self) -> float:
        """What the app's configuration check calls the slowest Braze batch (alias + trigger, all retries)."""
        return 2 * (self.http_attempts * self.http_timeout + (self.http_attempts - 1) * self.http_max_wait)


# ----------------------------------------------------------------------------------------------- the data
@dataclass
class EnterpriseRole:
    uuid: str
    name: str
    slug: str
    roles: list[str] = field(default_factory=list)
    current_plan: str = ""
    entering_plan: str = ""


@dataclass
class SoakData:
    dataset: Dataset
    enterprises: list[EnterpriseRole]
    rejected: dict[str, str]  # email -> "trigger" | "alias"
    minor_errors: list[str]
    malformed_plan: str | None
    malformed_enterprise: str | None
    growth: dict[int, list[tuple[str, Callable[[datetime], str]]]]  # hour -> (enterprise uuid, mutation)

    def customer_name(self, uuid: str) -> str:
        return next((e.name for e in self.enterprises if e.uuid == uuid), uuid)


def build_soak_data(settings: SoakSettings, rng: random.Random) -> SoakData:
    """Several enterprises with plans inside, entering and outside the window, every license status, one
    opted-out enterprise, an inactive and an expired plan, a license without email; growth per hour."""
    ds, count = Dataset(now=START), settings.enterprises
    # Roles by index: 0 holds the refused and minor-error recipients (and > 50 due, so batches of 50 show),
    # 1 is opted out, 2 serves malformed license records, 3 holds the refused alias (with fewer enterprises
    # the roles fold onto the first ones).
    opted_out_index = 1 if count >= 3 else None
    malformed_index = 2 if count >= 3 else count - 1
    alias_index = 3 if count >= 4 else 0
    enterprises: list[EnterpriseRole] = []
    plans: dict[str, tuple[str, str]] = {}  # enterprise -> (current plan, plan entering the window)
    for i in range(count):
        role = _add_enterprise(ds, i, settings, rng, opted_out=i == opted_out_index)
        plans[role.uuid] = (role.current_plan, role.entering_plan)
        enterprises.append(role)
    rejected, minor = _refused_recipients(ds, enterprises[0], enterprises[alias_index], settings.skip)
    malformed = enterprises[malformed_index]
    malformed_plan: str | None = malformed.current_plan
    if "malformed_licenses" in settings.skip:
        malformed_plan = None
        malformed.roles.append("(malformed license records: skipped)")
    else:
        for record in malformed_licenses(malformed.slug, malformed.current_plan):
            ds.add_raw_license(malformed.current_plan, record)
        malformed.roles.append("malformed license records (unknown status, no uuid, non-string email)")

    growth: dict[int, list[tuple[str, Callable[[datetime], str]]]] = defaultdict(list)
    growing = [e.uuid for e in enterprises if "opted out" not in e.roles] or [e.uuid for e in enterprises]
    # (the enterprise roles above are labels only: a skipped fault leaves its enterprise growing as any other)
    for hour in range(1, settings.hours):  # every enterprise has new due licenses every hour: Braze traffic hourly
        for enterprise in growing:
            plan = rng.choice(plans[enterprise])
            growth[hour].append((enterprise, _grow(ds, plan, rng.randint(1, 3), rng.random() < 0.5)))
    return SoakData(
        ds, enterprises, rejected, minor, malformed_plan, malformed.uuid if malformed_plan else None, dict(growth)
    )


def _add_enterprise(ds: Dataset, i: int, s: SoakSettings, rng: random.Random, *, opted_out: bool) -> EnterpriseRole:
    """Enterprise ``i``: a plan due now, one entering the window during the soak, one far out, sometimes an
    inactive and an expired one; with every license status."""
    slug, count = f"soak-{i:02d}", s.enterprises
    name = f"Soak Enterprise {i:02d}"
    customer = ds.add_customer(
        name,
        slug=slug,
        sender_alias=f"Soak {i:02d} Learning" if i % 2 else "",
        disable_expiration_notifications=opted_out,
    )
    role = EnterpriseRole(customer.uuid, name, slug, ["opted out"] if opted_out else [])

    def plan(kind: str, title: str, expires: datetime, **licenses: int) -> str:
        uuid = ds.add_plan(
            customer.uuid, title=f"{name} {title}", expiration_date=expires, is_active=kind != "pil"
        ).uuid
        for status, n in licenses.items():
            ds.add_licenses(uuid, status, n, f"{slug}-{kind}-{{n:03d}}@{EMAIL_DOMAIN}")
        return uuid

    due = START + timedelta(days=rng.randint(3, 25), hours=rng.randint(0, 23))
    activated = (55 if s.short else 60) if i == 0 else rng.randint(*(6, 12) if s.short else (12, 30))
    role.current_plan = plan("cur", "current", due, activated=activated, assigned=8, revoked=2, unassigned=3)
    enters_after = rng.randint(0, max(0, s.hours - 2))  # due from hour enters_after + 1
    entering = START + timedelta(days=DAYS, hours=enters_after, minutes=rng.randint(1, 59))
    role.entering_plan = plan(
        "ent", "entering the window", entering, activated=rng.randint(*(3, 6) if s.short else (6, 16)), assigned=2
    )
    plan("far", "next year", START + timedelta(days=120), activated=4)
    if i % 3 == 2 or count == 1:
        plan("pil", "inactive pilot", START + timedelta(days=8), activated=4)
        plan("old", "last year", START - timedelta(days=2), activated=4)
    if i == 1 or count == 1:
        ds.licenses_of(role.current_plan)[1].user_email = None  # activated, no email: never due
        role.roles.append("an activated license without email")
    return role


def _refused_recipients(
    ds: Dataset, first: EnterpriseRole, alias_enterprise: EnterpriseRole, skip: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """Who Braze refuses ({email: "trigger" | "alias"}) and who it accepts with a minor error. The refused
    trigger recipient sorts last in its plan, the minor error first: in different Braze batches of 50."""

    def emails(role: EnterpriseRole) -> list[str]:
        return [str(lic.user_email) for lic in ds.licenses_of(role.current_plan) if lic.status == "activated"]

    rejected: dict[str, str] = {}
    minor: list[str] = []
    if "braze_rejected_recipient" not in skip:
        rejected[emails(first)[-1]] = "trigger"
        first.roles.append("a recipient Braze refuses (trigger)")
    if "braze_minor_error" not in skip:
        minor.append(emails(first)[0])
        first.roles.append("a recipient accepted with a minor error")
    if "braze_rejected_alias" not in skip:
        rejected[emails(alias_enterprise)[3]] = "alias"
        alias_enterprise.roles.append("a recipient whose Braze alias is refused")
    return rejected, minor


def malformed_licenses(slug: str, plan_uuid: str) -> list[dict[str, Any]]:
    """Three records license-manager should never send: an unknown status, no uuid, a non-string email."""
    base = {"activation_date": "2026-01-10T08:00:00Z", "last_remind_date": None, "revoked_date": None,
            "subscription_plan_uuid": plan_uuid, "activation_key": None}  # fmt: skip
    return [
        {**base, "uuid": "9e7c0a52-5c1e-4f0e-9d7b-000000000001", "status": "suspended",
         "user_email": f"{slug}-bad-suspended@{EMAIL_DOMAIN}"},
        {**base, "status": "activated", "user_email": f"{slug}-bad-no-uuid@{EMAIL_DOMAIN}"},
        {**base, "uuid": "9e7c0a52-5c1e-4f0e-9d7b-000000000003", "status": "activated", "user_email": 12345},
    ]  # fmt: skip


def _grow(ds: Dataset, plan_uuid: str, count: int, activate_assigned: bool) -> Callable[[datetime], str]:
    def apply(as_of: datetime) -> str:
        with ds.lock:
            assigned = [lic for lic in ds.licenses_of(plan_uuid) if lic.status == "assigned"]
            if activate_assigned and assigned:
                for lic in assigned[:count]:
                    lic.status, lic.activation_date = "activated", as_of
                return f"{min(count, len(assigned))} assigned license(s) activated"
            slug = ds.customers[ds.plans[plan_uuid].enterprise_customer_uuid].slug
            tag = "cur" if "current" in ds.plans[plan_uuid].title else "ent"
            ds.add_licenses(plan_uuid, "activated", count, f"{slug}-{tag}-{{n:03d}}@{EMAIL_DOMAIN}")
            return f"{count} new activated license(s)"

    return apply


# ----------------------------------------------------------------------------------------------- oracle
@dataclass(frozen=True)
class Due:
    license_uuid: str
    enterprise: str
    email: str


def due_now(data: SoakData, uuids: list[str], as_of: datetime) -> list[tuple[str, str, str]]:
    """(license uuid, enterprise, email) of every license eligible for a reminder at ``as_of`` (spec 003): activated,
    with an email, of an active plan expiring in ``(as_of, as_of + 30 days]``, enterprise not opted out. The
    malformed raw records are never eligible (unknown status, no uuid, no string email)."""
    ds, end = data.dataset, as_of + timedelta(days=DAYS)
    with ds.lock:
        agreements = [ds.agreements[e] for e in uuids if e in ds.agreements]
        return [
            (lic.uuid, agreement.enterprise_customer_uuid, str(lic.user_email))
            for agreement in agreements
            if not agreement.disable_expiration_notifications
            for plan in ds.plans_of(agreement.enterprise_customer_uuid)
            if plan.is_active and as_of < plan.expiration_date <= end
            for lic in ds.licenses_of(plan.uuid)
            if lic.status == "activated" and isinstance(lic.user_email, str) and lic.user_email.strip()
        ]


# ----------------------------------------------------------------------------------------------- workers
@dataclass
class Slot:
    worker_id: str = ""
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None


class LogTail:
    """New complete JSON lines of every worker log (each incarnation writes its own file)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.offsets: dict[Path, int] = {}

    def lines(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.directory.glob("*.log")):
            offset = self.offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            end = chunk.rfind(b"\n") + 1
            self.offsets[path] = offset + end
            for raw in chunk[:end].splitlines():
                if raw.startswith(b"{"):
                    with contextlib.suppress(ValueError):
                        yield json.loads(raw)


# ----------------------------------------------------------------------------------------------- the soak
class Soak:
    def __init__(self, settings: SoakSettings, *, out: Path = OUT, stream: TextIO | None = None):
        self.settings = settings
        self.out = out
        self.stream = stream or sys.stdout
        self.rng = random.Random(settings.seed)
        self.thread_rng = random.Random(self.rng.random())  # timers and restarts: their timing is the OS's
        self.lock = threading.RLock()
        self.slots = [Slot() for _ in range(settings.workers)]
        self.next_worker = 0
        self.kills: list[dict[str, Any]] = []
        self.accepted: dict[str, dict[str, Any]] = {}  # dispatch id -> sender, wall time, hour
        self.captured: list[str] = []
        self.hour: int | str = "set-up"
        self.faults_on = False
        self.stopping = False
        self.kill_after_accept_armed = 0
        self.armed: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self.eligible: dict[str, Due] = {}
        self.runs: list[dict[str, Any]] = []
        self.completed: dict[str, list[dict[str, Any]]] = defaultdict(list)  # run id -> "Completed" lines
        self.log_counts: Counter[str] = Counter()
        self.timers: list[threading.Thread] = []
        self.phases: dict[str, float] = {}
        self.quiet = False
        self.unfired: dict[str, int] = {}
        self.started = time.monotonic()

    # ------------------------------------------------------------------------------------------ output
    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    # ------------------------------------------------------------------------------------------ set-up
    @contextlib.contextmanager
    def stack(self) -> Iterator[None]:
        s = self.settings
        self.out.mkdir(parents=True, exist_ok=True)
        self.worker_logs = self.out / "workers"
        self.state_dir = self.out / "state"
        for directory in (self.worker_logs, self.state_dir):
            directory.mkdir(exist_ok=True)
            for stale in directory.iterdir():
                stale.unlink()
        self.env_file = self.state_dir / "stack-env.json"
        self.data = build_soak_data(s, self.rng)
        self.enterprise_uuids = [e.uuid for e in self.data.enterprises]
        saved_env = dict(os.environ)
        # What the handlers read when imported: the workers start with it and import while the stack comes up.
        self.app_env = {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": CAMPAIGN,
            "BRAZE_API_KEY": BRAZE_KEY,
            "HTTP_TIMEOUT_SECONDS": f"{s.http_timeout:g}",
            "HTTP_MAX_ATTEMPTS": str(s.http_attempts),
            "HTTP_MAX_WAIT_SECONDS": f"{s.http_max_wait:g}",
            "CLAIM_LEASE_SECONDS": str(s.lease_seconds),
            "POWERTOOLS_SERVICE_NAME": "license-notifications",
            "POWERTOOLS_METRICS_NAMESPACE": "LicenseNotificationsSoak",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        supervisor = threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True)
        supervisor.start()
        try:
            with contextlib.ExitStack() as stack:
                self.moto = stack.enter_context(MotoStack())
                # The ledger on AWS's DynamoDB Local, behind the proxy that throttles on purpose; the queues, the
                # topic and the secrets on moto.
                self.engine = stack.enter_context(DynamoDBLocal())
                self.engine.warm_up()  # its first transactions are slow (a cold JVM): not in hour 0's budget
                self.dynamodb = stack.enter_context(ThrottlingProxy(self.engine.endpoint_url))
                aws_env = {**self.moto.env(), "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.endpoint_url}
                os.environ.update(aws_env)
                self.resources = create_resources_from_template(
                    self.moto.endpoint_url, suffix="-soak", dynamodb_endpoint_url=self.engine.endpoint_url
                )
                sqs = self.moto.client("sqs")
                sqs.set_queue_attributes(
                    QueueUrl=self.resources.work_queue_url,
                    Attributes={"VisibilityTimeout": str(s.visibility_timeout)},
                )
                redrive = sqs.get_queue_attributes(
                    QueueUrl=self.resources.work_queue_url, AttributeNames=["RedrivePolicy"]
                )["Attributes"]["RedrivePolicy"]
                self.max_receive = json.loads(redrive)["maxReceiveCount"]
                self.lms = stack.enter_context(LmsStandIn(self.data.dataset))
                self.lm = stack.enter_context(
                    LicenseManagerStandIn(self.data.dataset, self.lms.registry, clock=lambda: START)
                )
                self.braze = stack.enter_context(BrazeStandIn(BRAZE_KEY, known_campaigns=[CAMPAIGN]))
                self.foreign = stack.enter_context(ForeignHost())
                for email, where in self.data.rejected.items():
                    self.braze.reject(email, "invalid email address", alias=where == "alias")
                for email in self.data.minor_errors:
                    self.braze.minor_error(email)
                self.braze.on_accepted(self._on_braze_accepted)
                stack_env = {
                    **aws_env,
                    **self.resources.lambda_env(),
                    "LICENSE_MANAGER_URL": self.lm.url,
                    "LMS_URL": self.lms.url,
                    "OAUTH_CLIENT_ID": self.lms.client_id,
                    "OAUTH_CLIENT_SECRET": self.lms.client_secret,
                    "BRAZE_API_URL": self.braze.url,
                }
                os.environ.update({**self.app_env, **stack_env})
                pending = self.env_file.with_suffix(".tmp")
                pending.write_text(json.dumps(stack_env), encoding="utf-8")
                pending.replace(self.env_file)  # atomically: a worker never reads half of it
                self.drain_error_inbox = self.resources.error_inbox("soak-error-inbox")
                self._capture_dispatches()
                self.dispatcher_log = stack.enter_context((self.out / "dispatcher.log").open("w"))
                self.tail = LogTail(self.worker_logs)
                try:
                    yield
                finally:  # the workers stop before the services they talk to
                    self.stopping = True
                    supervisor.join(timeout=5)
                    self._stop_workers()
        finally:
            self.stopping = True
            supervisor.join(timeout=5)
            self._stop_workers()
            os.environ.clear()
            os.environ.update(saved_env)

    def _capture_dispatches(self) -> None:
        """Keep the bodies the dispatcher enqueues (boto3's default session, before its client exists), to
        deliver some of them twice."""
        import boto3

        boto3.setup_default_session()

        def capture(params: dict[str, Any], **_: Any) -> None:
            if params.get("QueueUrl") == self.resources.work_queue_url:
                with self.lock:
                    self.captured.extend(entry["MessageBody"] for entry in params.get("Entries", []))

        boto3.DEFAULT_SESSION.events.register("provide-client-params.sqs.SendMessageBatch", capture)  # type: ignore[union-attr]

    # ------------------------------------------------------------------------------------------ workers
    def _spawn(self, slot: Slot) -> None:
        with self.lock:
            self.next_worker += 1
            slot.worker_id = f"w{self.next_worker:03d}"
        paths = [ROOT / "layers" / "shared", ROOT, ROOT / "functions" / "worker", ROOT / "functions" / "dispatcher"]
        env = {
            **os.environ,
            **self.app_env,
            "SOAK_ENV_FILE": str(self.env_file),
            "SOAK_WORKER_ID": slot.worker_id,
            "SOAK_STATE_DIR": str(self.state_dir),
            "SOAK_BATCH_SIZE": str(worker_batch_size()),
            "PYTHONPATH": os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PYTHONUNBUFFERED": "1",
        }
        with (self.worker_logs / f"{slot.worker_id}.log").open("wb") as log:
            slot.proc = subprocess.Popen(  # our own interpreter and module
                [sys.executable, "-m", "perf.soak_worker"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        slot.restart_at = None

    def _supervise(self) -> None:
        """Start every slot, and restart a killed worker after a short random pause (a new container)."""
        while not self.stopping:
            for slot in self.slots:
                with self.lock:
                    if self.stopping:
                        return
                    if slot.proc is None:
                        self._spawn(slot)
                    elif slot.proc.poll() is not None:
                        if slot.restart_at is None:
                            slot.restart_at = time.time() + self.thread_rng.uniform(0.1, 0.8)
                        elif time.time() >= slot.restart_at:
                            self._spawn(slot)
            time.sleep(0.05)

    def _stop_workers(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.terminate()
        for slot in self.slots:
            if slot.proc is not None:
                try:
                    slot.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                    slot.proc.wait(timeout=5)

    def live_slots(self, marker: str) -> list[Slot]:
        """Slots whose worker runs and shows ``marker`` ("ready": imported, polling; "busy": in an invocation)."""
        with self.lock:
            return [
                slot
                for slot in self.slots
                if slot.proc is not None and slot.proc.poll() is None
                and (self.state_dir / f"{slot.worker_id}.{marker}").exists()
            ]  # fmt: skip

    def kill(self, slot: Slot, reason: str, **detail: Any) -> bool:
        """SIGKILL the slot's worker process (ours: a Popen child), if it still runs."""
        with self.lock:
            proc = slot.proc
            if proc is None or proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            self.kills.append(
                {"at": time.time(), "worker": slot.worker_id, "reason": reason, "hour": self.hour, **detail}
            )
            self.fired[reason] += 1
            return True

    def _on_braze_accepted(self, request: Request, entry: dict[str, Any], stall: float | None) -> None:
        """Runs in the Braze stand-in before the reply: note who sent it; maybe kill the sender right now
        (not when the reply is about to stall: that fault tests the unanswered send on its own)."""
        worker = request.headers.get(WORKER_HEADER.lower())
        with self.lock:
            self.accepted[str(entry["dispatch_id"])] = {
                "worker": worker,
                "at": time.time(),
                "hour": self.hour,
                "recipients": len(entry["recipients"]),
            }
            if self.faults_on and self.kill_after_accept_armed > 0 and stall is None:
                slot = next((s for s in self.slots if s.worker_id == worker), None)
                if slot is not None and self.kill(slot, "kill_after_braze_accepted", dispatch_id=entry["dispatch_id"]):
                    self.kill_after_accept_armed -= 1

    # ------------------------------------------------------------------------------------------ queue
    def queue_depth(self, url: str | None = None) -> tuple[int, int]:
        """(visible + delayed, in flight) messages of the work queue (or ``url``)."""
        attributes = self.moto.client("sqs").get_queue_attributes(
            QueueUrl=url or self.resources.work_queue_url,
            AttributeNames=[f"ApproximateNumberOfMessages{kind}" for kind in ("", "NotVisible", "Delayed")],
        )["Attributes"]
        visible = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])
        return visible, int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def read_logs(self) -> None:
        for line in self.tail.lines():
            message = str(line.get("message", ""))
            if message.startswith("Completed processing for enterprise"):
                self.completed[str(line.get("correlation_id"))].append(line)
            elif message.startswith("Braze outcome unknown"):
                self.log_counts["sends recorded as unconfirmed (no reply)"] += 1
            elif "but could not record it" in message:
                self.log_counts["sends Braze accepted that the ledger could not record"] += 1
            elif message.startswith("Failed to send"):
                self.log_counts["Braze batches failed (claims released)"] += 1
            elif message.startswith("Failed processing enterprise"):
                self.log_counts["enterprise passes failed"] += 1
            elif "claim lost before mark_sent" in message:
                self.log_counts["claims lost before mark_sent"] += 1

    # ------------------------------------------------------------------------------------------ runs
    def dispatch(self, as_of: datetime) -> dict[str, Any]:
        event = {
            "job": JOB,
            "enterprise_customer_uuids": ",".join(self.enterprise_uuids),
            "days_before_expiration": DAYS,
            "dry_run": False,
            "as_of": iso_z(as_of),
        }
        with self.lock:
            self.captured = []
        self.lm.set_now(as_of)
        with contextlib.redirect_stdout(self.dispatcher_log):
            dispatcher = load_handler("dispatcher")
            result = invoke(dispatcher.lambda_handler, event, "dispatcher")
        for license_uuid, enterprise, email in due_now(self.data, self.enterprise_uuids, as_of):
            if license_uuid not in self.eligible:
                self.eligible[license_uuid] = Due(license_uuid, enterprise, email)
        return result

    def wait_for_hour(self, budget: float) -> None:
        """Until the queue is empty and the hour's timers are done, or the workers had ``budget`` seconds.

        Time while no worker is up (every one killed, the new ones still starting) does not count, up to
        ``HOUR_CAP`` x ``budget`` in all: a simulated hour lasts seconds and a restarted worker needs a few to
        import on a busy machine, so without the pause an hour could pass with no worker at all, which an hour
        of Lambda never does (and its faults would never meet a request).

        Likewise, past ``budget`` (within the cap) while a kill after a Braze accept is armed and work is left
        in the queue: on a busy machine an hour's few sends can come after its budget, and the fault would then
        never meet one."""
        started = last = time.monotonic()
        worked = 0.0
        while last - started < HOUR_CAP * budget:
            time.sleep(0.1)
            now = time.monotonic()
            if self.live_slots("ready"):
                worked += now - last
            last = now
            self.read_logs()
            timers_done = all(not t.is_alive() for t in self.timers)
            depth = self.queue_depth()
            if timers_done and depth == (0, 0) and not self.live_slots("busy"):
                return
            with self.lock:
                kill_waits = self.kill_after_accept_armed > 0
            if worked >= budget and not (kill_waits and depth != (0, 0)):
                return

    def wait_for_run(self, run_id: str, timeout: float) -> bool:
        """Until every enterprise of the run completed one pass (a clean run: nothing transient can fail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_logs()
            done = {line.get("enterprise_customer_uuid") for line in self.completed.get(run_id, [])}
            if set(self.enterprise_uuids) <= done:
                return True
            time.sleep(0.1)
        return False

    def purge_work_queue(self) -> None:
        """Drop every work message, in flight or not (an invocation already running finishes its own)."""
        sqs = self.moto.client("sqs")
        try:
            sqs.purge_queue(QueueUrl=self.resources.work_queue_url)
        except sqs.exceptions.PurgeQueueInProgress:  # real SQS allows one purge a minute: drain what is visible
            while messages := sqs.receive_message(
                QueueUrl=self.resources.work_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages"):
                for m in messages:
                    sqs.delete_message(QueueUrl=self.resources.work_queue_url, ReceiptHandle=m["ReceiptHandle"])

    def wait_quiet(self, timeout: float) -> bool:
        """Until no send can be in flight: no worker in an invocation and no ledger record claimed under a live
        lease (a worker sends only what it holds), twice in a row."""
        deadline, calm = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and calm < 2:
            time.sleep(0.2)
            now = time.time()
            held = [r for r in self.ledger().values() if r.get("state") == "claimed" and float(r["lease_until"]) > now]
            calm = 0 if held or self.live_slots("busy") else calm + 1
        self.read_logs()
        return calm >= 2

    def wait_for_workers(self, at_least: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.live_slots("ready")) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------------ faults
    def plan_faults(self) -> dict[int, list[str]]:
        """Which hourly fault kinds each hour arms. Hour 0 (the most sends) arms the two faults that need a send
        Braze accepts, and only those; every other kind is armed once for sure over the later hours, then
        each kind with ``fault_probability`` per later hour. No kill in the last hour."""
        hours = self.settings.hours
        plan: dict[int, set[str]] = defaultdict(set)
        kills = {"kill_random", "kill_after_braze_accepted"}
        plan[0] |= {"braze_accept_then_stall", "kill_after_braze_accepted"}
        kinds = [kind for kind in HOURLY_FAULTS if kind not in plan[0]]
        self.rng.shuffle(kinds)
        later = list(range(1, hours)) or [0]
        for index, kind in enumerate(kinds):
            if kind in BRAZE_REQUEST_FAULTS:  # one-shot faults on the next Braze requests: hour 1 surely sends
                plan[later[0]].add(kind)
                continue
            # kills not in the last hour (the leases the clean runs wait for run out meanwhile)
            hours_for_kind = [h for h in later if h < hours - 1] or [0] if kind in kills else later
            plan[hours_for_kind[index % len(hours_for_kind)]].add(kind)
        for hour in range(1, hours):
            for kind in HOURLY_FAULTS:
                if self.rng.random() < self.settings.fault_probability and (kind not in kills or hour < hours - 1):
                    plan[hour].add(kind)
        return {hour: sorted(set(kinds) - set(self.settings.skip)) for hour, kinds in plan.items()}

    def arm(self, kinds: list[str]) -> None:
        """Arm this hour's faults (before its dispatch; duplicate deliveries are armed after it)."""
        s, rng = self.settings, self.rng
        for kind in kinds:
            if kind == "sqs_duplicate_delivery":
                continue
            self.armed[kind] += 1
            path = rng.choice([TRIGGER_PATH, ALIAS_PATH])
            if kind == "braze_5xx":  # the next request to any Braze endpoint (alias or trigger)
                self.braze.fail_next("/", rng.choice([500, 502, 503]), times=rng.randint(1, 3), label=kind)
            elif kind == "braze_429_with_reset":
                self.braze.rate_limit_next("/", rng.uniform(0.1, 0.4), times=rng.randint(1, 2), label=kind)
            elif kind == "braze_429_without_reset":
                self.braze.rate_limit_without_reset_next("/", times=rng.randint(1, 2), label=kind)
            elif kind == "braze_accept_then_stall":
                self.braze.accept_then_stall_next(s.http_timeout + 0.5, label=kind)
            elif kind == "braze_redirect":
                self.braze.redirect_next(path, self.foreign.url, status=307, label=kind)
            elif kind == "license_manager_redirect":
                prefix = rng.choice(["/api/v1/subscriptions", "/api/v1/customer-agreement"])
                self.lm.redirect_next(prefix, self.foreign.url, status=rng.choice([302, 307]), label=kind)
            elif kind == "lms_redirect":
                self.lms.redirect_next(
                    "/enterprise/api/v1/enterprise-customer", self.foreign.url, status=302, label=kind
                )
            elif kind == "dynamodb_throttling":  # a share of requests all hour, and a burst of consecutive ones
                self.dynamodb.throttle(rng.uniform(0.05, 0.25), seed=rng.randint(0, 2**31))
                self.dynamodb.throttle_next(rng.randint(5, 20))
            elif kind == "kill_random":
                self._later(rng.uniform(0.0, 1.0), self._kill_busy_worker, rng.uniform(0.0, 0.4))
            elif kind == "kill_after_braze_accepted":
                with self.lock:
                    self.kill_after_accept_armed += 1

    def duplicate_some(self, run_messages: list[str]) -> None:
        """Deliver one or two of this run's work messages a second time, a moment later."""
        self.armed["sqs_duplicate_delivery"] += 1
        for body in self.rng.sample(run_messages, k=min(len(run_messages), self.rng.randint(1, 2))):
            self._later(self.rng.uniform(0.0, 1.5), self._duplicate, body)

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            time.sleep(delay)
            if self.faults_on:
                fn(*args)

        timer = threading.Thread(target=run, name="soak-fault-timer", daemon=True)
        self.timers.append(timer)
        timer.start()

    def _duplicate(self, body: str) -> None:
        self.moto.client("sqs").send_message(QueueUrl=self.resources.work_queue_url, MessageBody=body)
        with self.lock:
            self.fired["sqs_duplicate_delivery"] += 1

    def _kill_busy_worker(self, extra_delay: float) -> None:
        """Wait (up to the hour's budget) for a worker in an invocation, then kill it at a random moment."""
        deadline = time.monotonic() + self.settings.hour_seconds
        while self.faults_on and time.monotonic() < deadline:
            busy = self.live_slots("busy")
            if busy:
                time.sleep(extra_delay)
                self.kill(self.thread_rng.choice(busy), "kill_random")
                return
            time.sleep(0.02)

    def stop_killing(self) -> None:
        """End of the hours with faults: no more kills, duplicate deliveries or throttling. One-shot stand-in
        faults still armed may fire while the soak waits for the leases; ``clear_faults`` ends them."""
        self.faults_on = False
        self.dynamodb.clear_throttling()
        with self.lock:
            self.kill_after_accept_armed = 0
        for timer in self.timers:
            timer.join(timeout=5)
        self.timers = []

    def clear_faults(self) -> None:
        """Before the clean runs: what never fired is counted (``unfired_at_clean_runs``) and dropped."""
        for standin in (self.braze, self.lm, self.lms):
            self.unfired[standin.name] = standin.pending_faults
            standin.clear_faults()

    # ------------------------------------------------------------------------------------------ main
    def run(self) -> dict[str, Any]:
        s = self.settings
        with self.stack():
            self.say(
                f"license-notifications soak: seed {s.seed}, {s.hours} simulated hour(s) with faults + "
                f"{s.final_runs} clean run(s), {s.enterprises} enterprise(s), {s.workers} worker process(es)"
            )
            self.say(
                f"   HTTP timeout {s.http_timeout:g} s x {s.http_attempts} attempts (max wait {s.http_max_wait:g} s): "
                f"slowest batch {s.slowest_batch:g} s; claim lease {s.lease_seconds} s; SQS visibility "
                f"{s.visibility_timeout} s, maxReceiveCount {self.max_receive}; worker batch {worker_batch_size()}"
            )
            if s.skip:
                self.say(f"   fault kinds left out (--skip): {', '.join(s.skip)}")
            self.say(f"   ledger on DynamoDB Local {self.engine.endpoint_url} (through the throttling proxy "
                     f"{self.dynamodb.endpoint_url}); SQS, SNS on moto {self.moto.endpoint_url}")  # fmt: skip
            self.say(f"   license-manager {self.lm.url}, LMS {self.lms.url}, Braze {self.braze.url}, foreign host "
                     f"{self.foreign.url}; logs in {_rel(self.out)}/")  # fmt: skip
            for enterprise in self.data.enterprises:
                roles = "; ".join(enterprise.roles) or "-"
                self.say(f"   {enterprise.name} ({enterprise.uuid[:8]}): {roles}")
            self.wait_for_workers(at_least=1)
            self.phases["start-up"] = time.monotonic() - self.started
            schedule = self.plan_faults()
            hours_started = time.monotonic()
            self.say("\n== Hours with faults")
            for hour in range(s.hours):
                self.run_hour(hour, schedule.get(hour, []))
            settle_started = time.monotonic()
            self.phases["hours with faults"] = settle_started - hours_started
            self.hour = "settling"
            self.stop_killing()
            self.purge_work_queue()
            last_kill = max((k["at"] for k in self.kills), default=0.0)
            wait = max(0.0, last_kill + s.lease_seconds + 1.0 - time.time())
            self.say(
                f"\n== No more kills; work queue purged. Waiting {wait:.1f} s until the leases of killed workers "
                f"ran out (last kill + {s.lease_seconds} s lease + 1 s); one-shot faults still armed may fire meanwhile"
            )
            time.sleep(wait)
            self.clear_faults()
            self.wait_for_workers(at_least=len(self.slots))
            clean_started = time.monotonic()
            self.phases["settling (leases)"] = clean_started - settle_started
            self.say("\n== Clean runs")
            for j in range(s.final_runs):
                self.run_clean(s.hours + j)
            self.purge_work_queue()  # the schedule stops: what failed in the clean runs is not retried again
            self.quiet = self.wait_quiet(timeout=2.0 * s.lease_seconds)
            self.phases["clean runs"] = time.monotonic() - clean_started
            figures = self.figures()
        return figures

    def run_hour(self, hour: int, kinds: list[str]) -> None:
        started = time.monotonic()
        self.hour = hour
        as_of = START + timedelta(hours=hour)
        grown = [f"{self.data.customer_name(e)[-2:]}: {apply(as_of)}" for e, apply in self.data.growth.get(hour, [])]
        due_before = len(self.eligible)
        kills_before = len(self.kills)
        self.faults_on = True
        self.arm(kinds)
        result = self.dispatch(as_of)
        if "sqs_duplicate_delivery" in kinds:
            with self.lock:
                self.duplicate_some(list(self.captured))
        self.wait_for_hour(self.settings.hour_seconds)
        self.dynamodb.clear_throttling()  # the throttling lasts this hour only
        self.timers = [t for t in self.timers if t.is_alive()]
        with self.lock:
            accepted = [a for a in self.accepted.values() if a["hour"] == hour]
        record = {
            "hour": hour,
            "as_of": iso_z(as_of),
            "run_id": result["run_id"],
            "enqueued": result["enqueued"],
            "growth": grown,
            "newly_due": len(self.eligible) - due_before,
            "faults": kinds,
            "kills": len(self.kills) - kills_before,
            "braze_accepted_requests": len(accepted),
            "braze_accepted_recipients": sum(a["recipients"] for a in accepted),
            "seconds": round(time.monotonic() - started, 2),
        }
        self.runs.append(record)
        self.say(
            f"   hour {hour:>2}  as_of {record['as_of']}  newly due {record['newly_due']:>3} (total "
            f"{len(self.eligible):>4})  Braze accepted {record['braze_accepted_recipients']:>3} in "
            f"{len(accepted)} request(s)  kills {record['kills']}  [{record['seconds']:.1f} s]  "
            f"faults: {', '.join(kinds) or '-'}"
        )
        if grown:
            added = sum(int(g.split(": ", 1)[1].split(" ", 1)[0]) for g in grown)
            self.say(f"            data: {added} license(s) activated or added in {len(grown)} enterprise(s)")

    def run_clean(self, hour: int) -> None:
        started = time.monotonic()
        self.hour = hour
        as_of = START + timedelta(hours=hour)
        due_before = len(self.eligible)
        result = self.dispatch(as_of)
        complete = self.wait_for_run(result["run_id"], self.settings.final_run_timeout)
        lines = self.completed.get(result["run_id"], [])
        ok = sum(1 for line in lines if not line.get("error") and not line.get("failed"))
        sent = sum(int(line.get("sent") or 0) for line in lines)
        record = {
            "hour": hour,
            "as_of": iso_z(as_of),
            "run_id": result["run_id"],
            "clean": True,
            "enqueued": result["enqueued"],
            "newly_due": len(self.eligible) - due_before,
            "passes_ok": ok,
            "passes_failed": len(lines) - ok,
            "sent": sent,
            "complete": complete,
            "seconds": round(time.monotonic() - started, 2),
        }
        self.runs.append(record)
        failures = sorted(
            {
                self.data.customer_name(str(line["enterprise_customer_uuid"]))
                for line in lines
                if line.get("error") or line.get("failed")
            }
        )
        self.say(
            f"   clean run (hour {hour})  as_of {record['as_of']}  passes ok/failed {ok}/{len(lines) - ok}  "
            f"sent {sent}  [{record['seconds']:.1f} s]" + ("" if complete else "  (not every enterprise completed!)")
        )
        if failures:
            self.say(f"            failed: {', '.join(failures)}")

    # ------------------------------------------------------------------------------------------ figures
    def ledger(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        paginator = self.engine.client().get_paginator("scan")  # the engine itself: never throttled
        for page in paginator.paginate(TableName=self.resources.ledger_table_name):
            for item in page["Items"]:
                record = {key: next(iter(value.values())) for key, value in item.items()}
                records[str(record["pk"])] = record
        return records

    def figures(self) -> dict[str, Any]:
        s, ledger = self.settings, self.ledger()
        sends, recipient_sends = self._sends()
        rejected = self._rejected_recipients()
        sent, eligible = set(sends), set(self.eligible)
        missed = sorted(eligible - sent - set(rejected))
        reasons = self._missed_reasons(missed)
        ineligible_sent = sorted(sent - eligible)
        for run in self.runs:  # every pass of each run's messages, redeliveries and duplicates included
            lines = self.completed.get(run["run_id"], [])
            run["passes_ok"] = sum(1 for line in lines if not line.get("error") and not line.get("failed"))
            run["passes_failed"] = len(lines) - run["passes_ok"]
        dlq_visible, dlq_in_flight = self.queue_depth(self.resources.work_dead_letter_queue_url)
        figures: dict[str, Any] = {
            "settings": {**asdict(s), "max_receive_count": self.max_receive, "slowest_batch": s.slowest_batch},
            "eligible": len(eligible),
            "sent": len(sent),
            "recipient_sends": recipient_sends,
            "missed": len(missed),
            "missed_by_reason": {reason: len(uuids) for reason, uuids in reasons.items()},
            "missed_licenses": reasons,
            "rejected_recipients": [{"license_uuid": uuid, **info} for uuid, info in sorted(rejected.items())],
            "rejected_recipients_sent": sorted(set(rejected) & sent),
            "sent_not_recorded_in_ledger": sorted(
                u for u in sent if ledger.get(LEDGER_PREFIX + u, {}).get("state") != "sent"
            ),
            "ineligible_sent": len(ineligible_sent),
            "ineligible_sent_licenses": ineligible_sent,
            "duplicates": self._duplicates(sends, ledger),
            "kills": len(self.kills),
            "kills_by_reason": dict(Counter(str(k["reason"]) for k in self.kills)),
            "kill_events": self.kills,
            "worker_incarnations": self.next_worker,
            "accepted_triggers": sorted(self.accepted.values(), key=lambda a: a["at"]),
            "faults": self._fault_counts(),
            "unfired_at_clean_runs": self.unfired,
            "dynamodb_throttled_by_operation": dict(self.dynamodb.throttled),
            "foreign_host_requests": [
                {"method": r.method, "path": r.path, "query": r.query, "has_body": bool(r.raw_body)}
                for r in self.foreign.requests
            ],
            **_ledger_figures(ledger),
            "error_notifications": len(self.drain_error_inbox()),
            "dead_letter_messages": dlq_visible + dlq_in_flight,
            "worker_log_counts": dict(self.log_counts),
            "standin_errors": [repr(e) for st in (self.braze, self.lm, self.lms) for e in st.errors],
            "runs": self.runs,
            "no_send_in_flight_at_the_end": self.quiet,
            "phase_seconds": {phase: round(seconds, 1) for phase, seconds in self.phases.items()},
            "wall_seconds": round(time.monotonic() - self.started, 1),
        }
        figures["targets"] = _targets(figures, s.skip)
        return figures

    def _sends(self) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """Every send Braze accepted for the campaign, by license uuid (dispatch id, when, which worker), and
        how many recipients they had in all."""
        sends: dict[str, list[dict[str, Any]]] = defaultdict(list)
        entries = [entry for entry in list(self.braze.outbox) if entry["campaign_id"] == CAMPAIGN]
        for entry in entries:
            meta = self.accepted.get(str(entry["dispatch_id"]), {})
            send = {"dispatch_id": entry["dispatch_id"], "at": meta.get("at"), "worker": meta.get("worker")}
            for recipient in entry["recipients"]:
                sends[str(recipient.get("trigger_properties", {}).get("license_uuid"))].append(send)
        return sends, sum(len(entry["recipients"]) for entry in entries)

    def _licenses_by_email(self) -> dict[str, set[str]]:
        by_email: dict[str, set[str]] = defaultdict(set)
        for due in self.eligible.values():
            by_email[due.email].add(due.license_uuid)
        return by_email

    def _rejected_recipients(self) -> dict[str, dict[str, str]]:
        """The eligible licenses of the recipients Braze refuses, by uuid."""
        by_email, name = self._licenses_by_email(), self.data.customer_name
        return {
            uuid: {"email": email, "refused_in": where, "enterprise": name(self.eligible[uuid].enterprise)}
            for email, where in self.data.rejected.items()
            for uuid in by_email.get(email, ())
        }

    def _missed_reasons(self, missed: list[str]) -> dict[str, list[str]]:
        """Why each missed license was missed, where the soak can tell."""
        by_email, refused = self._licenses_by_email(), set(self.data.rejected)
        refused_with: set[str] = set()  # licenses in a Braze request refused for a rejected recipient
        for request in (r for r in self.braze.requests if r.status == 400 and _names(r) & refused):
            body = request.json_body  # a trigger names its licenses; an alias request only emails
            refused_with |= {
                str(r.get("trigger_properties", {}).get("license_uuid")) for r in body.get("recipients", [])
            }
            refused_with |= {
                u for a in body.get("user_aliases", []) for u in by_email.get(str(a.get("alias_name")), ())
            }
        reasons: dict[str, list[str]] = defaultdict(list)
        for uuid in missed:
            if self.eligible[uuid].enterprise == self.data.malformed_enterprise:
                reasons["enterprise serves malformed license records"].append(uuid)
            elif uuid in refused_with:
                reasons["in a Braze request refused for another (rejected) recipient"].append(uuid)
            else:
                reasons["unexplained"].append(uuid)
        return dict(reasons)

    def _duplicates(self, sends: dict[str, list[dict[str, Any]]], ledger: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Every send of a license after the first. A kill-window duplicate needs evidence: the earlier send's
        dispatch id is not the one the ledger recorded, and the worker incarnation that sent it was SIGKILLed
        after Braze accepted it and before the license was sent again."""
        kills_by_worker: dict[str, list[float]] = defaultdict(list)
        for kill in self.kills:
            kills_by_worker[str(kill["worker"])].append(float(kill["at"]))
        figures: dict[str, Any] = {"kill_window_recipients": 0, "other_recipients": 0, "details": []}
        kill_window_requests: set[str] = set()
        other_requests: set[str] = set()
        for uuid, license_sends in sends.items():
            if len(license_sends) < 2:
                continue
            ordered = sorted(license_sends, key=lambda x: x["at"] or 0.0)
            recorded = ledger.get(LEDGER_PREFIX + uuid, {})
            evidenced = [
                {**send, "killed_at": killed[0]}
                for index, send in enumerate(ordered)
                if send["dispatch_id"] != recorded.get("dispatch_id") and send["at"] is not None
                and (killed := _killed_between(kills_by_worker, send, ordered[index + 1 :]))
            ]  # fmt: skip
            extra = len(ordered) - 1
            in_window = min(extra, len(evidenced))
            figures["kill_window_recipients"] += in_window
            figures["other_recipients"] += extra - in_window
            kill_window_requests.update(str(e["dispatch_id"]) for e in evidenced[:in_window])
            if extra - in_window:
                other_requests.update(str(x["dispatch_id"]) for x in ordered)
            enterprise = self.data.customer_name(self.eligible[uuid].enterprise) if uuid in self.eligible else None
            figures["details"].append(
                {
                    "license_uuid": uuid,
                    "enterprise": enterprise,
                    "sends": ordered,
                    "ledger": {k: recorded.get(k) for k in ("state", "dispatch_id", "recorded_at", "run_id")},
                    "kill_window": in_window,
                    "other": extra - in_window,
                }
            )
        return {**figures, "kill_window_requests": len(kill_window_requests), "other_requests": len(other_requests)}

    def _fault_counts(self) -> dict[str, dict[str, int]]:
        """Armed and fired, per fault kind."""
        fired = Counter(self.fired)
        for standin in (self.braze, self.lm, self.lms):
            fired.update(standin.fired_faults)
        fired["dynamodb_throttling"] = sum(self.dynamodb.throttled.values())
        hourly = {kind: {"armed": self.armed.get(kind, 0), "fired": fired.get(kind, 0)} for kind in HOURLY_FAULTS}
        return hourly | self.standing_faults()

    def standing_faults(self) -> dict[str, dict[str, int]]:
        """Armed and fired, per standing fault: a Braze request naming a refused (or minor-error) recipient that
        Braze refused (accepted), and the license pages that served the malformed records."""
        data, requests = self.data, self.braze.requests
        by_kind = {
            "braze_rejected_recipient": (
                {e for e, where in data.rejected.items() if where == "trigger"},
                TRIGGER_PATH,
                400,
            ),
            "braze_rejected_alias": ({e for e, where in data.rejected.items() if where == "alias"}, ALIAS_PATH, 400),
            "braze_minor_error": (set(data.minor_errors), TRIGGER_PATH, 201),
        }
        counts = {
            kind: {"armed": len(names), "fired": sum(1 for r in requests if r.status == status
                                                      and r.path.rstrip("/") == path and _names(r) & names)}
            for kind, (names, path, status) in by_kind.items()
        }  # fmt: skip
        malformed = f"/api/v1/subscriptions/{data.malformed_plan}/licenses"
        armed = len(data.dataset.extra_raw_licenses.get(str(data.malformed_plan), []))
        return counts | {"malformed_licenses": {"armed": armed, "fired": self.lm.request_count(malformed)}}


def _names(request: Any) -> set[str]:
    """The alias names a Braze request (trigger or alias creation) carries."""
    body = request.json_body if isinstance(request.json_body, dict) else {}
    recipients = [r.get("user_alias", {}) for r in body.get("recipients", [])]
    return {str(a.get("alias_name")) for a in recipients + body.get("user_aliases", [])}


def target(name: str, value: Any, ok: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "pass": ok}


def _targets(figures: dict[str, Any], skip: tuple[str, ...]) -> list[dict[str, Any]]:
    missed, ineligible, kills = figures["missed"], figures["ineligible_sent"], figures["kills"]
    other, requests = figures["duplicates"]["other_recipients"], figures["duplicates"]["kill_window_requests"]
    foreign = len(figures["foreign_host_requests"])
    unfired = [kind for kind, counts in figures["faults"].items() if counts["fired"] < 1 and kind not in skip]
    return [
        target("0 missed after the final clean runs (apart from Braze-rejected recipients)", missed, missed == 0),
        target("0 ineligible sent", ineligible, ineligible == 0),
        target('0 "other" duplicates (recipients)', other, other == 0),
        target(
            "kill-window duplicates (Braze requests sent again) <= kills", f"{requests} <= {kills}", requests <= kills
        ),
        target("the foreign host a redirect pointed to received nothing", foreign, foreign == 0),
        target("every fault kind fired at least once (soak self-check)", ", ".join(unfired) or "all", not unfired),
    ]


def _killed_between(
    kills_by_worker: dict[str, list[float]], send: dict[str, Any], later: list[dict[str, Any]]
) -> list[float]:
    """When the worker that made ``send`` was killed after it and before the next send of the license."""
    until = later[0]["at"] if later else float("inf")
    return [k for k in kills_by_worker.get(str(send["worker"]), []) if send["at"] <= k <= until]


def _ledger_figures(ledger: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "ledger_records": len(ledger),
        "ledger_states": dict(Counter(str(r.get("state")) for r in ledger.values())),
        "ledger_unconfirmed": sum(
            1 for r in ledger.values() if str(r.get("dispatch_id", "")).startswith("unconfirmed:")
        ),
    }


def worker_batch_size() -> int:
    return int(load_template()["Parameters"]["WorkerBatchSize"]["Default"])


# ----------------------------------------------------------------------------------------------- report
def print_figures(figures: dict[str, Any], stream: TextIO) -> None:
    def say(text: str = "") -> None:
        print(text, file=stream)

    d = figures["duplicates"]
    say("\n== Figures (license expiration reminders)")
    say(f"   eligible (oracle, over all runs)  {figures['eligible']}")
    say(f"   sent (distinct licenses)          {figures['sent']}   ({figures['recipient_sends']} recipient sends)")
    reasons = ", ".join(f"{reason}: {n}" for reason, n in figures["missed_by_reason"].items())
    say(f"   missed                            {figures['missed']}" + (f"   ({reasons})" if reasons else ""))
    say(f"   ineligible sent                   {figures['ineligible_sent']}")
    unrecorded = figures["sent_not_recorded_in_ledger"]
    say(f"   sent, not recorded as sent in the ledger (a later run may send them again): {len(unrecorded)}")
    say(
        f"   duplicates, kill between Braze accepting and the ledger record: {d['kill_window_recipients']} "
        f"recipient(s) in {d['kill_window_requests']} Braze request(s)"
    )
    say(f"   duplicates, other                 {d['other_recipients']} recipient(s)")
    say(f"   rejected recipients (Braze refuses them; not counted as missed): {len(figures['rejected_recipients'])}")
    for r in figures["rejected_recipients"]:
        say(f"      {r['email']} (license {r['license_uuid']}, {r['enterprise']}, refused in {r['refused_in']})")
    by_reason = ", ".join(f"{k} {v}" for k, v in figures["kills_by_reason"].items()) or "-"
    say(
        f"   kills (SIGKILL)                   {figures['kills']} ({by_reason}); worker incarnations {figures['worker_incarnations']}"
    )
    say("   faults (armed / fired):")
    for kind, counts in figures["faults"].items():
        say(f"      {kind:<28} {counts['armed']:>3} / {counts['fired']}")
    if figures["dynamodb_throttled_by_operation"]:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(figures["dynamodb_throttled_by_operation"].items()))
        say(f"      (DynamoDB requests throttled: {ops})")
    say(f"   foreign host received             {len(figures['foreign_host_requests'])} request(s)")
    for r in figures["foreign_host_requests"][:5]:
        say(f"      {r['method']} {r['path']}{' (with a body)' if r['has_body'] else ''}")
    say(
        f"   ledger: {figures['ledger_records']} records {figures['ledger_states']}, "
        f"{figures['ledger_unconfirmed']} unconfirmed; error notifications {figures['error_notifications']}; "
        f"dead-letter messages {figures['dead_letter_messages']}"
    )
    for name, n in sorted(figures["worker_log_counts"].items()):
        say(f"   worker logs: {name}: {n}")
    if figures["standin_errors"]:
        say(f"   STAND-IN ERRORS: {figures['standin_errors'][:3]}")
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in figures["phase_seconds"].items())
    say(f"   wall time                         {figures['wall_seconds']:.1f} s ({phases})")
    say("\n== Targets")
    for t in figures["targets"]:
        say(f"   [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['value']}")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_args(argv: list[str] | None) -> tuple[SoakSettings, Path, Path]:
    parser = argparse.ArgumentParser(prog="python -m perf.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data and the fault schedule (1)")
    parser.add_argument("--hours", type=int, help="simulated hourly runs with faults (24; --short: 4)")
    parser.add_argument("--enterprises", type=int, help="enterprises (8; --short: 6)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    parser.add_argument("--final-runs", type=int, default=2, help="clean runs at the end (2)")
    parser.add_argument("--short", action="store_true", help="a quick soak for the test suite (about 30-40 s)")
    parser.add_argument(
        "--skip",
        default="",
        help=f"fault kinds to leave out, comma separated (of: {', '.join(HOURLY_FAULTS + STANDING_FAULTS)})",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="logs and state directory (.soak)")
    parser.add_argument("--json", type=Path, help="where to write the figures (<out>/soak.json)")
    args = parser.parse_args(argv)
    hours = args.hours if args.hours is not None else (4 if args.short else 24)
    enterprises = args.enterprises if args.enterprises is not None else (6 if args.short else 8)
    skip = tuple(kind for kind in args.skip.replace(" ", ",").split(",") if kind)
    unknown = set(skip) - set(HOURLY_FAULTS + STANDING_FAULTS)
    if unknown:
        parser.error(f"--skip: unknown fault kind(s) {', '.join(sorted(unknown))}")
    for name, value, low in (("--hours", hours, 1), ("--enterprises", enterprises, 1), ("--workers", args.workers, 1),
                             ("--final-runs", args.final_runs, 1)):  # fmt: skip
        if value < low:
            parser.error(f"{name} must be at least {low}")
    settings = SoakSettings(
        seed=args.seed,
        hours=hours,
        enterprises=enterprises,
        workers=args.workers,
        final_runs=args.final_runs,
        hour_seconds=2.5 if args.short else 4.0,
        fault_probability=0.3 if args.short else 0.35,
        short=args.short,
        skip=skip,
    )
    return settings, args.out, args.json or args.out / "soak.json"


def main(argv: list[str] | None = None) -> int:
    settings, out, json_path = parse_args(argv)
    figures = Soak(settings, out=out).run()
    print_figures(figures, sys.stdout)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n   figures written to {_rel(json_path)}")
    return 0 if all(t["pass"] for t in figures["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
