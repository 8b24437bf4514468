"""One session's conversation history, kept going while the history store is unreachable.

The history store (PostgreSQL, or SQLite) may go away in the middle of a conversation: the
database restarts, the network to it drops. A failed write must not end the session (a voice
call cut because a database blinked), and it must not be lost silently either. So each
session reads and writes its turns through this object:

- A write that fails is kept, in order, and written again before the next one: the first call
  that reaches the store after the outage stores everything kept, in the order it was said.
  Kept writes are bounded by the store's own retention (`max_turns`, `HISTORY_MAX_TURNS`: a
  conversation keeps no more turns than that anyway); beyond it the oldest is dropped and
  counted. Repeated records of the same answer (its heard checkpoints) replace each other.
- A read that fails (the agent's `history` on every `message`) answers this session's own
  view instead: the last history it read, with every write since — stored or kept — applied.
- After a failure the store is left alone for `retry_s` (`HISTORY_RETRY_SECONDS`): reads
  answer from the view and writes are kept at once, without a call, so a store whose
  connections hang (asyncpg waits 2 s to connect, 5 s per command) costs a turn at most one
  failed attempt per interval. The first read or write after the interval tries again, kept
  writes first; while writes are kept, a timer tries too once each interval is over, so a
  session that stays silent after the store is back stores them (and tells its client) then,
  not at its next turn.
- The client is told once per outage: an `error` with code `history_unavailable`
  (docs/protocol.md), and when the store is back and the kept writes are stored, a `notice`
  with code `history_stored` that resolves it (the demo page takes its error down); the log
  says how many writes were kept and lost.
- When the session ends, the timer stops and kept writes are tried once more (bounded by
  `FINAL_WRITE_S`); what still cannot be written is lost and logged (docs/scaling.md, "When
  a store fails").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from layercode_client import protocol as p

from .store import Turn
from .stores import HistoryStore, StoreUnavailable, UnknownSession

FINAL_WRITE_S = 5.0  # the session ended: how long its kept writes may still take
RETRY_S = 5.0  # after a failure, the store is not asked again for this long (default)
VIEW_TURNS = 50  # the turns a read returns (`HistoryStore.history`'s default limit)
ERROR_CODE = "history_unavailable"
NOTICE_CODE = "history_stored"


@dataclass
class _Write:
    """One turn to store: `append` adds it; `record` replaces the turn with its id (an answer
    as far as it was heard, then as finally heard)."""

    kind: str  # "append" or "record"
    role: str
    text: str
    turn_id: str | None
    interrupted: bool

    async def to(self, store: HistoryStore, session_id: str) -> None:
        write = store.append if self.kind == "append" else store.record
        await write(session_id, self.role, self.text, self.turn_id, interrupted=self.interrupted)

    def apply(self, view: list[Turn]) -> None:
        """The same change, on a list of turns (as the store would make it)."""
        turn = Turn(self.role, self.text, self.turn_id, self.interrupted)
        if self.kind == "record":
            for n, old in enumerate(view):
                if old.turn_id == self.turn_id and old.role == self.role:
                    if self.text:
                        view[n] = turn
                    else:
                        del view[n]
                    return
            if not self.text:
                return
        view.append(turn)
        del view[:-VIEW_TURNS]

    def replaces(self, other: _Write) -> bool:
        return (
            self.kind == other.kind == "record"
            and self.turn_id == other.turn_id
            and self.role == other.role
        )


class SessionHistory:
    """The turns of one session, through `store`; `report` sends the client a message (the
    outage's `error`, then its `notice`)."""

    def __init__(
        self,
        store: HistoryStore,
        session_id: str,
        report: Callable[[p.Message], object],
        log: logging.Logger | logging.LoggerAdapter,
        *,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.session_id = session_id
        self.report = report
        self.log = log
        self.kept: list[_Write] = []  # failed writes, oldest first, to store before any other
        self.dropped = 0  # kept writes dropped beyond the store's `max_turns` in this outage
        self._view: list[Turn] = []  # the last history read, with every write since applied
        self._down: StoreUnavailable | None = None  # the outage the client was told about
        self.retry_s = retry_s
        self.clock = clock
        self._retry_at = 0.0  # while down, the store is not called before this (`clock`)
        self._retry_task: asyncio.Task | None = None  # stores the kept writes, turn or no turn
        self._lock = asyncio.Lock()  # writes reach the store in the order they were made

    async def turns(self) -> list[Turn]:
        """The conversation's last turns: the store's, or this session's view while the store
        cannot be read."""
        async with self._lock:
            if self._resting():
                return list(self._view)
            try:
                await self._write_kept()
                turns = await self.store.history(self.session_id)
            except StoreUnavailable as error:
                self._unavailable(error)
                return list(self._view)
            except UnknownSession:  # deleted meanwhile (its socket is being closed): no turns
                return []
            self._view = list(turns)
            return turns

    async def append(
        self, role: str, text: str, turn_id: str | None, *, interrupted: bool = False
    ) -> None:
        await self._write(_Write("append", role, text, turn_id, interrupted))

    async def record(self, role: str, text: str, turn_id: str, *, interrupted: bool) -> None:
        await self._write(_Write("record", role, text, turn_id, interrupted))

    async def close(self) -> None:
        """The session ended: store what is kept if the store is back; log what is lost.

        The timer stops last: a timer waiting for the lock runs only after this returns, so it
        is stopped between writes (unless the final write timed out behind it)."""
        try:
            if self.kept:
                async with asyncio.timeout(FINAL_WRITE_S), self._lock:
                    await self._write_kept()
        except (StoreUnavailable, TimeoutError) as error:
            self.log.error("history: %d turns of this session were never stored (%s)",
                           len(self.kept) + self.dropped, str(error) or "timed out")  # fmt: skip
        finally:
            self._stop_retrying()

    async def _write(self, write: _Write) -> None:
        async with self._lock:  # after a read in progress has replaced the view
            write.apply(self._view)
            self._keep(write)
            if self._resting():
                return
            try:
                await self._write_kept()
            except StoreUnavailable as error:
                self._unavailable(error)

    def _keep(self, write: _Write) -> None:
        for n, kept in enumerate(self.kept):
            if write.replaces(kept):
                self.kept[n] = write
                return
        self.kept.append(write)
        if len(self.kept) > self.store.max_turns:
            del self.kept[0]
            self.dropped += 1

    async def _write_kept(self) -> None:
        """Store the kept writes, oldest first (`StoreUnavailable` leaves the rest kept)."""
        stored = 0
        while self.kept:
            try:
                await self.kept[0].to(self.store, self.session_id)
            except UnknownSession:  # the conversation was deleted meanwhile: nothing to keep
                self.log.info("history: the conversation was deleted; %d writes dropped",
                              len(self.kept))  # fmt: skip
                self.kept.clear()
                raise
            del self.kept[0]
            stored += 1
        if self._down is not None:
            self.log.warning("history store back: %d kept writes stored, %d lost",
                             stored, self.dropped)  # fmt: skip
            lost = (
                f" (but the {self.dropped} oldest turns could not be kept)" if self.dropped else ""
            )
            self.report(
                p.Notice(
                    code=NOTICE_CODE,
                    message=f"the conversation is saved again, with what was said meanwhile{lost}",
                    resolves=ERROR_CODE,
                )
            )
            self._down, self.dropped = None, 0

    def _resting(self) -> bool:
        """The store failed less than `retry_s` ago: not to be asked again yet."""
        return self._down is not None and self.clock() < self._retry_at

    def _retry_later(self) -> None:
        """Writes are kept: try the store again once the interval is over, whether or not the
        session makes another call (not with `retry_s` 0, where every call tries anyway)."""
        if self.retry_s <= 0 or not self.kept:
            return
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(
                self._retry_while_kept(), name="history-retry"
            )

    async def _retry_while_kept(self) -> None:
        """The timer: when the interval is over, store the kept writes — unless a call stored
        them meanwhile (nothing is kept: the timer ends) or failed since (the interval moved on:
        the timer waits for its end)."""
        while self.kept:
            await asyncio.sleep(max(0.0, self._retry_at - self.clock()))
            async with self._lock:
                if not self.kept or self._resting():
                    continue
                try:
                    await self._write_kept()
                except StoreUnavailable as error:
                    self._unavailable(error)
                except UnknownSession:  # deleted meanwhile: nothing is kept any more
                    return

    def _stop_retrying(self) -> None:
        task, self._retry_task = self._retry_task, None
        if task is not None:
            task.cancel()

    def _unavailable(self, error: StoreUnavailable) -> None:
        self._retry_at = self.clock() + self.retry_s
        self._retry_later()
        if self._down is not None:
            return
        self._down = error
        self.log.warning("history not stored, kept for later: %s", error)
        self.report(
            p.ErrorMessage(
                code=ERROR_CODE,
                message=f"the conversation cannot be saved right now ({error.message}); it goes "
                "on, and what is said is saved when the store is back",
            )
        )
