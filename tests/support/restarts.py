"""A real `python -m server` on one port that can be killed and started again on that port.

What a restart or a crash of a single node looks like to its clients: the process ends (SIGTERM:
it drains and closes sockets with 1012; SIGKILL: sockets just die, 1006), and a new process
comes up on the same port with the same DATA_DIR (the SQLite history, resume tokens and kept
`response.data` survive). Used by the browser reconnect test and bench/reconnect.py.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port, spawn_server

START_TIMEOUT_S = 240.0  # loading the speech models on a loaded 2-core machine


class RestartingServer:
    def __init__(self, folder: Path, **env: str):
        self.folder = folder
        self.port = free_port()
        self.env = {"DATA_DIR": str(folder), "TTS_ENGINE": "espeak", "LOG_LEVEL": "info", **env}
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start a process on the port and wait until it is healthy; when it became healthy
        (`time.monotonic()`)."""
        self.starts += 1
        log = self.folder / f"server-{self.starts}.log"
        self.process = spawn_server(self.port, log, **self.env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on port {self.port} did not become healthy")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        """Send `sig` and wait for the process to end (SIGTERM: after its drain)."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob("server-*.log")))

    def __enter__(self) -> RestartingServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.kill(signal.SIGKILL)
