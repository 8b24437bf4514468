"""Per-turn timings: where the time goes between the end of the user's speech and the agent's voice.

The VAD speaks in stream time (seconds of audio received); latency is wall time. `StreamClock`
maps one to the other from the arrival time of the latest chunk — exact for a client streaming
in real time, which is what microphones do. `TurnTimings` collects the marks of one turn and
reports the split the latency benchmark prints, and the trace of the queues inside it: how long
the turn's requests waited for the turn-end model's thread, a recogniser worker or a Piper
thread, against how long each of them worked (`add_stage`; docs/scaling.md has the figures).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


class StreamClock:
    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.samples = 0
        self.last_arrival = time.monotonic()

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def advance(self, samples: int, arrival: float) -> None:
        self.samples += samples
        self.last_arrival = arrival

    def wall_time_of(self, stream_seconds: float) -> float:
        """When (monotonic) the audio at `stream_seconds` was captured, as best we know."""
        return self.last_arrival - (self.seconds - stream_seconds)

    def stream_time_of(self, wall_time: float) -> float:
        """The stream time the microphone will be at, at `wall_time` (monotonic): where agent
        audio due to play then belongs in the echo guard's timeline."""
        return self.seconds + (wall_time - self.last_arrival)


# Where a turn's requests waited and worked (seconds, summed over the turn's requests):
STAGES = {
    "model_queue": "looks waiting for the turn-end model's thread",
    "model_work": "the turn-end model running",
    "words": "the words of a look: asked until answered (all of it)",
    "words_queue": "of which the turn's requests waiting in its recogniser worker's queue",
    "words_work": "of which the worker decoding them (the turn's audio not yet decoded, then "
    "the words)",
    "final": "the final transcript: asked until answered (all of it)",
    "final_queue": "of which waiting in the recogniser worker's queue",
    "final_work": "of which the worker decoding",
    "words_behind": "the turn's audio not yet decoded when its words were asked (ms of audio, "
    "not of waiting: how far the recogniser was behind the voice)",
    "final_behind": "the same when the final transcript was asked",
    "stt_claim": "the utterance waiting for a free decoder at its start (a pool growing)",
    "tts_queue": "the first sentence waiting for a Piper thread",
    "tts_work": "Piper making the first sentence",
    "echo_work": "the echo guard cleaning the microphone since the turn before (the answer's "
    "playback included: echo.py, echo_gate.py)",
}


@dataclass
class TurnTimings:
    speech_end: float | None = None  # the user's voice stopped
    endpoint: float | None = None  # the endpointer decided the turn was over
    transcript: float | None = None  # the final transcript was ready
    webhook_first_event: float | None = None  # the agent's first SSE event arrived
    first_audio: float | None = None  # the first synthesized audio was queued to the client
    end_rule: str | None = None  # what ended the user's turn (turns.END_RULES, push-to-talk)
    # The trace of the queues, in seconds by name (STAGES), summed over the turn's requests.
    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        if getattr(self, name) is None:
            setattr(self, name, time.monotonic())

    def add_stage(self, name: str, seconds: float) -> None:
        """Add to one of STAGES: seconds a request of this turn waited or worked."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}")
        self.stages[name] = self.stages.get(name, 0.0) + max(0.0, seconds)

    def report(self) -> dict[str, float | str]:
        """Milliseconds per stage (only those measured), plus the totals, and `end_rule`.

        A speculative answer (speculation.py) had its webhook answer before the turn ended:
        a stage done ahead counts the time it added after the stage before it (0 ms for the
        webhook), and `speculative_ms` says how long before the endpoint its first event came.
        """
        first_event = self.webhook_first_event
        if first_event is not None and self.transcript is not None:
            first_event = max(first_event, self.transcript)  # speculated: came before it
        stages = [
            ("endpointing_ms", self.speech_end, self.endpoint),
            ("transcript_ms", self.endpoint, self.transcript),
            ("webhook_ms", self.transcript, first_event),
            ("tts_first_audio_ms", first_event, self.first_audio),
            ("after_endpoint_ms", self.endpoint, self.first_audio),
            ("voice_to_voice_ms", self.speech_end, self.first_audio),
        ]
        report: dict[str, float | str] = {
            name: round(max(0.0, end - start) * 1000, 1)
            for name, start, end in stages
            if start is not None and end is not None
        }
        first_event, endpoint = self.webhook_first_event, self.endpoint
        if first_event is not None and endpoint is not None and first_event < endpoint:
            report["speculative_ms"] = round((endpoint - first_event) * 1000, 1)
        report.update({f"{name}_ms": round(s * 1000, 1) for name, s in self.stages.items()})
        if self.end_rule:
            report["end_rule"] = self.end_rule
        if self.speech_end is not None:
            # On the wall clock, so a client on this machine can time its own playback from it.
            since = time.monotonic() - self.speech_end
            report["speech_end_epoch_ms"] = round((time.time() - since) * 1000, 1)
        return report
