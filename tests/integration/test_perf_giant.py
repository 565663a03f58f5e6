"""The benchmark's giant-enterprise simulation (perf/giant.py) on a small enterprise: its accounting holds (every
reminder counted once, continuations and deadline hand-offs seen), so the printed figures mean what they say.
Timing is the benchmark's business, not asserted here."""

from __future__ import annotations

import pytest
from perf.fleet import Group, StandIns
from perf.giant import simulate

from license_notifications.adapters import license_manager

LICENSES = 1_234


@pytest.fixture(scope="module")
def stand_ins():
    with StandIns([Group("giant", 1, LICENSES)]) as children:
        yield children


def test_every_reminder_goes_out_once_across_continuations_and_deadline_handoffs(
    stand_ins: StandIns, moto_stack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(license_manager, "LICENSES_PAGE_SIZE", 50)  # 25 pages: whole message + 6 continuations
    for name, value in moto_stack.env().items():
        monkeypatch.setenv(name, value)
    enterprise = stand_ins.enterprises("giant")[0]
    # A timeout 2 s past the worker's 56 s margin: 0.1 s of work per invocation at this scale, less than the
    # latencies alone of one message's four pages and batches (4 x (15 ms page + 2 x 5 ms Braze)), so every
    # invocation hands some of its work on, whatever the machine's speed.
    result = simulate(stand_ins, enterprise, LICENSES, moto_endpoint=moto_stack.endpoint_url, scale=0.05, timeout=58)
    assert result.errors == []
    assert (result.sent, result.distinct, result.duplicated) == (LICENSES, LICENSES, 0)
    assert result.continuation_messages >= 6
    assert result.deadline_handoffs > 0
    assert result.messages == 1 + result.continuation_messages
    assert (result.failed_deliveries, result.dead_letters, result.notifications) == (0, 0, 0)
    assert result.ok
    assert result.braze_requests["/campaigns/trigger/send"] >= LICENSES / 50
