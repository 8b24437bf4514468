"""Reconnect: the pipeline server killed mid-session → the page connected again, next turn answered.

The demo page in Chromium (MicroPython, a silent fake microphone) talks to `python -m server`'s
app on one port. Each round kills that server mid-session, alternately with SIGTERM (a graceful
restart: it drains, the socket closes with 1012) and SIGKILL (a crash: the socket just dies,
1006), and measures on the page's clock when its status turned `reconnecting` and `connected`
again, then types the next turn once the old process has ended and times its answer (the
agent's `response.data`); `answered` is connected + that turn. Every round's data must arrive
exactly once: lost and duplicated messages are counted over the whole run.

Two ways the server comes back on the same port:

- `warm` (default): as a zero-downtime restart does (systemd socket handover, a blue-green
  swap): the next server process has loaded its models and listens on the same port
  (SO_REUSEPORT) before the old one is killed (tests/support/restarts.py). What is measured is
  the client's own reconnect: noticing the drop, the backoff, authorizing again, the new socket.
- `cold`: the next process is only started after the old one ended, so the figure includes
  loading the speech models (tens of seconds on a loaded 2-core machine) and the backoff's
  4 s cap after it.

    ./dev bench reconnect [--rounds 10] [--mode warm|cold]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from common import chromium_launch_args, median, p95, print_table, save
from playwright.sync_api import sync_playwright

from tests.support.restarts import START_TIMEOUT_S, ColdRestarts, WarmRestarts
from tests.support.speech import silence, write_wav

# Status changes and data lines with the page's clock (Date.now(), the same clock as time.time()).
TIMELINE = """
window.__timeline = [];
new MutationObserver(() => {
  const pill = document.getElementById("status");
  if (pill && pill.dataset.status !== window.__lastStatus) {
    window.__lastStatus = pill.dataset.status;
    window.__timeline.push([pill.dataset.status, Date.now()]);
  }
  for (const line of document.querySelectorAll("#log li.data:not([data-seen])")) {
    line.dataset.seen = "1";
    window.__timeline.push(["data", Date.now(), line.querySelector(".text").textContent]);
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def timeline(page) -> list:
    return page.evaluate("window.__timeline")


def wait_for(page, predicate, timeout_s: float = START_TIMEOUT_S + 60):
    deadline = time.monotonic() + timeout_s
    while True:
        found = predicate(timeline(page))
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"not seen in time: {timeline(page)[-5:]}")
        page.wait_for_timeout(20)


def after(events, kind, since_ms, text=None):
    for event in events:
        if event[0] == kind and event[1] >= since_ms and (text is None or text in event[2]):
            return event[1]
    return None


def connected_for_good(events, since_ms):
    """When the page last turned `connected`, if that is its status now (a socket that reached
    the draining process as it stopped is closed with 1012 and the page comes back again)."""
    statuses = [e for e in events if e[0] != "data" and e[1] >= since_ms]
    if statuses and statuses[-1][0] == "connected":
        return statuses[-1][1]
    return None


def say(page, text: str) -> None:
    page.fill("#say-text", text)
    page.click("#say-send")


def one_round(page, servers, number: int, sig: int) -> dict:
    servers.prepare_next()  # outside the measured time
    said = f"round {number}"
    killed = servers.restart(sig, wait=False)
    killed_ms = killed * 1000
    dropped = wait_for(page, lambda e: after(e, "reconnecting", killed_ms))
    wait_for(page, lambda e: after(e, "connected", killed_ms))
    servers.reap()  # the old process has ended (SIGTERM: its shutdown takes seconds)
    back = wait_for(page, lambda e: connected_for_good(e, killed_ms))
    said_ms = time.time() * 1000
    say(page, said)
    answered = wait_for(page, lambda e: after(e, "data", said_ms, said))
    return {
        "signal": signal.Signals(sig).name,
        "drop_seen_ms": dropped - killed_ms,
        "connected_ms": back - killed_ms,
        # Connected, then the turn: not the bench's wait for the old process to exit.
        "answered_ms": back - killed_ms + answered - said_ms,
        "turn_ms": answered - said_ms,
    }


def run(rounds: int, mode: str) -> None:
    with tempfile.TemporaryDirectory(prefix="lc-reconnect-") as tmp:
        folder = Path(tmp)
        wav = write_wav(folder / "silence.wav", silence(2.0), 16000)
        servers = (WarmRestarts if mode == "warm" else ColdRestarts)(folder)
        results = []
        try:
            servers.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
                page = browser.new_page()
                page.add_init_script(TIMELINE)
                page.goto(servers.url + "/")
                page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
                page.click("#connect")
                page.wait_for_selector("#status[data-status=connected]", timeout=60_000)
                for number in range(rounds):
                    sig = signal.SIGTERM if number % 2 == 0 else signal.SIGKILL
                    results.append(one_round(page, servers, number, sig))
                    print(f"  round {number}: {results[-1]}", flush=True)
                lines = [json.loads(e[2])["heard"] for e in timeline(page) if e[0] == "data"]
                browser.close()
        finally:
            servers.stop()
    expected = [f"round {n}" for n in range(rounds)]
    lost = sum(1 for text in expected if text not in lines)
    duplicated = len(lines) - len(set(lines))
    load = os.getloadavg()
    rows = []
    for label, kinds in (("all", ("SIGTERM", "SIGKILL")), ("SIGTERM (1012)", ("SIGTERM",)),
                         ("SIGKILL (1006)", ("SIGKILL",))):  # fmt: skip
        chosen = [r for r in results if r["signal"] in kinds]
        for measure in ("drop_seen_ms", "connected_ms", "turn_ms", "answered_ms"):
            values = [r[measure] for r in chosen]
            rows.append([f"{label}: {measure[:-3].replace('_', ' ')}", median(values), p95(values)])
    print_table(
        f"Reconnect ({mode} restart on the same port), {len(results)} kills, ms from the kill",
        ["measure", "p50", "p95"],
        rows,
    )
    print(f"  data messages: {len(expected)} sent, {lost} lost, {duplicated} duplicated")
    print(f"  load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} cpus)")
    save(
        f"reconnect_{mode}",
        {"rounds": results, "lost": lost, "duplicated": duplicated, "load_average": load},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--mode", choices=("warm", "cold"), default="warm")
    args = parser.parse_args()
    run(args.rounds, args.mode)


if __name__ == "__main__":
    main()
