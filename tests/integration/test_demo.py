"""`make demo` end to end, in a subprocess (it owns its environment): every claim it checks must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    for claim in ("no license was reminded twice", "no admin got the same threshold email twice",
                  "no admin got two weekly digests within a week",
                  "no license got the post-expiration email twice"):  # fmt: skip
        assert f"[ok] {claim}" in out
    # The outbox the report points to holds exactly what Braze accepted.
    outbox = json.loads((ROOT / ".demo" / "braze-outbox.json").read_text())
    licenses = [
        r["trigger_properties"]["license_uuid"]
        for sent in outbox
        if sent["campaign_id"] == "demo-license-expiration-reminder"
        for r in sent["recipients"]
    ]
    assert len(licenses) == len(set(licenses)) == 157
    expired = [
        r["trigger_properties"]["license_uuid"]
        for sent in outbox
        if sent["campaign_id"] == "demo-subscription-plan-expiration"
        for r in sent["recipients"]
    ]
    assert len(expired) == len(set(expired)) == 21  # Globex 10, Tyrell 6 + the 5 not renewed
    learner_campaigns = ("demo-license-expiration-reminder", "demo-subscription-plan-expiration")
    admins = [r["external_user_id"] for sent in outbox if sent["campaign_id"] not in learner_campaigns
              for r in sent["recipients"]]  # fmt: skip
    assert len(admins) == 5 + 2 + 59 + 2 + 59 + 2  # thresholds day 0 and 1, digests days 0, 4, 7, 11
