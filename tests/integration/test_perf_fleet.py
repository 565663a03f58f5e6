"""The benchmark's fleet with its ledger on DynamoDB Local (perf/fleet.py, benchmark section 4): a small run sends
every reminder once through the real ledger on the engine, its requests are counted, and the floor the engine sets
is the run's requests times the calibrated time of each. Timing is the benchmark's business, not asserted here."""

from __future__ import annotations

from collections import Counter

import pytest
from perf.fleet import Calibration, Group, LedgerEngine, StandIns, run_fleet

ENTERPRISES, LICENSES = 2, 120  # batches of 50, 50 and 20: three claim and three record transactions each


@pytest.fixture(scope="module")
def stand_ins():
    with StandIns([Group("fleet", ENTERPRISES, LICENSES)]) as children:
        yield children


def test_the_fleet_on_dynamodb_local_sends_each_reminder_once_and_counts_its_requests(
    stand_ins: StandIns, dynamodb_local, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # nothing but DynamoDB Local answers here
    with LedgerEngine(dynamodb_local) as engine:
        for name, value in engine.env.items():
            monkeypatch.setenv(name, value)
        stand_ins.set_latency(0.0)
        stand_ins.recipients()  # reset the count
        result = run_fleet(stand_ins, stand_ins.enterprises("fleet"), concurrency=2, run_id="fleet", engine=engine)
        assert result.failures == []
        assert result.reminders == result.expected == ENTERPRISES * LICENSES
        assert stand_ins.recipients() == {"total": ENTERPRISES * LICENSES, "distinct": ENTERPRISES * LICENSES,
                                          "duplicated": 0}  # fmt: skip
        # per enterprise: sent() reads 120 keys in 2 requests; 3 batches, each one claim and one record
        assert result.dynamodb_requests == Counter(
            {"TransactWriteItems": ENTERPRISES * 6, "BatchGetItem": ENTERPRISES * 2}
        )
        assert result.engine_cpu is not None
        assert result.engine_cpu > 0
        (table,) = engine.tables
        records = engine_records(dynamodb_local, table)
        assert Counter(record["state"]["S"] for record in records) == {"sent": ENTERPRISES * LICENSES}
    assert table not in dynamodb_local.client().list_tables()["TableNames"]  # dropped on close


def engine_records(dynamodb_local, table: str) -> list[dict]:
    pages = dynamodb_local.client().get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def test_the_calibration_measures_each_kind_of_request_and_the_floor_adds_them_up(
    dynamodb_local, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with LedgerEngine(dynamodb_local) as engine:
        for name, value in engine.env.items():
            monkeypatch.setenv(name, value)
        calibration = engine.calibrate(rounds=3)  # the service's ledger, on its own table of the engine
        (table,) = engine.tables
        records = engine_records(dynamodb_local, table)
    assert calibration.rounds == 3
    assert min(calibration.claim_seconds, calibration.record_seconds, calibration.read_seconds) > 0
    assert Counter(record["state"]["S"] for record in records) == {"sent": (3 + 5) * 50}  # every claim recorded
    assert calibration.transaction_seconds == (calibration.claim_seconds + calibration.record_seconds) / 2
    requests = Counter({"TransactWriteItems": 400, "BatchGetItem": 100})
    assert calibration.floor(requests) == pytest.approx(
        400 * calibration.transaction_seconds + 100 * calibration.read_seconds
    )
    fixed = Calibration(claim_seconds=0.04, record_seconds=0.06, read_seconds=0.01, client_cpu_seconds=0.002, rounds=1)
    assert fixed.floor(Counter({"TransactWriteItems": 10, "BatchGetItem": 4})) == pytest.approx(10 * 0.05 + 4 * 0.01)


class FailingClaims:
    """The ledger double, shared by the fleet, whose first ``times`` claims of ``enterprise`` fail (a read
    timeout, as DynamoDB Local's queue of transactions gave one in a benchmark run)."""

    def __init__(self, enterprise: str, times: int):
        from fakes import InMemoryLedger

        self.ledger, self.enterprise, self.left = InMemoryLedger(), enterprise, times

    def claim_many(self, requests):
        if self.left and any(r["enterprise_customer_uuid"] == self.enterprise for r in requests):
            self.left -= 1
            raise TimeoutError("Read timeout on endpoint URL")
        return self.ledger.claim_many(requests)

    def __getattr__(self, name):
        return getattr(self.ledger, name)


@pytest.mark.parametrize(("times", "failed"), [(2, 0), (99, 1)])
def test_a_failed_attempt_is_delivered_again_up_to_the_queues_max_receive_count(
    stand_ins: StandIns, times: int, failed: int
):
    enterprises = stand_ins.enterprises("fleet")
    ledger = FailingClaims(enterprises[0], times)
    stand_ins.set_latency(0.0)
    stand_ins.recipients()  # reset the count
    result = run_fleet(
        stand_ins, enterprises, concurrency=2, run_id=f"redelivery-{times}", ledger_factory=lambda: ledger
    )
    max_receive = 5  # template.yaml's WorkQueue RedrivePolicy
    assert len(result.redelivered) == min(times, max_receive - 1)
    assert all(entry.startswith(enterprises[0]) for entry in result.redelivered)
    assert len(result.failures) == failed
    assert result.expected == ENTERPRISES * LICENSES
    assert result.reminders == LICENSES * (ENTERPRISES - failed)
    assert stand_ins.recipients()["duplicated"] == 0
