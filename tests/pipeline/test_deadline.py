"""The deadline executor runs what is due first, one job per worker, and drops cancelled jobs."""

from __future__ import annotations

import threading
import time

import pytest

from server.pipeline.deadline import DeadlineExecutor


def test_the_job_due_first_runs_first_whatever_the_order_it_came_in():
    executor = DeadlineExecutor(workers=1)
    gate = threading.Event()
    order = []
    blocker = executor.submit(0, gate.wait)  # holds the worker while the others queue
    time.sleep(0.05)
    futures = [executor.submit(due, order.append, name) for due, name in
               [(3.0, "third"), (1.0, "first"), (2.0, "second"), (1.0, "first again")]]  # fmt: skip
    gate.set()
    for future in [blocker, *futures]:
        future.result(2)
    assert order == ["first", "first again", "second", "third"]
    executor.shutdown()


def test_a_cancelled_job_is_skipped_and_errors_reach_the_caller():
    executor = DeadlineExecutor(workers=1)
    gate = threading.Event()
    ran = []
    executor.submit(0, gate.wait)
    dropped = executor.submit(1, ran.append, "dropped")
    failing = executor.submit(2, lambda: 1 / 0)
    assert dropped.cancel()
    gate.set()
    with pytest.raises(ZeroDivisionError):
        failing.result(2)
    assert ran == []
    executor.shutdown()


def test_workers_run_one_job_each_at_a_time():
    executor = DeadlineExecutor(workers=2)
    running, most = 0, 0
    lock = threading.Lock()

    def job():
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    for future in [executor.submit(0, job) for _ in range(6)]:
        future.result(2)
    assert most == 2
    executor.shutdown()


def test_shutdown_drops_queued_jobs_and_refuses_new_ones():
    executor = DeadlineExecutor(workers=1)
    gate = threading.Event()
    executor.submit(0, gate.wait)
    queued = executor.submit(1, lambda: "never")
    executor.shutdown()
    gate.set()
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(0, lambda: None)
