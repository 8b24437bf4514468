"""A real pipeline server on one port, killed mid-session and back on the same port.

What a restart or a crash of a single node looks like to its clients: the process ends (SIGTERM:
it drains and closes sockets with 1012; SIGKILL: sockets just die, 1006), and a new process
serves the same port with the same DATA_DIR (the SQLite history, resume tokens and kept
`response.data` survive). Two ways back:

- `WarmRestarts` (a zero-downtime restart, as systemd's socket handover or a blue-green swap
  does it): the next process has loaded its models and listens on the same port (SO_REUSEPORT)
  before the current one is killed, so what a client meets is the kill alone, not how long the
  speech models take to load on a loaded machine;
- `ColdRestarts`: the next process starts only once the old one has ended.

Each process runs the app as `python -m server` does (the same draining server); a warm one is
`python -m tests.support.restarts PORT READY_FILE`. Used by the browser reconnect test and
bench/reconnect.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port, spawn_server

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300.0  # loading the speech models on a loaded 2-core machine
ENV = {"TTS_ENGINE": "espeak", "LOG_LEVEL": "info"}


def serve_on_shared_port(port: int, ready_file: Path) -> None:
    """The app on a port other processes may listen on too (SO_REUSEPORT). The socket joins the
    port's listeners only once the lifespan has loaded the models (uvicorn listens then), and
    `ready_file` is written when it does."""
    import uvicorn

    from server import logs
    from server.__main__ import draining_server
    from server.app import create_app
    from server.config import Settings

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.secrets)
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_config=None, access_log=False, ws_max_size=1024 * 1024)
    server = draining_server(app, config)

    def mark_ready() -> None:
        while not server.started:
            time.sleep(0.02)
        ready_file.write_text("ready")

    threading.Thread(target=mark_ready, daemon=True).start()
    server.run(sockets=[sock])


class WarmRestarts:
    """Processes sharing one port: `prepare_next()` readies a standby, `restart(sig)` kills the
    current one and the standby goes on serving."""

    def __init__(self, folder: Path, **env: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATA_DIR": str(folder), **ENV, **env}
        self.current: subprocess.Popen | None = None
        self.standby: subprocess.Popen | None = None
        self.count = 0

    def _spawn(self) -> subprocess.Popen:
        self.count += 1
        ready = self.folder / f"ready-{self.count}"
        with (self.folder / f"server-{self.count}.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.restarts", str(self.port), str(ready)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server {self.count} did not start: {self.logs()[-2000:]}")
            time.sleep(0.05)
        return process

    def start(self) -> None:
        self.current = self._spawn()

    def prepare_next(self) -> None:
        self.standby = self._spawn()

    def restart(self, sig: int, wait: bool = True) -> float:
        """Kill the current process and wait for it to end (SIGTERM: after its drain and
        shutdown), or with `wait=False` leave that to `reap()`; when the signal went (epoch s)."""
        killed = time.time()
        self.current.send_signal(sig)
        self.dying, self.current, self.standby = self.current, self.standby, None
        if wait:
            self.reap()
        return killed

    def reap(self) -> None:
        dying, self.dying = getattr(self, "dying", None), None
        if dying is not None:
            dying.wait(timeout=120)

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob("server-*.log")))

    def stop(self) -> None:
        for process in (self.current, self.standby):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    def __enter__(self) -> WarmRestarts:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ColdRestarts:
    """One `python -m server` at a time: killed, then started again on the same port."""

    def __init__(self, folder: Path, **env: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"DATA_DIR": str(folder), **ENV, **env}
        self.process: subprocess.Popen | None = None
        self.count = 0

    def start(self) -> None:
        self.count += 1
        log = self.folder / f"server-{self.count}.log"
        self.process = spawn_server(self.port, log, **self.env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on port {self.port} did not become healthy")
            time.sleep(0.05)

    def prepare_next(self) -> None:
        pass

    def restart(self, sig: int, wait: bool = True) -> float:
        """Kill the process, wait for it to end, start the next; when the signal went."""
        killed = time.time()
        self.process.send_signal(sig)
        self.process.wait(timeout=120)
        self.start()
        return killed

    def reap(self) -> None:
        pass

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob("server-*.log")))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ColdRestarts:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    serve_on_shared_port(int(sys.argv[1]), Path(sys.argv[2]))
