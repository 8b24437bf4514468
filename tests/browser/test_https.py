"""Works where people are: the server over HTTPS (`--ssl-certfile`/`--ssl-keyfile`, a
self-signed certificate made with openssl as README says), and the page opened over plain HTTP
under a LAN-style host name, where the browser gives no microphone: a clear error in words.
"""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.conftest import CHROMIUM_ARGS, chromium_launch_args
from tests.support.servers import free_port, spawn_server

pytestmark = pytest.mark.browser


def make_certificate(folder):
    """README's command: a self-signed certificate for 127.0.0.1 and localhost."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def wait_until_up(url: str, log_file, process, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, log_file.read_text()
        try:
            if httpx.get(url, verify=False, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log_file.read_text()
        time.sleep(0.2)  # polling a starting server: the condition is its answer


@pytest.fixture
def server(tmp_path):
    """`python -m server` over HTTPS (the certificate from the environment, as SSL_CERTFILE /
    SSL_KEYFILE) and a second one over plain HTTP; yields (https base, http port)."""
    cert, key = make_certificate(tmp_path)
    port, plain_port = free_port(), free_port()
    env = {"DATA_DIR": str(tmp_path), "TTS_ENGINE": "espeak", "ALLOWED_HOSTS": "voice.test"}
    secure = spawn_server(port, tmp_path / "https.log", SSL_CERTFILE=str(cert),
                          SSL_KEYFILE=str(key), **env)  # fmt: skip
    plain = spawn_server(plain_port, tmp_path / "http.log", **env)
    try:
        wait_until_up(f"https://127.0.0.1:{port}/health", tmp_path / "https.log", secure)
        wait_until_up(f"http://127.0.0.1:{plain_port}/health", tmp_path / "http.log", plain)
        yield f"https://127.0.0.1:{port}", plain_port
    finally:  # shutting down is not what is tested here: a slow drain is cut short
        for process in (secure, plain):
            process.terminate()
        for process in (secure, plain):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_the_page_is_served_over_https_and_connects_over_wss(playwright, server):
    base, _plain_port = server
    browser = playwright.chromium.launch(
        **chromium_launch_args(extra=["--ignore-certificate-errors"])
    )
    try:
        page = browser.new_page()
        sockets = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(base + "/")
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
        assert page.evaluate("isSecureContext") is True
        page.click("#connect")
        page.wait_for_selector("#status[data-status=connected]", timeout=60_000)
        assert sockets and all(url.startswith("wss://127.0.0.1:") for url in sockets), sockets
    finally:
        browser.close()


def test_a_page_over_plain_http_from_another_host_says_why_and_how_to_fix_it(playwright, server):
    _base, plain_port = server
    # voice.test stands for the server's LAN address as a phone would reach it.
    rules = "--host-resolver-rules=MAP voice.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--host-resolver-rules")] + [rules]
    launch = chromium_launch_args()
    launch["args"] = args
    browser = playwright.chromium.launch(**launch)
    try:
        page = browser.new_page()
        page.goto(f"http://voice.test:{plain_port}/")
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
        assert page.evaluate("isSecureContext") is False
        page.click("#connect")
        page.wait_for_selector("#status[data-status=error]", timeout=30_000)
        banner = page.inner_text("#error")
        for words in ("not a secure context", "HTTPS", "--ssl-certfile", "localhost"):
            assert words in banner, banner
    finally:
        browser.close()
