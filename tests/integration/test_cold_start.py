"""The worker's init stays Powertools' own: the application (pydantic models, requests, the jobs)
is imported with the first record. Structural, not timed (the benchmark prints the times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# pynamodb (the ledger's model) included: it comes with the ledger adapter, on the first record
DEFERRED = ["requests", "license_notifications.services", "license_notifications.jobs.work",
            "license_notifications.adapters.ledger", "pynamodb"]  # fmt: skip


def test_importing_the_worker_handler_defers_the_application():
    code = f"import sys, json; import worker; print(json.dumps({{name: name in sys.modules for name in {DEFERRED!r}}}))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / "worker"), str(ROOT / "layers" / "shared")]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == dict.fromkeys(DEFERRED, False)
