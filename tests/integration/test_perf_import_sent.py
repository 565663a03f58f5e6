"""The benchmark's import-sent section (perf/benchmark.py, section 8) on a small export, on DynamoDB Local: its
counts hold (every record imported once, then found already there; one transaction per 100 records), so the
printed rate means what it says. Timing is the benchmark's business, not asserted here."""

from __future__ import annotations

import pytest
from perf import benchmark


def test_the_import_sent_rate_counts_what_it_imported(monkeypatch: pytest.MonkeyPatch, dynamodb_local):
    monkeypatch.setattr(benchmark, "apply_env", lambda env: [monkeypatch.setenv(k, v) for k, v in env.items()])
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # only DynamoDB Local answers here
    result = benchmark.import_sent_rate(250, dynamodb_local)
    assert result["errors"] == []
    assert (result["rows"], result["records"]) == (250, 275)  # every tenth row has a post-expiration date too
    assert (result["imported"], result["imported_on_second_import"], result["already_on_second_import"]) == (
        275,
        0,
        275,
    )
    assert result["dynamodb_requests"] == {"TransactWriteItems": 3}
    assert result["rows_per_second"] == pytest.approx(250 / (result["read_seconds"] + result["write_seconds"]))
