"""The DynamoDB Local launcher (devstack/dynamodb_local.py): it starts AWS's engine on a free port, the engine
answers DynamoDB's API, and stopping it ends the java process it started."""

from __future__ import annotations

import os

import pytest
from devstack.aws import create_tables_from_template
from devstack.dynamodb_local import DynamoDBLocal, DynamoDBLocalUnavailableError


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_answers_and_stops_by_its_pid():
    engine = DynamoDBLocal().start()
    pid = engine.pid
    try:
        assert pid is not None
        assert running(pid)
        assert engine.endpoint_url.startswith("http://127.0.0.1:")
        assert engine.env() == {"AWS_ENDPOINT_URL_DYNAMODB": engine.endpoint_url}
        tables = create_tables_from_template(engine.endpoint_url, suffix="-launcher")
        assert engine.client().describe_table(TableName=tables["LedgerTable"])["Table"]["TableStatus"] == "ACTIVE"
    finally:
        engine.stop()
    assert engine.pid is None
    assert not running(pid)  # waited for: no zombie, no leaked java


def test_a_missing_install_says_how_to_get_one(tmp_path):
    with pytest.raises(DynamoDBLocalUnavailableError, match="make dynamodb-local"):
        DynamoDBLocal(install=tmp_path).start()
