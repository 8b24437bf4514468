"""Run a real ASGI app on a free loopback port, in a background thread, for the length of a test.

Tests talk to it over real sockets (HTTP, SSE, WebSocket), so what they exercise is what a
browser or Layercode's cloud would meet, not an in-process shortcut.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(
    app,
    *,
    port: int | None = None,
    ws_ping: bool = False,
    lifespan: str = "on",
    start_timeout_s: float | None = None,
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 and yield its base URL (http://127.0.0.1:PORT), once it has
    started (its lifespan ran: the pipeline's models are loaded).

    `lifespan="off"` for bare ASGI apps without one (StaticFiles). By default the wait has no
    limit of its own: loading the models takes seconds on a quiet machine and over 45 s on a
    loaded one (two cores, load 15), so a fixed limit fails tests for the machine's load; a
    server that fails to start ends its thread (an error at once), and a hang is caught by the
    test's own timeout (pytest-timeout). `start_timeout_s` bounds the wait (benches).
    """
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        ws_ping_interval=20.0 if ws_ping else None,
        ws_max_size=1024 * 1024,  # as `python -m server` runs it
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"test-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + (start_timeout_s or 0.0)
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the test server on port {port} failed to start")
        if start_timeout_s is not None and time.monotonic() > deadline:
            raise TimeoutError(
                f"the test server on port {port} did not start in {start_timeout_s:g} s"
            )
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def spawn_server(port: int, log_file: Path, **env: str) -> subprocess.Popen:
    """`python -m server --port PORT` as users run it, with `env` added to this environment and
    its output written to `log_file`; the caller stops it."""
    root = Path(__file__).resolve().parents[2]
    with log_file.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port)],
            cwd=root,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
