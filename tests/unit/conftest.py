"""Unit tests only: no sockets, no subprocesses (and so no moto server, no stand-ins).

Every test under tests/unit runs with the network and process creation switched off: any attempt to
connect a socket (``socket.socket.connect`` / ``connect_ex``, ``socket.create_connection``), resolve a
host name (``socket.getaddrinfo``) or start a process (``subprocess.Popen``) raises ``NotAUnitTestError``
and fails the test, even when the code under test catches the error (the jobs turn most
exceptions into a failed enterprise, which would otherwise pass quietly). A test that needs any of these
belongs in tests/integration.

tests/unit is a package (``__init__.py``) so that this file is imported as ``unit.conftest`` and does not
take the module name ``conftest`` from tests/conftest.py: the tests everywhere import shared constants with
``from conftest import NOW, ...``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest


class NotAUnitTestError(RuntimeError):
    """A unit test tried to reach the network or start a process."""


_ATTEMPTS = pytest.StashKey[list[str]]()


@pytest.fixture(autouse=True)
def no_network_no_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Switches the network and process creation off for the test; returns the attempts it refused."""
    attempts = request.node.stash.setdefault(_ATTEMPTS, [])

    def refuse(what: str, *, method: bool):
        def refused(*args, **kwargs):
            shown = ", ".join(repr(a) for a in args[1 if method else 0 :][:2])
            attempts.append(f"{what}({shown})")
            raise NotAUnitTestError(f"unit tests may not {what}: {shown} (move the test to tests/integration)")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("connect a socket", method=True))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect a socket", method=True))
    monkeypatch.setattr(socket, "create_connection", refuse("open a connection", method=False))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("resolve a host name", method=False))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a process", method=True))
    return attempts


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test that tried, even if the code under test swallowed the refusal."""
    result = yield
    attempts = item.stash.get(_ATTEMPTS, [])
    if attempts:
        pytest.fail(f"a unit test tried to reach the network or start a process: {'; '.join(attempts)}")
    return result
