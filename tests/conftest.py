"""Fixtures shared by every test tier: settings, Chromium launch options, artifacts folder, and
the real Redis and PostgreSQL servers (started once per run, only when a test asks for them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engines import postgres_server, redis_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-results"
CHROMIUM = "/usr/bin/chromium"

# Chromium flags: only 127.0.0.1 resolves, so a request that would leave the
# machine fails loudly; fake media devices feed a real WAV file to getUserMedia.
CHROMIUM_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def chromium_launch_args(*, wav: Path | None = None, extra: list[str] | None = None) -> dict:
    """Playwright launch options for Debian's Chromium, optionally with a WAV as microphone."""
    args = list(CHROMIUM_ARGS)
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    return {"executable_path": CHROMIUM, "headless": True, "args": args + (extra or [])}


@pytest.fixture(scope="session")
def browser_type_launch_args():
    """pytest-playwright's hook: never its own browser download, always Debian's Chromium."""
    return chromium_launch_args()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def redis_engine():
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_engine():
    with postgres_server() as server:
        yield server
