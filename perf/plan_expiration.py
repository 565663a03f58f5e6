"""The post-expiration emails' Braze requests per 50 emails (a section of ``make benchmark``).

The real job (``Services.plan_expiration_emails()``: its HTTP adapters, the shared batch pipeline) runs over
``enterprises`` enterprises of the in-process stand-ins (LMS, license-manager, Braze; loopback), each with a plan
that expired 2 days ago: ``due`` activated learners to email (a multiple of 50, so every batch is full: the
steady state) and ``renewed`` more whose email holds an activated license in a renewal of the plan (skipped, so
they must cost no Braze request; the renewal's licenses are read from license-manager). The ledger is the unit
tests' double (``tests.fakes.InMemoryLedger``): Braze requests do not depend on it. Braze's own count of the
requests it received is the figure; a second run an hour later must send nothing and make no Braze request.
Goal: at most 2 Braze requests per 50 emails (one ``/users/alias/new``, one ``/campaigns/trigger/send``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes import InMemoryLedger

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BRAZE_KEY = "bench-key"
CAMPAIGN = "bench-plan-expiration"
GOAL_BRAZE_PER_50 = 2.0


def measure(enterprises: int = 4, due: int = 500, renewed: int = 100) -> dict[str, Any]:
    """Run the job over the enterprises twice (``NOW``, then an hour later); returns the figures."""
    from devstack.dataset import Dataset
    from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn

    from license_notifications.adapters.oauth import clear_token_cache
    from license_notifications.config import load_settings
    from license_notifications.jobs.enterprise_run import JobRun
    from license_notifications.services import Services

    dataset = Dataset(now=NOW)
    uuids = []
    for n in range(enterprises):
        customer = dataset.add_customer(f"Bench Expired {n}")
        old = dataset.add_plan(customer.uuid, title=f"expired {n}", expires_in_days=-2)
        dataset.add_licenses(old.uuid, "activated", due + renewed, "learner{n:06d}@{slug}.example.com")
        renewal = dataset.add_plan(
            customer.uuid, title=f"renewal {n}", start_date=old.expiration_date,
            expiration_date=old.expiration_date + timedelta(days=365),
        )  # fmt: skip
        dataset.add_licenses(renewal.uuid, "activated", renewed, "learner{n:06d}@{slug}.example.com", first=due + 1)
        dataset.add_renewal(old.uuid, renewal.uuid)
        uuids.append(customer.uuid)

    clear_token_cache()
    with (
        LmsStandIn(dataset) as lms,
        LicenseManagerStandIn(dataset, lms.registry, clock=lambda: NOW) as license_manager,
        BrazeStandIn(BRAZE_KEY) as braze,
    ):
        settings = load_settings(
            {
                "LICENSE_MANAGER_URL": license_manager.url,
                "LMS_URL": lms.url,
                "OAUTH_CLIENT_ID": lms.client_id,
                "OAUTH_CLIENT_SECRET": lms.client_secret,
                "BRAZE_API_URL": braze.url,
                "BRAZE_API_KEY": BRAZE_KEY,
                "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN": CAMPAIGN,
            }
        )
        services = Services(settings)
        services.__dict__["ledger"] = InMemoryLedger()  # the cached adapter: the ledger double
        job = services.plan_expiration_emails()
        runs = []
        for number, as_of in enumerate((NOW, NOW + timedelta(hours=1)), start=1):
            before = braze.request_count()
            started = time.perf_counter()
            outcomes = [job.run_enterprise(u, JobRun(run_id=f"bench-pe-{number}", as_of=as_of)) for u in uuids]
            runs.append(
                {
                    "seconds": time.perf_counter() - started,
                    "sent": sum(o.sent for o in outcomes),
                    "renewed": sum(o.skipped.get("renewed", 0) for o in outcomes),
                    "failed": sum(o.failed + (1 if o.error else 0) for o in outcomes),
                    "braze_requests": braze.request_count() - before,
                }
            )
        sent_to = [props["license_uuid"] for _, props in braze.sent_to(CAMPAIGN)]
    first, second = runs
    per_50 = first["braze_requests"] / first["sent"] * 50 if first["sent"] else None
    return {
        "goal": f"Braze requests per 50 post-expiration emails <= {GOAL_BRAZE_PER_50:g}",
        "enterprises": enterprises,
        "due": enterprises * due,
        "renewed": enterprises * renewed,
        "runs": runs,
        "braze_per_50": per_50,
        "sent_once": len(sent_to) == len(set(sent_to)) == enterprises * due,
        "pass": per_50 is not None
        and per_50 <= GOAL_BRAZE_PER_50 + 1e-9
        and first["sent"] == enterprises * due
        and first["renewed"] == enterprises * renewed
        and first["failed"] == 0
        and (second["sent"], second["braze_requests"]) == (0, 0),
    }


def print_figure(r: dict[str, Any], say: Callable[[str], None]) -> None:
    first, second = r["runs"]
    say("7. Post-expiration emails: Braze requests per 50 emails (the real job, stand-ins over loopback)")
    say(f"   {r['enterprises']} enterprises, {r['due']:,} due, {r['renewed']:,} renewed learners skipped")
    say(f"   run at as_of:         {first['sent']:,} sent, {first['renewed']:,} renewed, {first['failed']} failed, "
        f"{first['braze_requests']} Braze requests ({first['seconds']:.1f} s)")  # fmt: skip
    say(f"   an hour later:        {second['sent']} sent, {second['braze_requests']} Braze requests")
    per_50 = "n/a" if r["braze_per_50"] is None else f"{r['braze_per_50']:.2f}"
    say(f"   Braze requests per 50 emails: {per_50}   goal <= {GOAL_BRAZE_PER_50:g}   "
        f"{'PASS' if r['pass'] else 'FAIL'}")  # fmt: skip
