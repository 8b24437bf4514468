"""Server settings, read once from the environment and validated at start.

A wrong value stops the server before it listens, with a message naming the variable, rather
than failing later in a request. The README's configuration table mirrors `ENVIRONMENT`.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from layercode_client.protocol import CLOUD_PIPELINE_AUTHORIZE_URL, TRIGGERS

from .errors import SettingsError

__all__ = ["ENVIRONMENT", "Settings", "SettingsError"]

ROOT = Path(__file__).resolve().parent.parent

# The turn-end rules TURN_END_RULES_OFF may name (server/pipeline/turns.py's RULES_OFF, which
# a test keeps equal: config does not import the pipeline).
TURN_END_RULES = (
    "vad-silence",
    "words-at-look",
    "vad-confirm",
    "weak-words-wait",
    "words-again",
    "middle-look",
    "clear-words-confirm",
    "middle-clear-words",
    "vetoed-words-wait",
    "look-ahead",
)

# name → (default, what it does); the README's table is generated from the same words.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "HOST": ("127.0.0.1", "Interface to listen on (`--host` overrides)."),
    "PORT": ("8000", "Port to listen on (`--port` overrides)."),
    "LAYERCODE_API_KEY": (
        "",
        "Set it to proxy `/api/authorize` to Layercode's cloud; unset, the embedded pipeline "
        "answers. Never sent to the browser, never logged.",
    ),
    "LAYERCODE_AUTHORIZE_URL": (
        CLOUD_PIPELINE_AUTHORIZE_URL,
        "Layercode's authorize URL (the agents generation: "
        "`https://api.layercode.com/v1/agents/web/authorize_session`).",
    ),
    "LAYERCODE_TIMEOUT": (
        "10",
        "Seconds the whole exchange with Layercode's cloud may take (connect, answer, body) "
        "before `/api/authorize` answers 504.",
    ),
    "LAYERCODE_MAX_REPLY_KB": (
        "256",
        "Largest answer accepted from Layercode's cloud, in KiB; a larger one is answered 502.",
    ),
    "PUBLIC_URL": (
        "",
        "The URL clients reach this server at (e.g. `https://voice.example.com`, behind a "
        "proxy or a load balancer: the same on every node); `websocket_url` is built from it "
        "and its host is allowed. Empty: built from the request's (allowed) Host.",
    ),
    "ALLOWED_HOSTS": (
        "",
        "Comma-separated extra host names `/api/authorize` and the WebSocket answer to "
        "(DNS-rebinding defence); `localhost`, `127.0.0.1`, `::1`, `HOST` and `PUBLIC_URL`'s "
        "host are always allowed; `*` allows any (unsafe).",
    ),
    "TRUSTED_PROXIES": (
        "",
        "Comma-separated addresses of reverse proxies whose `X-Forwarded-For` names the client "
        "(for the rate limit); empty means the peer's own address is the client's.",
    ),
    "AUTHORIZE_SECRET": (
        "",
        "A server-side secret an app's backend sends as `X-Authorize-Secret` to vouch for its "
        "user: with it, a session is resumed without its `resume_token` (and deleted without "
        "it). Never sent to the browser, never logged.",
    ),
    "AUTHORIZE_RATE_LIMIT": (
        "60",
        "Authorize requests per client address per minute (429 past it); counted in Redis "
        "for the whole cluster when `REDIS_URL` is set.",
    ),
    "MAX_SESSIONS": (
        "50",
        "Embedded pipeline: concurrent sessions on this node (authorize answers 503, the "
        "WebSocket closes 1013 past it).",
    ),
    "MAX_METADATA_BYTES": (
        "16384",
        "Largest `metadata` object `/api/authorize` accepts, in bytes of JSON (413 past it).",
    ),
    "IDLE_TIMEOUT": (
        "120",
        "Embedded pipeline: seconds a WebSocket may send nothing before it is closed with 4008.",
    ),
    "PUSH_TO_TALK_IDLE_TIMEOUT": (
        "900",
        "Embedded pipeline: the idle timeout of push-to-talk sessions, whose clients send "
        "nothing between presses.",
    ),
    "MAX_QUEUED_MESSAGES": (
        "8",
        "Embedded pipeline: `client.response.text`/`data` messages waiting, each for its agent "
        "turn, while one answers; past it a message gets an `error` (`too_many_messages`). "
        "Text typed while the turn for earlier typed text waits joins that turn instead.",
    ),
    "MAX_MESSAGE_CHARS": (
        "8000",
        "Embedded pipeline: longest `client.response.text` / `client.response.data` content, in "
        "characters of JSON; a longer one gets an `error` (`message_too_long`) and is dropped.",
    ),
    "AUDIO_BURST_SECONDS": (
        "5",
        "Embedded pipeline: audio a client may send ahead of real time (its buffered pre-roll, "
        "a catch-up after a stall); beyond it `client.audio` is dropped with an `error` "
        "(`audio_too_fast`).",
    ),
    "AUDIO_FLOOD_SECONDS": (
        "10",
        "Embedded pipeline: dropped audio, net of real time, after which a client that keeps "
        "sending too fast is closed with 4009.",
    ),
    "AUDIO_ADDRESS_BURST_SECONDS": (
        "0",
        "Embedded pipeline: the burst (audio ahead of real time) shared by all sessions from one "
        "client address (0-60, 0 off: each session its own `AUDIO_BURST_SECONDS`). Each "
        "session still earns real time on its own, so many people behind one NAT address are "
        "never refused for talking; only catching up is shared, so a client opening many "
        "sessions at once gets one burst, not one each. Per node.",
    ),
    "FLOOD_PENALTY_SECONDS": (
        "60",
        "Embedded pipeline: after a session is closed for flooding audio (4009), its client "
        "address is refused for this long (0-3600, 0 off): authorize answers 429 "
        "`audio_flood`, the WebSocket closes 4009. Per node.",
    ),
    "HISTORY_MAX_TURNS": (
        "200",
        "Embedded pipeline: turns kept per conversation, and response.data messages kept for "
        "resumed clients (the oldest are pruned); also the unsaved turns a session keeps while "
        "the history store is unreachable.",
    ),
    "HISTORY_RETRY_SECONDS": (
        "5",
        "Embedded pipeline: after a history store call failed, a session leaves the store alone "
        "this long (0-300 s): its turns are kept and the agent gets the session's own history "
        "at once, instead of each turn waiting on the database driver's timeouts; while turns "
        "are kept, it tries again once each interval is over, turn or no turn.",
    ),
    "HISTORY_MAX_DAYS": (
        "30",
        "Embedded pipeline: conversations untouched for this many days are deleted.",
    ),
    "DRAIN_GRACE": (
        "20",
        "Seconds a SIGTERM lets answers being spoken finish before sockets close with 1012.",
    ),
    "CORS_ALLOW_ORIGINS": (
        "",
        "Comma-separated origins (e.g. `https://app.example.com`) whose pages may call "
        "`/api/authorize`; empty means same origin only.",
    ),
    "PIPELINE_ID": ("demo", "Pipeline id the demo page asks for (embedded pipeline accepts any)."),
    "TRANSCRIPTION_TRIGGER": (
        "automatic",
        "Embedded pipeline turn-taking: `automatic` (voice activity) or `push_to_talk`.",
    ),
    "CAN_INTERRUPT": ("true", "Embedded pipeline: may the user interrupt the agent (barge-in)."),
    "FALSE_INTERRUPTION_MS": (
        "600",
        "Embedded pipeline: how long the agent's answer is held (not lost) when the user starts "
        "speaking over it; speech without enough words by then resumes it. 0: interrupt at once.",
    ),
    "INTERRUPTION_MIN_WORDS": (
        "1",
        "Embedded pipeline: words the user must say over the agent to interrupt it (fewer, "
        'e.g. a cough or an "mm", is a false interruption).',
    ),
    "PLAYBACK_LEAD_MS": (
        "500",
        "Embedded pipeline: agent audio sent ahead of the play position (absorbs network "
        "jitter; a barge-in drops at most this much in the browser).",
    ),
    "TTS_ENGINE": ("piper", "Embedded pipeline voice: `piper` (natural) or `espeak` (light)."),
    "TTS_FIRST_PHRASE_WORDS": (
        "2",
        "Embedded pipeline: an answer's first sentence is synthesised as two inferences, its "
        "opening phrase first, cut at its first clause break (comma, colon, semicolon, dash) "
        "that leaves at least this many words on both sides (`You said:` | `What time is "
        "it?`), when the voice is idle as the answer starts or TTS_REST_BESIDE_PHRASE is on: "
        "the first audio waits for the phrase alone, about half the sentence's inference; "
        "otherwise a busy voice makes it whole (at ten talkers a rest asked for after its "
        "phrase came after the phrase had played, docs/scaling.md). 0-20; `0` "
        "as before: only a first sentence over 12 words, at a clause of 4 words or more.",
    ),
    "TTS_PIPER_SOLO": (
        "on",
        "Embedded pipeline, with `TTS_ENGINE=piper`: `on` (the default): a sentence made while "
        "no other is made or waits runs on a two-thread voice (fastest alone: ~73 against ~120 "
        "ms on one thread); `off`: every sentence on a one-thread voice, so a synthesis never "
        "takes both cores from the turn-end model's look or the recogniser (at ten talkers "
        "within the noise of `on` in four runs, three rounds to two for `off`; "
        "docs/scaling.md).",
    ),
    "TTS_REST_BESIDE_PHRASE": (
        "false",
        "Embedded pipeline: the rest of a first sentence split at its opening phrase "
        "(TTS_FIRST_PHRASE_WORDS) is asked of the voice together with the phrase, due when the "
        "phrase will have played, so it is made while the phrase plays and the split is made "
        "whether the voice is busy or idle (docs/scaling.md: two quiet A/Bs disagreed on the "
        "p95 at ten talkers, and the recogniser's work on a look's words was slower in both). "
        "`false` (the default) as before: the split only while the voice is idle as the answer "
        "starts, the rest asked for once the phrase is made.",
    ),
    "VAD": (
        "silero",
        "Embedded pipeline voice activity detector: `silero` (a small neural model: no false "
        "turns from hum, tones or clicks) or `webrtc` (lighter, fooled by steady noise).",
    ),
    "TURN_END_MODEL": (
        "smart-turn",
        "Embedded pipeline endpointing: `smart-turn` (a model asked at the first 96 ms pause "
        "whether the user has finished, again at 256 ms (`TURN_END_MIDDLE_LOOK_MS`) and at 450 "
        "ms; its `finished` stands only if the "
        "words heard so far can end a sentence, not e.g. `a table for`; at 96 ms words that "
        "end a sentence clearly let a less sure voice end the turn, and after a number the "
        "words must end one clearly; a look waits until Silero hears silence, not only quiet; "
        "a pause inside a sentence waits up to 1 s) or `off` (a fixed 400 ms of silence ends "
        "every turn).",
    ),
    "TURN_END_RULES_OFF": (
        "",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: comma-separated rules of the "
        "turn-end decision to turn off, for the behaviour before them (compared in `./dev bench "
        "endpointing` and `latency`): `vad-silence` (a look waits until Silero hears silence), "
        "`words-at-look` (the words are asked for beside the model, not after it), "
        "`vad-confirm` (a `finished` waits for a second frame Silero hears as silent: a stop "
        "inside a word is not an end), `weak-words-wait` (at the 450 ms look, words that end a "
        "sentence only weakly end the turn at 700 ms of silence, not at once), `words-again` (at "
        "the first look, words that veto a voice that sounds finished are asked again at 192 ms "
        "of silence: the recogniser often lacks the last word at 96 ms), `middle-look` (the "
        "model is asked again at `TURN_END_MIDDLE_LOOK_MS` of silence, between the 96 ms and "
        "450 ms looks, with the first look's bar), `clear-words-confirm` (at the first look, a "
        "voice less than sure whose words end a sentence clearly ends the turn only once the "
        "words asked again at `TURN_END_CLEAR_WORDS_CONFIRM_MS` agree: at 96 ms the words "
        "depend on how much audio the last chunk brought), `middle-clear-words` (at the middle "
        "look, words that end a sentence clearly let a voice above "
        "`TURN_END_MIDDLE_CLEAR_WORDS_MIN` end the turn), `vetoed-words-wait` (at the 450 ms "
        "look, a voice the model is sure of, over 0.95, whose words veto an end ends the turn "
        "at 800 ms of silence, not at the 1 s fallback: misheard words veto finished "
        "sentences), `look-ahead` (the first look is asked `TURN_END_LOOK_AHEAD_MS` before its "
        "96 ms of silence, its answer used from 96 ms on).",
    ),
    "TURN_END_MIDDLE_LOOK_MS": (
        "256",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: between the first look (96 ms of "
        "silence) and the second (450 ms), the model is asked once more at this much silence, "
        "on the audio then, with the first look's threshold (0.95) and words that can end a "
        'sentence: a question the model was just short of sure of at 96 ms ("What time is '
        'it?" 0.945) ends here, not at the 700 ms the second look holds weak words to. `0` or '
        "100-1000; `0`: no middle look, as before.",
    ),
    "TURN_END_CLEAR_WORDS_CONFIRM_MS": (
        "128",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: at the first look (96 ms of "
        "silence), a voice less than sure (0.6-0.95) whose words end a sentence clearly ends "
        "the turn only once the words asked again at this much silence agree: at 96 ms the "
        'words depend on how much audio the last chunk brought (40 ms chunks: "Please wake me '
        'up at, six fifteen" heard "please wake me up" and cut). `0` or 100-1000; `0`: at once, '
        "as before (`TURN_END_RULES_OFF=clear-words-confirm`; `./dev bench endpointing "
        "--clear-confirms` compares values).",
    ),
    "TURN_END_MIDDLE_CLEAR_WORDS_MIN": (
        "0.8",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: at the middle look "
        "(`TURN_END_MIDDLE_LOOK_MS`), words that end a sentence clearly (after three words or "
        "more) let a voice the model scores above this end the turn, not only one above 0.95: "
        '"Thank you very much." scored 0.54 at 96 ms and 0.85 at 256 ms in the browser and '
        "waited for the 450 ms look. Higher than the first look's 0.6: by 256 ms the silence "
        "makes the model surer of sentences cut at a hesitation (at most 0.72 with clear words "
        "on `./dev bench endpointing`'s sets). 0.5-1; 0.95 or more: no discount, as before "
        "(`TURN_END_RULES_OFF=middle-clear-words`; `./dev bench endpointing --middle-clear-words` "
        "compares values).",
    ),
    "TURN_END_LOOK_AHEAD_MS": (
        "0",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: the first look is asked this "
        "much before its 96 ms of silence, on the audio then, and a `finished` it gives ends "
        "the turn no earlier than 96 ms: the model's work (~75-110 ms on a 2-core AMD EPYC "
        "without AVX-512) runs while the rest of that silence arrives, not after it (a look "
        "still waits for Silero to hear silence: it moved 15 of 92 questions' looks on `./dev "
        "bench endpointing`, with the same number of sentences cut). 0-64 (whole Silero frames "
        "of 32 ms count); `0` (the default): asked at 96 ms (as "
        "`TURN_END_RULES_OFF=look-ahead`; `./dev bench endpointing --look-aheads` compares "
        "values). Off by default: on a quiet machine 32 gave no better latency (voice-to-voice "
        "p50/p95 351/525 against 348/481 ms with 0, 24 turns a mode) and a worse p95 with ten "
        "talkers (1585 against 1228 ms p95, one run each).",
    ),
    "TURN_END_MODEL_EXACT": (
        "auto",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: whether the int8 turn-end model "
        "sums its products exactly. On x86 CPUs without VNNI (AVX2 alone: AMD Zen 2/3, older "
        "Intel) onnxruntime's fast int8 kernels saturate, and the same audio scores up to 0.94 "
        'apart ("I would like to speak to," at its pause 0.03 on a VNNI CPU, 0.97 on an '
        "emulated Haswell): sentences are cut at their pauses. Exact sums give the VNNI CPU's "
        "scores, at ~45 % more CPU a look where VNNI makes them fast anyway. `auto`: the model "
        "is asked about a synthetic voice both ways at start, and the exact way is kept only "
        "where the answers differ (logged); `true`: always exact; `false`: always fast, as "
        "before.",
    ),
    "TURN_END_LATE_WORDS_MS": (
        "700",
        "Embedded pipeline, with `TURN_END_MODEL=smart-turn`: when the recogniser's words for a "
        "turn-end look have not come by this much silence (a node under load), the model "
        "decides alone at its own threshold, unless words heard in that pause said the sentence "
        "goes on (0-1000; longer than the pauses inside sentences it must not cut). `0`: wait "
        "for the words until the 1 s fallback, as before.",
    ),
    "SPECULATIVE_ANSWERS": (
        "auto",
        "Embedded pipeline: at a pause whose words look whole, call the agent at once "
        "(`speculative: true`) and prepare its first sentence, sent only if the turn then ends "
        "with those words; else cancelled (`message.cancel`). Costs the agent an extra call per "
        "abandoned guess. `auto`: on for the built-in demo agent only; `on`; `off`.",
    ),
    "STT_PROFILE": (
        "tuned",
        "Embedded pipeline recogniser: `tuned` (steady noise subtracted, and 8 kHz audio's "
        "empty top band mirrored: fewer word errors), `narrowband` (the mirroring only) or "
        "`baseline` (audio as it comes).",
    ),
    "STT_PRIORITY_LANE": (
        "true",
        "Embedded pipeline recogniser: a turn's end jumps the queue — the words a turn-end "
        "look or the final transcript waits for are decoded before other sessions' streaming "
        "audio on the same worker (`false`: first come, first served, as before; "
        "`./dev bench load --compare` runs both).",
    ),
    "STT_SILENCE_MS": (
        "300",
        "Embedded pipeline recogniser: how much of a silence inside a user's turn it decodes "
        "(0-2000 ms); the rest of a longer silence is not decoded, and a voice that comes back "
        "is given with the 96 ms before it. Under load a turn ends 0.7-1 s into its silence, and "
        "the final transcript waited for all of it (`0`: all of it, as before).",
    ),
    "STT_WORDS_AT_ASK": (
        "true",
        "Embedded pipeline recogniser: the words a turn-end look asks for are those of the "
        "audio until the look, answered once that much is decoded (`false`: once everything "
        "fed is decoded, as before: under load the recogniser then chased the live stream and "
        "the words came seconds late; `./dev bench load --compare` runs both).",
    ),
    "STT_CATCH_UP_MS": (
        "0",
        "Embedded pipeline recogniser: an utterance with more than this much of its audio not "
        "yet decoded (0-5000 ms) has its streaming audio decoded at the server's priority, not "
        "`STT_WORKER_NICE` below it: below, on a busy machine the workers starved and a turn's "
        "end waited for seconds of undecoded audio. `0`: never, as before, until a quiet A/B "
        "settles it (docs/scaling.md).",
    ),
    "STT_FINAL_FROM_LOOK": (
        "true",
        "Embedded pipeline recogniser: a turn that ends at a pause whose look asked for its "
        "words, with no voice since, takes them as its final transcript instead of waiting for "
        "the recogniser to decode the silence after them (under load, most of the final "
        "transcript's wait). `false`: the final transcript of all audio fed, as before.",
    ),
    "STT_MAX_WORDS_PER_FRAME": (
        "10",
        "Embedded pipeline recogniser: at most this many distinct words may end in one 10 ms "
        "frame of its search (0-100; pocketsphinx's -maxwpf). 10 decoded the benchmark's "
        "questions to the same words 3-17% cheaper (most in noise); `0`: no limit, as before "
        "(`./dev bench wer --variant maxwpf=-1` compares them).",
    ),
    "STT_DECODERS_PER_WORKER": (
        "1",
        "Embedded pipeline recogniser: utterances one worker process decodes at once (1-8, "
        "each a decoder of ~90 MiB). A worker decodes one request at a time: with one per "
        "worker a turn's end never waits behind another utterance's audio (in two loaded A/Bs "
        "the worker queue's p95 at ten talkers fell from 2.6-4.9 s to 0.1-0.5 s). `3`: as "
        "before. The pool grows a worker whenever fewer than two decoders are free, up to "
        "`STT_MAX_WORKERS`.",
    ),
    "STT_MAX_WORKERS": (
        "12",
        "Embedded pipeline recogniser: the most worker processes the pool grows to (1-32; it "
        "starts with min(4, cores)). `8`: as before.",
    ),
    "STT_WORKER_NICE": (
        "10",
        "Embedded pipeline recogniser: how far below the server's priority its workers "
        "decode other sessions' streaming audio (0-19, as `nice`), so it yields the cores to "
        "the turn-end model and the first sentence's voice; a turn's own end is decoded at "
        "the server's priority where the OS allows raising it back (root with CAP_SYS_NICE), "
        "else below too (`0`: the same priority, as before; `./dev bench load --compare` "
        "runs both).",
    ),
    "STT_PHRASES": (
        "auto",
        "Embedded pipeline recogniser: a file of the phrases the agent expects (one a line), "
        "from which a small language model is made and mixed into the general one, so the "
        "words they use weigh more (built once, ~1 min, kept in `.cache/stt/`). `auto`: "
        "the demo agent's own list (`server/agent/phrases.txt`) when the demo agent answers, "
        "none with `AGENT_WEBHOOK_URL`; `none`: the general model alone, as before.",
    ),
    "ECHO_DEFENCE": (
        "true",
        "Embedded pipeline: remove the agent's own voice (heard back through the user's "
        "speakers) from the microphone before turn detection, so it never interrupts the agent.",
    ),
    "ECHO_GATE": (
        "true",
        "Echo defence: also mute what the agent's echo explains by its spectral envelope and "
        "harmonics (`server/pipeline/echo_gate.py`, `echo_fine.py`), for echo a browser's own "
        "capture processing left too changed for the linear canceller (Chromium with echo "
        "cancellation on). A person's voice, in any voice, does not carry the harmonics of the "
        "words being played: it is let through within 60 ms of them, and with no echo at all "
        "the gate never locks (bench/echo.py, bench/bargein.py). `false`: the linear canceller "
        "alone.",
    ),
    "ECHO_MAX_DELAY_MS": (
        "1200",
        "Echo defence: the longest delay, from when agent audio was due to play to when the "
        "microphone hears it (browser output latency + network + input latency), searched.",
    ),
    "AGENT_WEBHOOK_URL": (
        "",
        "A Layercode-style agent webhook (Webhook SSE API); empty means the built-in demo "
        "agent at `/api/agent`.",
    ),
    "AGENT_WEBHOOK_SECRET": (
        "",
        "Secret that signs webhook calls (`layercode-signature`); generated per run when empty "
        "and the demo agent is used. Required, the same on every node, with a shared store.",
    ),
    "DATA_DIR": (".data", "Where the embedded pipeline keeps session history (SQLite)."),
    "REDIS_URL": (
        "",
        "Keep session keys in Redis (`redis://host:6379/0`) so any node redeems a key any node "
        "issued; empty keeps them in this process. Needs `AGENT_WEBHOOK_SECRET`.",
    ),
    "DATABASE_URL": (
        "",
        "Keep conversation history and resume tokens in PostgreSQL "
        "(`postgresql://user:pass@host/db`), shared by every node; empty keeps them in SQLite "
        "under `DATA_DIR`. Needs `AGENT_WEBHOOK_SECRET`.",
    ),
    "DATABASE_POOL_SIZE": ("10", "Most PostgreSQL connections one node holds open."),
    "LOG_LEVEL": ("info", "debug, info, warning or error."),
}


MIN_REDACTED_PASSWORD = 6


def _env(name: str, environ: dict[str, str]) -> str:
    return environ.get(name, ENVIRONMENT[name][0]).strip()


def _positive_float(name: str, environ: dict[str, str]) -> float:
    raw = _env(name, environ)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than zero")
    return value


def _nice(name: str, environ: dict[str, str]) -> int:
    """A `nice` increment, 0 (the same priority) to 19 (the lowest)."""
    return _whole(name, environ, 0, 19)


def _phrase_list(raw: str) -> str:
    """STT_PHRASES: `auto`, `none` (Settings resolves both), or a file checked to hold
    phrases now, not when the first worker starts."""
    from .pipeline.phrase_lm import PhraseListError, read_phrases

    if raw in ("auto", "none"):
        return raw
    path = Path(raw) if Path(raw).is_absolute() else ROOT / raw
    try:
        read_phrases(path)
    except PhraseListError as error:
        raise SettingsError(f"STT_PHRASES: {error} (or set it to auto or none)") from None
    return str(path)


def _whole(name: str, environ: dict[str, str], low: int, high: int) -> int:
    """A whole number, `low`..`high`."""
    raw = _env(name, environ)
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def _number(name: str, environ: dict[str, str], low: float, high: float, what: str) -> float:
    """A number `low`..`high`; `what` words the error ("a number of seconds (1-60)")."""
    raw = _env(name, environ)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise SettingsError(f"{name} must be {what}, not {raw!r}")
    return value


def _seconds(name: str, environ: dict[str, str], low: float, high: float) -> float:
    """A number of seconds, `low`..`high`."""
    return _number(name, environ, low, high, f"a number of seconds ({low:g}-{high:g})")


def _milliseconds(name: str, environ: dict[str, str], low: int = 0, high: int = 10_000) -> int:
    """A whole number of milliseconds, `low`..`high`."""
    raw = _env(name, environ)
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(
            f"{name} must be a whole number of milliseconds ({low}-{high}), not {raw!r}"
        )
    return int(raw)


def _after_first_look_ms(name: str, environ: dict[str, str]) -> int:
    """A silence of the turn-end decision after its first look's 96 ms (TURN_END_MIDDLE_LOOK_MS,
    TURN_END_CLEAR_WORDS_CONFIRM_MS): 0 (off) or 100-1000 ms."""
    value = _milliseconds(name, environ, 0, 1000)
    if 0 < value < 100:
        raise SettingsError(
            f"{name} must be 0 or 100-1000 milliseconds (after the first look at 96 ms), "
            f"not {value}"
        )
    return value


def _fraction(name: str, environ: dict[str, str], low: float, high: float) -> float:
    """A number `low`..`high` (a probability, a bar the turn-end model must pass)."""
    return _number(name, environ, low, high, f"a number from {low:g} to {high:g}")


def _count(name: str, environ: dict[str, str], most: int = 20) -> int:
    return _whole(name, environ, 1, most)


def _positive_int(name: str, environ: dict[str, str]) -> int:
    raw = _env(name, environ)
    if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(f"{name} must be a whole number greater than zero, not {raw!r}")
    return int(raw)


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in raw.split(",") if n.strip())


def _public_url(raw: str) -> str:
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"PUBLIC_URL must be an http(s) URL like https://host, not {raw!r}")
    return raw.rstrip("/")


def _port(raw: str, name: str = "PORT") -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def _bool(name: str, environ: dict[str, str]) -> bool:
    raw = _env(name, environ).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _url(name: str, environ: dict[str, str], schemes: tuple[str, ...]) -> str:
    raw = _env(name, environ)
    if raw and urlsplit(raw).scheme not in schemes:
        # Never echo the value: it may carry a password.
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(schemes)}://")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"CORS_ALLOW_ORIGINS entries must look like https://host[:port], not {origin!r}"
            )
    return origins


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    layercode_api_key: str = field(default="", repr=False)
    layercode_authorize_url: str = CLOUD_PIPELINE_AUTHORIZE_URL
    layercode_timeout: float = 10.0
    cors_allow_origins: tuple[str, ...] = ()
    pipeline_id: str = "demo"
    transcription_trigger: str = "automatic"
    can_interrupt: bool = True
    false_interruption_s: float = 0.6
    interruption_min_words: int = 1
    playback_lead_s: float = 0.5
    tts_engine: str = "piper"
    tts_first_phrase_words: int = 2
    tts_rest_beside_phrase: bool = False
    tts_piper_solo: bool = True
    vad: str = "silero"
    turn_end_model: str = "smart-turn"
    turn_end_rules_off: tuple[str, ...] = ()
    turn_end_late_words_ms: int = 700
    turn_end_middle_look_ms: int = 256
    turn_end_clear_words_confirm_ms: int = 128
    turn_end_middle_clear_words_min: float = 0.8
    turn_end_look_ahead_ms: int = 0
    turn_end_model_exact: str = "auto"
    speculative_answers: str = "auto"
    stt_profile: str = "tuned"
    stt_priority_lane: bool = True
    stt_worker_nice: int = 10
    stt_words_at_ask: bool = True
    stt_silence_ms: int = 300
    stt_catch_up_ms: int = 0
    stt_decoders_per_worker: int = 1
    stt_max_words_per_frame: int = 10
    stt_final_from_look: bool = True
    stt_max_workers: int = 12
    # STT_PHRASES: a phrase list file, "" for none; `auto` and `none` are resolved at once
    # (__post_init__), so settings made in code get what the environment's default gives
    stt_phrases: str = "auto"
    echo_defence: bool = True
    echo_gate: bool = True
    echo_max_delay_ms: int = 1200
    agent_webhook_url: str = ""
    agent_webhook_secret: str = field(default="", repr=False)
    data_dir: Path = ROOT / ".data"
    log_level: str = "info"
    redis_url: str = field(default="", repr=False)
    database_url: str = field(default="", repr=False)
    database_pool_size: int = 10
    layercode_max_reply_kb: int = 256
    public_url: str = ""
    allowed_hosts: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    authorize_secret: str = field(default="", repr=False)
    authorize_rate_limit: int = 60
    max_sessions: int = 50
    max_metadata_bytes: int = 16384
    idle_timeout: float = 120.0
    push_to_talk_idle_timeout: float = 900.0
    max_message_chars: int = 8000
    max_queued_messages: int = 8
    audio_burst_s: float = 5.0
    audio_flood_s: float = 10.0
    audio_address_burst_s: float = 0.0  # off: see README (a busy server's reading jitter)
    flood_penalty_s: float = 60.0
    history_max_turns: int = 200
    history_max_days: float = 30.0
    history_retry_s: float = 5.0
    drain_grace: float = 20.0

    def __post_init__(self) -> None:
        if self.stt_phrases in ("auto", "none"):
            from .pipeline.phrase_lm import AGENT_PHRASES

            demo_agent = self.stt_phrases == "auto" and not self.agent_webhook_url
            object.__setattr__(self, "stt_phrases", str(AGENT_PHRASES) if demo_agent else "")

    @property
    def host_allowlist(self) -> frozenset[str]:
        """Host names this server answers to: loopback, its own, the public URL's, configured."""
        names = {"localhost", "127.0.0.1", "::1", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower())
        if self.public_url:
            names.add((urlsplit(self.public_url).hostname or "").lower())
        return frozenset(names)

    @property
    def uses_cloud(self) -> bool:
        return bool(self.layercode_api_key)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a response or a log line."""
        urls = (self.redis_url, self.database_url)
        # A store's password, unless so short that redacting it would blank ordinary words.
        passwords = (urlsplit(url).password or "" for url in urls)
        long_passwords = (p for p in passwords if len(p) >= MIN_REDACTED_PASSWORD)
        values = (
            self.layercode_api_key,
            self.agent_webhook_secret,
            self.authorize_secret,
            *urls,
            *long_passwords,
        )
        return tuple(s for s in values if s)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        trigger = _env("TRANSCRIPTION_TRIGGER", env)
        if trigger not in TRIGGERS:
            raise SettingsError(f"TRANSCRIPTION_TRIGGER must be one of {', '.join(TRIGGERS)}")
        tts_engine = _env("TTS_ENGINE", env)
        if tts_engine not in ("piper", "espeak"):
            raise SettingsError("TTS_ENGINE must be piper or espeak")
        vad = _env("VAD", env)
        if vad not in ("silero", "webrtc"):
            raise SettingsError("VAD must be silero or webrtc")
        turn_end_model = _env("TURN_END_MODEL", env)
        if turn_end_model not in ("smart-turn", "off"):
            raise SettingsError("TURN_END_MODEL must be smart-turn or off")
        turn_end_model_exact = _env("TURN_END_MODEL_EXACT", env).lower()
        if turn_end_model_exact not in ("auto", "true", "false"):
            raise SettingsError("TURN_END_MODEL_EXACT must be auto, true or false")
        turn_end_rules_off = _names(_env("TURN_END_RULES_OFF", env))
        unknown = sorted(set(turn_end_rules_off) - set(TURN_END_RULES))
        if unknown:
            raise SettingsError(
                f"TURN_END_RULES_OFF: unknown {', '.join(unknown)}; "
                f"known: {', '.join(TURN_END_RULES)}"
            )
        speculative_answers = _env("SPECULATIVE_ANSWERS", env)
        if speculative_answers not in ("auto", "on", "off"):
            raise SettingsError("SPECULATIVE_ANSWERS must be auto, on or off")
        stt_profile = _env("STT_PROFILE", env)
        if stt_profile not in ("tuned", "narrowband", "baseline"):
            raise SettingsError("STT_PROFILE must be tuned, narrowband or baseline")
        log_level = _env("LOG_LEVEL", env).lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError("LOG_LEVEL must be debug, info, warning or error")
        authorize_url = _env("LAYERCODE_AUTHORIZE_URL", env)
        if not authorize_url.startswith(("http://", "https://")):
            raise SettingsError("LAYERCODE_AUTHORIZE_URL must be an http(s) URL")
        webhook_url = _env("AGENT_WEBHOOK_URL", env)
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise SettingsError("AGENT_WEBHOOK_URL must be an http(s) URL")
        webhook_secret = _env("AGENT_WEBHOOK_SECRET", env)
        if webhook_url and not webhook_secret:
            raise SettingsError("AGENT_WEBHOOK_SECRET is required with AGENT_WEBHOOK_URL")
        redis_url = _url("REDIS_URL", env, ("redis", "rediss", "unix"))
        database_url = _url("DATABASE_URL", env, ("postgres", "postgresql"))
        if (redis_url or database_url) and not webhook_secret:
            raise SettingsError(
                "AGENT_WEBHOOK_SECRET must be set when REDIS_URL or DATABASE_URL is: nodes that "
                "share sessions must sign and check agent webhooks with the same secret (a "
                "secret generated per process would differ on every node)"
            )
        data_dir = Path(_env("DATA_DIR", env))
        return cls(
            host=_env("HOST", env),
            port=_port(_env("PORT", env)),
            layercode_api_key=_env("LAYERCODE_API_KEY", env),
            layercode_authorize_url=authorize_url,
            layercode_timeout=_positive_float("LAYERCODE_TIMEOUT", env),
            cors_allow_origins=_origins(_env("CORS_ALLOW_ORIGINS", env)),
            pipeline_id=_env("PIPELINE_ID", env) or "demo",
            transcription_trigger=trigger,
            can_interrupt=_bool("CAN_INTERRUPT", env),
            false_interruption_s=_milliseconds("FALSE_INTERRUPTION_MS", env) / 1000,
            interruption_min_words=_count("INTERRUPTION_MIN_WORDS", env),
            playback_lead_s=_milliseconds("PLAYBACK_LEAD_MS", env) / 1000,
            tts_engine=tts_engine,
            tts_first_phrase_words=_whole("TTS_FIRST_PHRASE_WORDS", env, 0, 20),
            tts_rest_beside_phrase=_bool("TTS_REST_BESIDE_PHRASE", env),
            tts_piper_solo=_bool("TTS_PIPER_SOLO", env),
            vad=vad,
            turn_end_model=turn_end_model,
            turn_end_rules_off=turn_end_rules_off,
            turn_end_late_words_ms=_milliseconds("TURN_END_LATE_WORDS_MS", env, 0, 1000),
            turn_end_middle_look_ms=_after_first_look_ms("TURN_END_MIDDLE_LOOK_MS", env),
            turn_end_clear_words_confirm_ms=_after_first_look_ms(
                "TURN_END_CLEAR_WORDS_CONFIRM_MS", env
            ),
            turn_end_middle_clear_words_min=_fraction(
                "TURN_END_MIDDLE_CLEAR_WORDS_MIN", env, 0.5, 1
            ),
            turn_end_look_ahead_ms=_milliseconds("TURN_END_LOOK_AHEAD_MS", env, 0, 64),
            turn_end_model_exact=turn_end_model_exact,
            speculative_answers=speculative_answers,
            stt_profile=stt_profile,
            stt_priority_lane=_bool("STT_PRIORITY_LANE", env),
            stt_worker_nice=_nice("STT_WORKER_NICE", env),
            stt_words_at_ask=_bool("STT_WORDS_AT_ASK", env),
            stt_silence_ms=_milliseconds("STT_SILENCE_MS", env, 0, 2000),
            stt_catch_up_ms=_milliseconds("STT_CATCH_UP_MS", env, 0, 5000),
            stt_decoders_per_worker=_count("STT_DECODERS_PER_WORKER", env, most=8),
            stt_max_words_per_frame=_whole("STT_MAX_WORDS_PER_FRAME", env, 0, 100),
            stt_final_from_look=_bool("STT_FINAL_FROM_LOOK", env),
            stt_max_workers=_count("STT_MAX_WORKERS", env, most=32),
            stt_phrases=_phrase_list(_env("STT_PHRASES", env)),
            echo_defence=_bool("ECHO_DEFENCE", env),
            echo_gate=_bool("ECHO_GATE", env),
            echo_max_delay_ms=_milliseconds("ECHO_MAX_DELAY_MS", env, 100, 5000),
            agent_webhook_url=webhook_url,
            agent_webhook_secret=webhook_secret or secrets.token_urlsafe(32),
            data_dir=data_dir if data_dir.is_absolute() else ROOT / data_dir,
            log_level=log_level,
            redis_url=redis_url,
            database_url=database_url,
            database_pool_size=_positive_int("DATABASE_POOL_SIZE", env),
            layercode_max_reply_kb=_positive_int("LAYERCODE_MAX_REPLY_KB", env),
            public_url=_public_url(_env("PUBLIC_URL", env)),
            allowed_hosts=_names(_env("ALLOWED_HOSTS", env)),
            trusted_proxies=_names(_env("TRUSTED_PROXIES", env)),
            authorize_secret=_env("AUTHORIZE_SECRET", env),
            authorize_rate_limit=_positive_int("AUTHORIZE_RATE_LIMIT", env),
            max_sessions=_positive_int("MAX_SESSIONS", env),
            max_metadata_bytes=_positive_int("MAX_METADATA_BYTES", env),
            idle_timeout=_positive_float("IDLE_TIMEOUT", env),
            push_to_talk_idle_timeout=_positive_float("PUSH_TO_TALK_IDLE_TIMEOUT", env),
            max_message_chars=_positive_int("MAX_MESSAGE_CHARS", env),
            max_queued_messages=_positive_int("MAX_QUEUED_MESSAGES", env),
            audio_burst_s=_positive_float("AUDIO_BURST_SECONDS", env),
            audio_flood_s=_positive_float("AUDIO_FLOOD_SECONDS", env),
            audio_address_burst_s=_seconds("AUDIO_ADDRESS_BURST_SECONDS", env, 0, 60),
            flood_penalty_s=_seconds("FLOOD_PENALTY_SECONDS", env, 0, 3600),
            history_max_turns=_positive_int("HISTORY_MAX_TURNS", env),
            history_max_days=_positive_float("HISTORY_MAX_DAYS", env),
            history_retry_s=_seconds("HISTORY_RETRY_SECONDS", env, 0, 300),
            drain_grace=_positive_float("DRAIN_GRACE", env),
        )
