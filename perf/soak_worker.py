"""One worker "container" of the soak (perf/soak.py), in a process of its own so it can be SIGKILLed.

It does what Lambda's SQS event source mapping does for one concurrent worker: receive up to the batch size
from the work queue (moto), invoke ``functions/worker/worker.py``'s ``lambda_handler`` with an ``aws:sqs``
event and a fake context, delete what succeeded and leave the rest to come back after the visibility timeout
(``devstack.lambda_local.LocalEventSourceMapping``). It runs until SIGTERM.

Environment: the app's settings (as the soak sets them), plus
``SOAK_WORKER_ID`` (this incarnation's name), ``SOAK_STATE_DIR`` (where it flags ``<id>.ready`` once it
polls and ``<id>.busy`` while an invocation runs), ``SOAK_BATCH_SIZE`` and ``SOAK_POLL_SECONDS``. With
``SOAK_ENV_FILE`` the settings that are only known once the local stack is up (endpoints, queue and table
names) are read from that JSON file, waited for after the imports: the first workers start (and import)
while the soak is still setting the stack up. Nothing the handler reads at import time comes from it.

Instrumentation, not behaviour: every HTTP request the app makes carries ``X-Soak-Worker: <id>``, so the
stand-ins can tell which incarnation sent a Braze trigger (the soak's evidence for a duplicate caused by a
kill between Braze accepting a send and the ledger recording it). Nothing the app reads changes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

WORKER_HEADER = "X-Soak-Worker"


def tag_http_requests(worker_id: str) -> None:
    """Every ``requests.Session`` created from now on sends ``X-Soak-Worker: <worker_id>``."""
    import requests

    original = requests.Session.__init__

    def init(self: requests.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.headers[WORKER_HEADER] = worker_id

    requests.Session.__init__ = init  # type: ignore[method-assign]


def main() -> int:
    worker_id = os.environ["SOAK_WORKER_ID"]
    state_dir = Path(os.environ["SOAK_STATE_DIR"])
    batch_size = int(os.environ.get("SOAK_BATCH_SIZE", "5"))
    poll = float(os.environ.get("SOAK_POLL_SECONDS", "0.1"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tag_http_requests(worker_id)

    import boto3
    from devstack.lambda_local import LocalEventSourceMapping, load_handler

    worker = load_handler("worker")
    busy = state_dir / f"{worker_id}.busy"
    env_file = os.environ.get("SOAK_ENV_FILE")
    if env_file:
        while not Path(env_file).exists():
            if stop.wait(0.05):
                return 0
        os.environ.update(json.loads(Path(env_file).read_text(encoding="utf-8")))

    def handler(event: dict[str, Any], context: Any) -> Any:
        busy.touch()
        try:
            return worker.lambda_handler(event, context)
        finally:
            busy.unlink(missing_ok=True)

    sqs = boto3.client("sqs")
    esm = LocalEventSourceMapping(sqs, os.environ["WORK_QUEUE_URL"], handler, batch_size=batch_size)
    (state_dir / f"{worker_id}.ready").touch()
    while not stop.is_set():
        try:
            report = esm.drain(max_invocations=1)
        except Exception as exc:  # moto unreachable for a moment: poll again, as the event source mapping does
            print(f"soak worker {worker_id}: poll failed: {exc!r}", file=sys.stderr, flush=True)
            stop.wait(poll)
            continue
        if report.invocations == 0:
            stop.wait(poll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
