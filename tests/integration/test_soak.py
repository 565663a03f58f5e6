"""The fault-injection soak (perf/soak.py), short and seeded, end to end in a subprocess: its targets hold.

One run (module fixture, about 30-40 s): 4 simulated hours with every fault kind (Braze 5xx and 429s, a send
accepted but answered late, refused recipients, malformed license records, redirects to another host,
DynamoDB throttling, duplicate deliveries, workers SIGKILLed at random and right after Braze accepted their
send), then two clean runs. Each test reads one figure of ``soak.json``.

"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = 1

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("soak")
    paths = [ROOT / "layers" / "shared", ROOT, ROOT / "functions" / "dispatcher", ROOT / "functions" / "worker"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "perf.soak", "--short", "--seed", str(SEED), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    report = out / "soak.json"
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(report.read_text())
    return {"figures": figures, "stdout": proc.stdout, "stderr": proc.stderr, "returncode": proc.returncode}


def target(soak: dict[str, Any], prefix: str) -> dict[str, Any]:
    (found,) = [t for t in soak["figures"]["targets"] if t["target"].startswith(prefix)]
    return found


def test_the_soak_reports_every_figure_and_its_exit_status_follows_the_targets(soak: dict[str, Any]) -> None:
    figures, out = soak["figures"], soak["stdout"]
    assert soak["returncode"] == (0 if all(t["pass"] for t in figures["targets"]) else 1), soak["stderr"][-2000:]
    for line in ("eligible (oracle", "sent (distinct licenses)", "missed", "ineligible sent",
                 "duplicates, kill between Braze accepting and the ledger record", "duplicates, other",
                 "rejected recipients", "kills (SIGKILL)", "faults (armed / fired)", "wall time", "== Targets"):  # fmt: skip
        assert line in out
    assert len(figures["targets"]) == 6
    assert figures["settings"]["short"]
    assert figures["settings"]["seed"] == SEED
    assert figures["eligible"] > 50
    assert figures["standin_errors"] == []
    assert figures["no_send_in_flight_at_the_end"]
    # The refused recipients are listed, never counted as missed, and never sent (Braze refuses them).
    assert {r["refused_in"] for r in figures["rejected_recipients"]} == {"trigger", "alias"}
    assert figures["rejected_recipients_sent"] == []


def test_every_fault_kind_fired(soak: dict[str, Any]) -> None:
    unfired = {kind: counts for kind, counts in soak["figures"]["faults"].items() if counts["fired"] < 1}
    assert not unfired
    assert soak["figures"]["kills_by_reason"].keys() == {"kill_random", "kill_after_braze_accepted"}
    assert target(soak, "every fault kind fired")["pass"]


def test_nothing_ineligible_is_sent(soak: dict[str, Any]) -> None:
    assert soak["figures"]["ineligible_sent_licenses"] == []
    assert target(soak, "0 ineligible sent")["pass"]


def test_no_duplicate_but_those_a_kill_between_braze_and_the_ledger_explains(soak: dict[str, Any]) -> None:
    duplicates = soak["figures"]["duplicates"]
    assert duplicates["other_recipients"] == 0, [d for d in duplicates["details"] if d["other"]][:3]
    assert target(soak, '0 "other" duplicates')["pass"]


def test_kill_window_duplicates_are_at_most_one_braze_request_per_kill(soak: dict[str, Any]) -> None:
    figures = soak["figures"]
    assert figures["duplicates"]["kill_window_requests"] <= figures["kills"]
    assert target(soak, "kill-window duplicates")["pass"]


def test_no_eligible_license_is_missed_apart_from_rejected_recipients(soak: dict[str, Any]) -> None:
    figures = soak["figures"]
    assert figures["missed"] == 0, figures["missed_by_reason"]
    assert target(soak, "0 missed")["pass"]


def test_a_redirect_to_another_host_is_not_followed(soak: dict[str, Any]) -> None:
    figures = soak["figures"]
    assert figures["faults"]["braze_redirect"]["fired"] >= 1
    assert figures["foreign_host_requests"] == []
    assert target(soak, "the foreign host")["pass"]
