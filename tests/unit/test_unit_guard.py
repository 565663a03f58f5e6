"""The unit folder's guard (tests/unit/conftest.py): no network, no processes, even if the code swallows it."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import NOW
from unit.conftest import NotAUnitTestError


def _connect(method: str) -> None:
    with socket.socket() as sock:
        getattr(sock, method)(("127.0.0.1", 9))


@pytest.mark.parametrize(
    "attempt",
    [
        lambda: socket.create_connection(("127.0.0.1", 9)),
        lambda: _connect("connect"),
        lambda: _connect("connect_ex"),
        lambda: socket.getaddrinfo("example.com", 443),
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=False),
    ],
    ids=["create_connection", "connect", "connect_ex", "getaddrinfo", "subprocess"],
)
def test_every_way_out_is_refused_and_remembered(attempt, no_network_no_processes: list[str]):
    with pytest.raises(NotAUnitTestError, match="move the test to tests/integration"):
        attempt()
    assert len(no_network_no_processes) == 1  # remembered: the test fails even if the code caught the error
    no_network_no_processes.clear()  # this test meant it


def test_the_shared_conftest_is_still_the_one_imported_as_conftest():
    assert NOW.year == 2026  # tests/conftest.py, not this folder's conftest (which is unit.conftest)
