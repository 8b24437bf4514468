"""Per-turn latency as the user lives it, measured in the browser (`on_metrics`).

Voice-to-voice latency is the time from the end of the user's speech *as the client heard it*
to the first sample of the agent's answer *actually played* (the player worklet reports the
render quantum that carries it). The end of the user's speech is, in order of preference:

- `"microphone"`: the last microphone chunk whose level reached `SPEECH_LEVEL`, when the user's
  turn ended (the server's `turn.end` for the user, or the push-to-talk button released) within
  `HEARD_WITHIN_MS` of it: the server's end-of-turn detection delay is then part of the figure,
  as the user feels it;
- `"turn.end"` / `"push_to_talk"`: the moment the turn ended, when the microphone heard nothing
  (muted, no microphone, or a level below the threshold);
- `"text"`: the moment typed text was sent.

The microphone's chunk time is when its chunk reached Python, at or after the chunk's last
sample: speech that ended inside the chunk ended earlier, so the figure may read low by up to
one chunk (`chunk_ms`). The player's time is when its report reached Python (a few ms after the
sample left the worklet); the output device's own latency (`AudioContext.outputLatency`) is not
included either.

One report per agent turn, once its first sample played (or it ended unplayed) and its
`response.end` arrived, with the server's `timings` from that `response.end` when present:
`{"turn_id", "voice_to_voice_ms", "user_speech_end", "timings"}`. `voice_to_voice_ms` is None
for a turn no user speech preceded (a welcome message) or that never played.
"""

SPEECH_LEVEL = 0.02  # the recorder's level (RMS × 4): 0.02 is about -46 dBFS
HEARD_WITHIN_MS = 5000  # a voiced chunk older than this when the turn ended is not its end
KEPT_TURNS = 8  # agent turns followed at once (older ones are dropped unreported)


class TurnMetrics:
    """Follows user speech ends and agent turns; `report(metric)` once per agent turn."""

    def __init__(self, report):
        self._report = report
        self._voiced_at = None  # time of the newest microphone chunk at or above SPEECH_LEVEL
        self._speech_end = None  # (time, source) of the user's speech end not yet answered
        self._turns = {}  # agent turn id → its state (dict)
        self._order = []  # agent turn ids, oldest first

    def reset(self):
        self._voiced_at = None
        self._speech_end = None
        self._turns = {}
        self._order = []

    # -- the user --------------------------------------------------------------------------------

    def heard(self, level, clock):
        """A microphone chunk of this level arrived; `clock()` is now (asked only for a voiced
        chunk: on the page each reading is a call into the browser, per chunk)."""
        if level >= SPEECH_LEVEL:
            self._voiced_at = clock()

    def user_turn_ended(self, now, source):
        voiced = self._voiced_at
        if voiced is not None and 0 <= now - voiced <= HEARD_WITHIN_MS:
            self._speech_end = (voiced, "microphone")
        else:
            self._speech_end = (now, source)

    def text_sent(self, now):
        self._speech_end = (now, "text")

    # -- the agent -------------------------------------------------------------------------------

    def _turn(self, turn_id):
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = {"played_at": None, "heard_end": self._speech_end, "ended": False,
                    "timings": None, "over": False}  # fmt: skip
            self._speech_end = None  # this turn answers it; the next one answers nothing
            self._turns[turn_id] = turn
            self._order.append(turn_id)
            while len(self._order) > KEPT_TURNS:
                self._turns.pop(self._order.pop(0), None)
        return turn

    def agent_audio(self, turn_id):
        """The first audio of an agent turn arrived: it answers the last user speech end."""
        self._turn(turn_id)

    def agent_played(self, turn_id, now):
        """The player worklet played the turn's first sample."""
        turn = self._turn(turn_id)
        if turn["played_at"] is None:
            turn["played_at"] = now
        self._maybe_report(turn_id)

    def agent_ended(self, turn_id, timings, playing):
        """`response.end` arrived; `playing` is False when nothing will play (audio off)."""
        turn = self._turn(turn_id)
        turn["ended"] = True
        turn["timings"] = timings
        if not playing:
            turn["over"] = True
        self._maybe_report(turn_id)

    def agent_interrupted(self, turn_id):
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn["over"] = True
            self._maybe_report(turn_id)

    def _maybe_report(self, turn_id):
        turn = self._turns.get(turn_id)
        if turn is None or not turn["ended"] or (turn["played_at"] is None and not turn["over"]):
            return
        del self._turns[turn_id]
        self._order.remove(turn_id)
        heard = turn["heard_end"]
        latency = None
        if heard is not None and turn["played_at"] is not None:
            latency = max(0, round(turn["played_at"] - heard[0]))
        self._report(
            {
                "turn_id": turn_id,
                "voice_to_voice_ms": latency,
                "user_speech_end": heard[1] if heard is not None else None,
                "timings": turn["timings"],
            }
        )
