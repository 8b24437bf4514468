"""Real Redis and PostgreSQL servers for tests: started on free ports in temporary folders.

Debian's `redis-server` and `postgresql` (installed by `./dev` setup when missing) run as child
processes of the test run, each in a folder of its own that is deleted afterwards; nothing is
installed as a service and nothing outside the folder is touched. Readiness is awaited by
asking the server (a PING, `pg_isready`), never by sleeping.

PostgreSQL refuses to run as root, and CI runs as root: there the server runs as the
unprivileged `nobody` user in a folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
UNPRIVILEGED_USER = "nobody"


class EngineMissing(RuntimeError):
    """The engine is not installed; `./dev setup` installs it."""


def wait_until(ready, process: subprocess.Popen, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {process.returncode} while starting\n{detail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {START_TIMEOUT_S:g} s")
        time.sleep(0.02)  # polling interval of the readiness probe, not a stand-in for it


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, no persistence. `stop()` and `start()` again keep
    the port, so a test can take Redis away and bring it back."""

    def __init__(self, folder: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            raise EngineMissing("redis-server is not installed: run ./dev setup")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", "--appendonly", "no", "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.answers, self.process, "redis-server", log)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)


class PostgresServer:
    """A PostgreSQL cluster made by `initdb` in a temporary folder, served on 127.0.0.1:`port`
    with trust authentication (loopback only) and durability off (tests need speed, not
    crash safety)."""

    def __init__(self, folder: Path):
        if not POSTGRES_BIN:
            raise EngineMissing("PostgreSQL is not installed: run ./dev setup")
        self.bin = POSTGRES_BIN[-1]
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.user: dict = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(folder, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / tool), *args], cwd=self.folder, capture_output=True, text=True,
            check=True, timeout=START_TIMEOUT_S, **self.user,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        log = self.folder / "postgres.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=out, stderr=out, **self.user,
            )  # fmt: skip
        wait_until(self.answers, self.process, "postgres", log)
        return self

    def answers(self) -> bool:
        probe = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        return probe.returncode == 0

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT)  # "fast" shutdown: disconnects clients at once


@contextlib.contextmanager
def engine_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder outside pytest's (which is private to root) that `nobody` can own."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    with engine_folder("lc-redis-") as folder:
        server = RedisServer(folder).start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    with engine_folder("lc-pg-") as folder:
        server = PostgresServer(folder).start()
        try:
            yield server
        finally:
            server.stop()
