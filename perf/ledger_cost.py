"""``python -m perf.ledger_cost``: what the ledger costs per reminder. Prints, asserts nothing.

The steady state of one enterprise's reminders, as the job drives the ledger: ``sent()`` for each page of 500
keys, then for each batch of 50 ``claim_many`` and ``mark_sent_many``. The table (the template's) is on AWS's
DynamoDB Local, in another process (``devstack/dynamodb_local.py``), so only this process's CPU is counted:

* DynamoDB requests per 50 reminders, counted by a botocore ``before-send`` hook on the ledger's client
  (one per HTTP request, botocore's own retries included), split into the ``sent()`` read and claim + record;
* client CPU per reminder: ``time.process_time()`` (every thread of this process) around the ledger calls;
* the same with contention: a tenth of each batch already claimed by another run (the fallback path);
* wall time, which here measures DynamoDB Local on this machine (one transaction at a time), not DynamoDB.

``--baseline REV`` also measures ``adapters/ledger.py`` as it was at git revision REV (e.g. the pynamodb
ledger before issue 8), loaded from git into this process, in the same run and against the same server.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LEDGER_PATH = "layers/shared/license_notifications/adapters/ledger.py"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # expires_at in the future (TTL: perf/fleet.py)
PAGE = 500  # license-manager's page: one sent() call
BATCH = 50  # Braze's batch: one claim_many and one mark_sent_many


def baseline_module(rev: str) -> ModuleType:
    """``adapters/ledger.py`` at git revision ``rev``, imported under its own name."""
    source = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(ROOT), "show", f"{rev}:{LEDGER_PATH}"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"ledger_at_{rev.replace('/', '_').replace('-', '_')}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    exec(compile(source, f"{rev}:{LEDGER_PATH}", "exec"), module.__dict__)  # noqa: S102 - the project's own code
    return module


def dynamodb_client(ledger: Any) -> Any:
    """The botocore client the ledger talks through (the current ledger's, or a pynamodb model's)."""
    if hasattr(ledger, "client"):
        return ledger.client
    return ledger.model._get_connection().connection.client  # the pynamodb ledger


class RequestCounter:
    def __init__(self, client: Any) -> None:
        self.by_operation: Counter[str] = Counter()
        client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any = None, **kwargs: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        self.by_operation[target.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        counts, self.by_operation = self.by_operation, Counter()
        return counts


def create_table(endpoint_url: str) -> str:
    from devstack.aws import create_tables_from_template

    return create_tables_from_template(endpoint_url, suffix=f"-{uuid.uuid4().hex[:8]}")["LedgerTable"]


def requests_for(run: str, keys: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "key": key,
            "kind": "expiration_reminder",
            "run_id": run,
            "expires_at": NOW + timedelta(days=100),
            "enterprise_customer_uuid": "11111111-2222-3333-4444-555555555555",
            "subject_uuid": key.rsplit("#", 1)[-1],
        }
        for key in keys
    ]


def drive(ledger: Any, counter: RequestCounter, n: int, *, held_by: Any = None) -> dict[str, float]:
    """n reminders through sent() / claim_many / mark_sent_many; ``held_by`` claims a tenth of each batch first."""
    keys = [f"expiration_reminder#{uuid.uuid4()}" for _ in range(n)]
    cpu = {"sent": 0.0, "claim": 0.0, "record": 0.0}
    requests: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    claimed = 0
    counter.take()
    wall = time.perf_counter()
    for start in range(0, n, PAGE):
        page = keys[start : start + PAGE]
        t = time.process_time()
        ledger.sent(page)
        cpu["sent"] += time.process_time() - t
        phases["sent"] += sum(counter.take().values())
        for b in range(0, len(page), BATCH):
            batch = page[b : b + BATCH]
            if held_by is not None:
                held_by.claim_many(requests_for("other-run", batch[:: BATCH // 5]))
                counter.take()  # the other run's requests go through its own client; nothing of ours
            t = time.process_time()
            claims = ledger.claim_many(requests_for("bench", batch))
            cpu["claim"] += time.process_time() - t
            counts = counter.take()
            phases["claim"] += sum(counts.values())
            requests.update(counts)
            taken = [c for c in claims if c is not None]
            claimed += len(taken)
            t = time.process_time()
            ledger.mark_sent_many(taken, as_of=NOW, run_id="bench", dispatch_id="dispatch-bench")
            cpu["record"] += time.process_time() - t
            counts = counter.take()
            phases["record"] += sum(counts.values())
            requests.update(counts)
    wall = time.perf_counter() - wall
    per_50 = BATCH / n
    return {
        "n": n,
        "seconds": wall,
        "claimed": claimed,
        "sent_per_50": phases["sent"] * per_50,
        "claim_per_50": phases["claim"] * per_50,
        "record_per_50": phases["record"] * per_50,
        "total_per_50": sum(phases.values()) * per_50,
        "cpu_ms": 1000 * sum(cpu.values()) / n,
        "cpu_claim_record_ms": 1000 * (cpu["claim"] + cpu["record"]) / n,
        "operations": dict(requests),
    }


def measure(name: str, make: Callable[[str], Any], env: dict[str, str], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for contended in (False, True):
        for n in sizes if not contended else sizes[:1]:
            table = create_table(env["AWS_ENDPOINT_URL_DYNAMODB"])
            ledger, other = make(table), make(table)
            counter = RequestCounter(dynamodb_client(ledger))
            drive(ledger, counter, 100)  # warm-up: client, connection pool, first-call caches
            result = drive(ledger, counter, n, held_by=other if contended else None)
            rows.append({"impl": name, "contended": contended, **result})
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"  {'ledger':<24} {'reminders':>9} {'held':>5} {'sent()':>7} {'claim':>6} {'record':>7} {'total':>6}"
          f" {'CPU ms/reminder':>16} {'(claim+record)':>15} {'wall s':>7}")  # fmt: skip
    for r in rows:
        held = "10 %" if r["contended"] else "-"
        print(f"  {r['impl']:<24} {r['n']:>9,} {held:>5} {r['sent_per_50']:>7.2f} {r['claim_per_50']:>6.2f}"
              f" {r['record_per_50']:>7.2f} {r['total_per_50']:>6.2f} {r['cpu_ms']:>16.3f}"
              f" {r['cpu_claim_record_ms']:>15.3f} {r['seconds']:>7.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.ledger_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--reminders", type=int, nargs="+", default=[1_000, 5_000])
    parser.add_argument("--baseline", metavar="REV", help="also measure adapters/ledger.py as of this git revision")
    args = parser.parse_args(argv)

    from devstack.dynamodb_local import DynamoDBLocal

    with DynamoDBLocal() as engine:
        env = engine.env(credentials=True)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.update(env)
        from license_notifications.adapters import ledger as current

        implementations: list[tuple[str, Callable[[str], Any]]] = [("current", current.Ledger)]
        if args.baseline:
            old = baseline_module(args.baseline)
            implementations.insert(0, (f"at {args.baseline}", old.Ledger))
        print("ledger cost per reminder (DynamoDB Local in another process; requests counted per 50 reminders)\n")
        rows = []
        for name, make in implementations:
            rows += measure(name, make, env, args.reminders)
        print_rows(rows)
        print("\nrequests by operation (claim + record):")
        for r in rows:
            held = ", 10 % held elsewhere" if r["contended"] else ""
            print(f"  {r['impl']}, {r['n']:,} reminders{held}: {r['operations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
