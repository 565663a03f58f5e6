"""Peak memory of one worker for one enterprise, and the ledger doubles the benchmark uses.

The worker runs in a fresh child process (spawned), as one Lambda worker would: it imports the service, runs a
small warm-up enterprise (so imports, connections, the OAuth token and first-call caches are paid), then the
measured enterprise. The figure is how far the resident set size rose above where it stood before the measured
run: its peak during the run (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs`` just
before the run) minus ``VmRSS`` before it. ``ru_maxrss`` cannot be used here: Linux keeps it across the
fork and exec that spawn the child, so it starts at the benchmark process's own peak. The stand-ins run in
another process, so their memory is not counted.

Ledger doubles (private copies here, on purpose: the tests' fakes may move or change):

* :class:`KeepNothingLedger` for the memory figure: nothing was sent before, every claim is granted, records
  are counted, and it holds nothing per key. A real ledger's state lives in DynamoDB, not in the worker;
  the dict-backed double (tests/fakes.py) holds about 300 bytes per key (about 60 MiB at 200,000 keys), which would
  measure the double, not the worker.
"""

from __future__ import annotations

import gc
import resource
import time
from typing import Any

from perf.fleet import _SPAWN, NOW


def _claim(key: str, token: str) -> Any:
    from license_notifications.adapters.ledger import Claim

    return Claim(key, token)


class KeepNothingLedger:
    """The Ledger interface the jobs use, with no per-key state."""

    def __init__(self) -> None:
        self.claimed = 0
        self.recorded = 0

    def sent(self, keys: Any) -> dict[str, Any]:
        for _ in keys:  # consume it as the real one does
            pass
        return {}

    def states(self, keys: Any) -> dict[str, str]:
        return self.sent(keys)

    def claim_many(self, requests: Any) -> list[Any]:
        claims = [_claim(request["key"], "bench") for request in requests]
        self.claimed += len(claims)
        return claims

    def mark_sent_many(self, claims: Any, *, as_of: Any, run_id: str, dispatch_id: str) -> int:
        self.recorded += len(claims)
        return len(claims)

    def release_many(self, claims: Any) -> None:
        pass

    def hold_many(self, claims: Any, *, seconds: int, reason: str) -> None:
        pass


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _worker_main(conn: Any, settings_env: dict[str, str], warm_up: str, enterprise: str) -> None:
    try:
        import logging

        from license_notifications.config import load_settings
        from license_notifications.jobs.enterprise_run import JobRun
        from license_notifications.services import Services

        logging.getLogger("license_notifications").setLevel(logging.CRITICAL)
        services = Services(load_settings(settings_env))
        services.__dict__["ledger"] = KeepNothingLedger()  # fills the cached_property
        job = services.expiration_reminders()
        warm = job.run_enterprise(warm_up, JobRun(run_id="bench-warm-up", as_of=NOW))
        if warm.error:
            raise RuntimeError(f"warm-up enterprise failed: {warm.error}")
        gc.collect()
        reset = _reset_peak()
        before = _status_kib("VmRSS") if reset else _status_kib("VmHWM")
        started = time.perf_counter()
        outcome = job.run_enterprise(enterprise, JobRun(run_id="bench-memory", as_of=NOW))
        seconds = time.perf_counter() - started
        after = _status_kib("VmHWM")
        conn.send(
            {
                "seconds": seconds,
                "sent": outcome.sent,
                "failed": outcome.failed,
                "error": outcome.error,
                "braze_requests": outcome.braze_requests,
                "rss_before_kib": before,  # VmRSS (VmHWM when the peak could not be reset)
                "peak_kib": after,  # VmHWM after the run
                "peak_was_reset": reset,
                "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # for reference only
            }
        )
    except Exception as exc:
        conn.send(exc)


def peak_rss_run(settings_env: dict[str, str], warm_up: str, enterprise: str, *, timeout: float = 900) -> dict:
    """One enterprise through the real job in a fresh worker process: its figures and peak-RSS growth."""
    parent, child = _SPAWN.Pipe()
    process = _SPAWN.Process(target=_worker_main, args=(child, settings_env, warm_up, enterprise), daemon=True)
    process.start()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"the memory run did not finish within {timeout:.0f} s")
        reply = parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    if isinstance(reply, BaseException):
        raise RuntimeError(f"memory run failed: {reply!r}") from reply
    reply["growth_mib"] = (reply["peak_kib"] - reply["rss_before_kib"]) / 1024
    reply["peak_mib"] = reply["peak_kib"] / 1024
    return reply
