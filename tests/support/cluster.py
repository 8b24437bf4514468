"""Several real pipeline nodes (`python -m server` processes) behind a real HAProxy.

Each node is its own process on a free port, configured like a production node: session keys
in the given Redis, history in the given PostgreSQL, one shared webhook secret, and
`PUBLIC_URL` set to the balancer's address, so every authorize answer sends the socket through
the balancer. HAProxy
balances requests round-robin (so consecutive requests land on different nodes), checks each
node's `/health`, tunnels WebSockets, and names the node that answered in `X-Served-By`.
Everything waits for a condition (a node's `/health`, HAProxy's own view of the nodes), never
for a guessed time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.engines import EngineMissing, stop_process, wait_until
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE_START_TIMEOUT_S = 120.0  # loading the speech models on a busy 2-core machine
WEBHOOK_SECRET = "multinode-shared-secret"

HAPROXY_CONFIG = """\
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    retries 2
    option redispatch  # a request sent to a node that just died is retried on another

frontend voice
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
{servers}

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class Node:
    """One `python -m server` process."""

    def __init__(self, name: str, folder: Path, env: dict[str, str]):
        self.name = name
        self.port = free_port()
        self.folder = folder
        self.log = folder / f"{name}.log"
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> Node:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server"], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        return self

    def wait_healthy(self) -> Node:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} was not healthy in {NODE_START_TIMEOUT_S} s")
            time.sleep(0.05)  # polling interval of the health probe
        return self

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """As a crash would: no goodbye to anyone."""
        stop_process(self.process, signal.SIGKILL)

    def terminate(self) -> None:
        """As a deploy or a scale-in would: SIGTERM, and the node drains (returns at once)."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        stop_process(self.process)


class Balancer:
    """HAProxy in front of `nodes`."""

    def __init__(self, folder: Path, nodes: list[Node], port: int):
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise EngineMissing("haproxy is not installed: run ./dev setup")
        self.binary = binary
        self.nodes = nodes
        self.port, self.stats_port = port, free_port()
        servers = "\n".join(
            f"    server {n.name} 127.0.0.1:{n.port} check inter 300 fall 2 rise 1" for n in nodes
        )
        self.config = folder / "haproxy.cfg"
        self.config.write_text(
            HAPROXY_CONFIG.format(port=self.port, stats_port=self.stats_port, servers=servers)
        )
        self.log = folder / "haproxy.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Balancer:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        self.wait_for_states({n.name: "UP" for n in self.nodes})
        return self

    def states(self) -> dict[str, str]:
        """HAProxy's view of each node: UP, DOWN, ... (its stats page)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text
        except httpx.HTTPError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            r["svname"]: r["status"].split()[0]
            for r in rows
            if r["pxname"] == "nodes" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_for_states(self, wanted: dict[str, str]) -> None:
        def reached() -> bool:
            return self.states() == wanted

        wait_until(reached, self.process, f"haproxy seeing {wanted}", self.log)

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def cluster(
    folder: Path,
    *,
    redis_url: str,
    database_url: str,
    nodes: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[Balancer, list[Node]]]:
    """`nodes` nodes behind a balancer; `env` adds settings to every node's (and may choose
    another voice or log level than the tests' light defaults)."""
    balancer_port = free_port()
    env = {
        "TTS_ENGINE": "espeak",
        "LOG_LEVEL": "warning",
        **(env or {}),
        "PUBLIC_URL": f"http://127.0.0.1:{balancer_port}",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "AGENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    started: list[Node] = []
    balancer = None
    try:
        for n in range(nodes):
            name = "node" + "abcdefgh"[n]
            started.append(Node(name, folder, {**env, "DATA_DIR": str(folder / name)}).spawn())
        for node in started:  # they load their models side by side
            node.wait_healthy()
        balancer = Balancer(folder, started, balancer_port).start()
        yield balancer, started
    finally:
        if balancer is not None:
            balancer.stop()
        for node in started:
            node.stop()
