"""What the listener has heard of an agent turn: the audio sent, when each chunk is due to play.

The pipeline paces agent audio to real time plus a small lead (agent_turn.py), so it knows, for
every chunk it sent, when the browser will play it: a chunk starts when it is sent or when the
chunk before it ends, whichever is later (a player that ran dry starts again on arrival). From
that, `position()` estimates how far playback has got at any moment; the client's own reports
(`replay_finished` with `last_delta_id_played`, and this project's optional
`trigger.response.audio.interrupted` with `played_ms`, see docs/protocol.md) replace the
estimate when they come. Positions are byte offsets into the turn's whole audio (16 kHz PCM16),
so the words heard can be cut from the sentence spans the turn keeps.

Each chunk's due time is also where the echo guard (echo.py) places it as its reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from .audio import RATE

BYTES_PER_SECOND = RATE * 2


@dataclass(frozen=True)
class SentAudio:
    """One `response.audio` as it left the server."""

    turn_id: str  # the wire turn id it was sent under
    delta_id: str
    offset: int  # byte offset of its first sample within the agent turn's audio
    pcm: bytes  # 16 kHz PCM16 mono
    due: float  # time.monotonic() when the browser is expected to start playing it

    @property
    def end_offset(self) -> int:
        return self.offset + len(self.pcm)

    @property
    def duration(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND

    @property
    def ends(self) -> float:
        return self.due + self.duration


class PlaybackTracker:
    """The chunks of one agent turn sent so far, and how far the listener has heard them."""

    def __init__(self) -> None:
        self.chunks: list[SentAudio] = []
        self._play_end: float | None = None  # when the last chunk sent will have played

    def restart(self) -> None:
        """A new wire turn (a resumed answer): its first chunk starts when it arrives."""
        self._play_end = None

    def record(self, turn_id: str, delta_id: str, offset: int, pcm: bytes, now: float) -> SentAudio:
        due = now if self._play_end is None else max(now, self._play_end)
        chunk = SentAudio(turn_id, delta_id, offset, pcm, due)
        self.chunks.append(chunk)
        self._play_end = chunk.ends
        return chunk

    @property
    def sent_until(self) -> int:
        """Byte offset just past the last chunk sent (0 before any)."""
        return self.chunks[-1].end_offset if self.chunks else 0

    def ahead(self, now: float) -> float:
        """Seconds of audio sent but not yet due to have played."""
        return 0.0 if self._play_end is None else max(0.0, self._play_end - now)

    def position(self, now: float) -> int:
        """Estimated byte offset the listener has heard up to, at `now`."""
        if not self.chunks:
            return 0
        wire = [c for c in self.chunks if c.turn_id == self.chunks[-1].turn_id]
        heard = wire[0].offset  # nothing of the current wire turn due yet
        for chunk in reversed(wire):
            if chunk.due <= now:
                played = int((now - chunk.due) * BYTES_PER_SECOND)
                heard = chunk.offset + min(len(chunk.pcm), played)
                break
        return heard - heard % 2

    def position_reported(self, turn_id: str, delta_id: str | None, played_ms: int | None) -> int:
        """The offset the client says it reached; None-safe, clamped to audio actually sent.

        `played_ms` counts milliseconds of `turn_id`'s audio played in all; without it, the
        end of the chunk `delta_id` is taken (the client finished it).
        """
        of_turn = [c for c in self.chunks if c.turn_id == turn_id]
        if not of_turn:
            return self.sent_until
        if played_ms is not None:
            offset = of_turn[0].offset + int(max(0, played_ms) * BYTES_PER_SECOND / 1000)
        else:
            ends = [c.end_offset for c in of_turn if c.delta_id == delta_id]
            offset = ends[0] if delta_id is not None and ends else of_turn[-1].end_offset
        offset = min(offset, of_turn[-1].end_offset)
        return offset - offset % 2
