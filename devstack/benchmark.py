"""``make benchmark``: speed and memory figures for the expiration-reminder worker. Prints, asserts nothing.

Measured here, on the local stand-ins over loopback:

1. cold start: importing the worker handler module in a fresh interpreter (what Lambda's init phase pays);
2. the rule alone: decisions per second;
3. one enterprise of N activated licenses through the real job (license-manager pages of 500, Braze
   batches of 50): wall time, reminders per second, Braze requests per 50 reminders, and the peak Python
   memory of the run (tracemalloc), for growing N. The ledger here is the tests' in-memory double
   (``tests/fakes.py``, the real ledger's protocol in a dict), so the figures are the job's own cost (HTTP,
   parsing, batching), not moto's;
4. the same job with the real pynamodb ledger on moto, for a smaller N (moto serves a DynamoDB request in
   ~15 ms, far slower than DynamoDB, so this line bounds moto, not the job).

Targets (issue 2): at most 2 Braze requests per 50 reminders; memory bounded by a page, not by N.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from tests.fakes import InMemoryLedger  # the tests' ledger double (run from the repository root: make benchmark)

from devstack.dataset import Dataset
from devstack.lambda_local import ROOT
from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn
from license_notifications.adapters.oauth import clear_token_cache
from license_notifications.config import load_settings
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.rules.expiration import reminder_decision
from license_notifications.services import Services

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BRAZE_KEY = "bench-key"


def cold_start(runs: int = 5) -> list[float]:
    code = (
        "import sys, time; t = time.perf_counter(); "
        f"sys.path[:0] = [{str(ROOT / 'functions' / 'worker')!r}]; import worker; "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    times = []
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def rule_throughput(n: int = 300_000) -> float:
    expiry = NOW + timedelta(days=10)
    start = time.perf_counter()
    for i in range(n):
        reminder_decision(
            status="activated" if i % 4 else "assigned",
            email="a@example.com",
            expiration_date=expiry,
            already_sent=i % 7 == 0,
            opted_out=False,
            now=NOW,
            days_before_expiration=30,
        )
    return n / (time.perf_counter() - start)


def _serve(n: int, with_moto: bool, conn) -> None:
    """Child process: the stand-ins with one enterprise of ``n`` activated licenses (and moto with the
    template's table, if asked), until told to stop."""
    from devstack.aws import MotoStack, create_resources_from_template

    dataset = Dataset(now=NOW)
    customer = dataset.add_customer("Bench Corp")
    plan = dataset.add_plan(customer.uuid, title="Bench plan", expires_in_days=10)
    dataset.add_licenses(plan.uuid, "activated", n)
    with (
        LmsStandIn(dataset) as lms,
        LicenseManagerStandIn(dataset, lms.registry, clock=lambda: NOW) as lm,
        BrazeStandIn(BRAZE_KEY) as braze,
        MotoStack() as moto,
    ):
        aws = {}
        if with_moto:
            table = create_resources_from_template(moto.endpoint_url, suffix="-bench").ledger_table_name
            aws = {**moto.env(), "LEDGER_TABLE_NAME": table}
        conn.send({"enterprise": customer.uuid, "lms": lms.url, "lm": lm.url, "braze": braze.url,
                   "client_id": lms.client_id, "client_secret": lms.client_secret, "aws": aws})  # fmt: skip
        conn.recv()  # stop
        conn.send(braze.request_count())


def job_run(n: int, *, real_ledger: bool = False) -> dict[str, float]:
    """Run the job in this process against stand-ins in another, so tracemalloc sees only the job."""
    clear_token_cache()
    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(n, real_ledger, child), daemon=True)
    server.start()
    try:
        urls = parent.recv()
        os.environ.update(urls["aws"])
        env = {
            "LICENSE_MANAGER_URL": urls["lm"],
            "LMS_URL": urls["lms"],
            "OAUTH_CLIENT_ID": urls["client_id"],
            "OAUTH_CLIENT_SECRET": urls["client_secret"],
            "BRAZE_API_URL": urls["braze"],
            "BRAZE_API_KEY": BRAZE_KEY,
            "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": "bench",
            "LEDGER_TABLE_NAME": urls["aws"].get("LEDGER_TABLE_NAME", "unused"),
        }
        services = Services(load_settings(env))
        if not real_ledger:
            services.__dict__["ledger"] = InMemoryLedger()  # fills the cached_property: the in-memory double
        job = services.expiration_reminders()
        tracemalloc.start()
        start = time.perf_counter()
        outcome = job.run_enterprise(urls["enterprise"], JobRun(run_id="bench", as_of=NOW))
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        parent.send("stop")
        braze_requests = parent.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    if outcome.sent != n:
        raise RuntimeError(f"benchmark run did not send every reminder: {outcome}")
    return {
        "n": n,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "braze_requests": braze_requests,
        "per_50": braze_requests / (n / 50),
        "peak_mib": peak / 2**20,
    }


def main() -> int:
    print("license-notifications benchmark (expiration reminders)\n")
    times = cold_start()
    print(f"cold start, import of the worker handler module: median {statistics.median(times) * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {len(times)} fresh interpreters)")  # fmt: skip
    print(f"rule: {rule_throughput():,.0f} reminder decisions per second\n")

    print("one enterprise through the real job (stand-ins over loopback, in-memory ledger double):")
    print(f"  {'licenses':>8} {'seconds':>8} {'reminders/s':>12} {'Braze req':>10} {'req per 50':>10} {'peak MiB':>9}")
    for n in (500, 2_000, 8_000):
        r = job_run(n)
        print(f"  {r['n']:>8,} {r['seconds']:>8.2f} {r['per_second']:>12,.0f} {r['braze_requests']:>10} "
              f"{r['per_50']:>10.2f} {r['peak_mib']:>9.1f}")  # fmt: skip

    r = job_run(300, real_ledger=True)
    print("\nsame job with the real pynamodb ledger on moto (bounded by moto's ~15 ms per DynamoDB request):")
    print(f"  {r['n']:>8,} licenses in {r['seconds']:.2f} s ({r['per_second']:,.0f}/s), "
          f"{r['per_50']:.2f} Braze requests per 50, peak {r['peak_mib']:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
