"""Blocking work on a few threads, earliest deadline first.

Piper's inference is the heavy work of the server's process, and the sessions' needs are not
equal: the first sentence of an answer is awaited by someone listening to silence, while the
third is needed only once the two before it have played. A plain thread pool serves jobs in
arrival order and runs as many at once as it has threads, so under load a new answer's first
sentence waits behind other answers' tails and shares the cores with them. Here each job says
when its result is due; the workers run one job each at a time, the one due first.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DeadlineExecutor:
    """`submit(due, fn, *args)` → a `concurrent.futures.Future`; cancel it to drop the job.

    A job that is running finishes (inference cannot be interrupted); one still queued is
    skipped once cancelled. Worker threads start on the first job and are daemons.
    """

    def __init__(self, workers: int = 1, name: str = "deadline"):
        self._workers = max(1, workers)
        self._name = name
        self._queue: list[tuple[float, int, Future, Callable, tuple]] = []
        self._order = itertools.count()  # equal deadlines: first come, first served
        self._wakeup = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, due: float, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._wakeup:
            if self._closed:
                raise RuntimeError(f"{self._name}: the executor is shut down")
            heapq.heappush(self._queue, (due, next(self._order), future, fn, args))
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._threads.append(thread)
                thread.start()
            self._wakeup.notify()
        return future

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if not self._queue:
                    return
                _, _, future, fn, args = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                result = fn(*args)
            except BaseException as error:  # handed to whoever awaits the future
                future.set_exception(error)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Drop queued jobs; running ones finish. Idempotent."""
        with self._wakeup:
            self._closed = True
            dropped, self._queue = self._queue, []
            self._wakeup.notify_all()
        for _, _, future, _, _ in dropped:
            future.cancel()
