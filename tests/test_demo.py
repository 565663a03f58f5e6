"""`make demo` end to end, in a subprocess (it owns its environment): every claim it checks must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_end_to_end_and_its_checks_hold():
    proc = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--now", "2026-03-01T09:00:00Z"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "[FAILED]" not in out
    assert "All demo checks held." in out
    assert "reminders sent: 157 to 157 licenses; sent twice: 0" in out
    # The outbox the report points to holds exactly what Braze accepted.
    outbox = json.loads((ROOT / ".demo" / "braze-outbox.json").read_text())
    licenses = [r["trigger_properties"]["license_uuid"] for sent in outbox for r in sent["recipients"]]
    assert len(licenses) == len(set(licenses)) == 157
