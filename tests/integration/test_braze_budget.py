"""The Braze send budget: every worker paces its trigger requests to its part of the stack's share."""

from __future__ import annotations

import itertools

import pytest
from devstack.aws import load_template

from conftest import Upstream
from license_notifications.adapters.braze import BrazeClient, Recipient, SendPacer, UserAlias
from license_notifications.adapters.http import HttpClient, RetryPolicy
from license_notifications.config import load_settings
from license_notifications.errors import ConfigurationError


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_requests_are_spaced_by_the_interval_and_the_first_goes_at_once():
    clock = FakeTime()
    pacer = SendPacer(0.5, monotonic=clock.monotonic, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        pacer.wait_turn()
        starts.append(clock.now)
    assert starts[0] == 1000.0
    assert [round(b - a, 9) for a, b in itertools.pairwise(starts)] == [0.5] * 4


def test_time_already_spent_elsewhere_counts_towards_the_interval():
    clock = FakeTime()
    pacer = SendPacer(0.5, monotonic=clock.monotonic, sleep=clock.sleep)
    pacer.wait_turn()
    clock.now += 0.4  # the request itself, the ledger, the next page...
    assert pacer.wait_turn() == pytest.approx(0.1)
    clock.now += 2.0
    assert pacer.wait_turn() == 0  # no debt carried over from idle time
    assert clock.waits == [pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("per_hour", "workers", "interval"), [(100_000, 5, 0.18), (250_000, 1, 0.0144), (3600, 20, 20.0)]
)
def test_the_interval_splits_the_share_across_the_workers_that_may_run_at_once(per_hour, workers, interval, app_env):
    env = {**app_env, "BRAZE_SEND_REQUESTS_PER_HOUR": str(per_hour), "WORKER_MAX_CONCURRENCY": str(workers)}
    settings = load_settings(env)
    assert settings.braze_send_interval_seconds == pytest.approx(interval)
    assert workers * 3600 / settings.braze_send_interval_seconds == pytest.approx(per_hour)  # all at once: the share


def test_a_share_above_the_workspace_limit_is_refused(app_env):
    with pytest.raises(ConfigurationError, match="BRAZE_SEND_REQUESTS_PER_HOUR"):
        load_settings({**app_env, "BRAZE_SEND_REQUESTS_PER_HOUR": "300000"})


def test_the_worker_gets_the_share_and_the_event_sources_concurrency_from_the_template():
    template = load_template()
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["BRAZE_SEND_REQUESTS_PER_HOUR"] == {"Ref": "BrazeSendRequestsPerHour"}
    assert env["WORKER_MAX_CONCURRENCY"] == {"Ref": "WorkerMaximumConcurrency"}
    [source] = template["Resources"]["WorkerFunction"]["Properties"]["Events"].values()
    assert source["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaximumConcurrency"}
    assert template["Parameters"]["BrazeSendRequestsPerHour"]["MaxValue"] <= 250_000


def test_trigger_requests_reach_braze_no_faster_than_the_pace(upstream: Upstream):
    http = HttpClient(
        "braze", retry=RetryPolicy(max_attempts=1), default_headers={"Authorization": "Bearer braze-test-key"}
    )
    braze = BrazeClient(http, upstream.braze.url, pacer=SendPacer(0.2))
    recipient = Recipient(user_alias=UserAlias("a@example.com"), attributes={"email": "a@example.com"})
    for _ in range(4):
        braze.trigger_campaign("camp", [recipient])
    arrivals = [r.at for r in upstream.braze.requests if r.path.startswith("/campaigns/trigger/send")]
    assert len(arrivals) == 4
    # The pacer spaces the requests' starts 0.2 s apart; an arrival lags its start by the transit, which a busy
    # machine stretches by tens of milliseconds (the first request also opens the connection): each gap from
    # the second on is judged with 50 ms of slack, the three intervals together with 100 ms. Unpaced, the gaps
    # are a few milliseconds.
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(arrivals[1:]))
    assert arrivals[-1] - arrivals[0] >= 0.5
