"""A client that floods audio cannot starve the others, over a real socket to the real server.

One session sends a minute of speech as fast as the socket takes it (a broken or hostile
client). The pipeline paces audio to real time plus `AUDIO_BURST_SECONDS`: the excess is
dropped with an `audio_too_fast` error, never queued for the speech recogniser, and a client
that keeps flooding is closed with 4009. Then two other sessions speak, and both are heard.
The flooder's address is then barred for `FLOOD_PENALTY_SECONDS`: it cannot come back with a
fresh burst allowance per session.

Clients here come through a trusted proxy (127.0.0.1) that names them in `X-Forwarded-For`, so
each has an address of its own, as on the internet.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import httpx

from layercode_client.protocol import CloseCode
from server.app import create_app
from server.config import Settings
from server.pipeline import session
from server.pipeline.pacing import AudioPacer
from tests.pipeline.test_conversation import hear_welcome, pipeline_server, say
from tests.support.aio import run
from tests.support.servers import serve
from tests.support.speech import silence, speak
from tests.support.voice_client import VoiceClient

FLOOD_S = 60.0
CHUNK_S = 0.1
FLOODER = {"X-Forwarded-For": "10.0.0.66"}
BEHIND_PROXY = {"trusted_proxies": ("127.0.0.1",)}


async def flood(client: VoiceClient, seconds: float) -> None:
    """`seconds` of speech in 100 ms messages, as fast as the socket takes them."""
    speech = speak("Please tell me what time it is and what the weather is like today.")
    step = int(16000 * CHUNK_S) * 2
    pcm = speech * int(seconds * 16000 * 2 // len(speech) + 1)
    for offset in range(0, int(seconds * 16000 * 2), step):
        chunk = base64.b64encode(pcm[offset : offset + step]).decode("ascii")
        try:
            await client.send({"type": "client.audio", "content": chunk})
        except Exception:  # closed for flooding: the rest never leaves
            return


def pacers_stand_still(monkeypatch, sessions: int) -> None:
    """The audio pacers of the first `sessions` sessions opened get a clock that stands still.

    A flood is audio faster than real time *as the server reads it*. A server starved of CPU
    (load 15-20 on two cores) reads a flooding client's frames at about real time, so it
    rightly refuses nothing (the flooder cannot get ahead of it), and these tests waited in
    vain for `audio_too_fast` (seen failing). With the clock still, the audio arrives at once
    whatever the machine's load; pacing against real time is checked in test_pacing.py and by
    the stalled-server test here."""
    opened = []

    def pacer(*args, **kwargs):
        opened.append(True)
        if len(opened) <= sessions:
            kwargs["clock"] = still
        return AudioPacer(*args, **kwargs)

    monkeypatch.setattr(session, "AudioPacer", pacer)


def still() -> float:
    """A clock that stands still (seconds)."""
    return 1000.0


def test_a_flooding_client_is_refused_and_two_others_are_still_heard(tmp_path, monkeypatch):
    pacers_stand_still(monkeypatch, sessions=1)  # the flooder's

    async def scenario():
        with pipeline_server(tmp_path, tts_engine="espeak", **BEHIND_PROXY) as url:
            flooder = VoiceClient(url, input_sample_rates=[16000])
            await flooder.authorize(headers=FLOODER)
            await flooder.connect()
            await flood(flooder, FLOOD_S)
            error = await flooder.wait_for("error", lambda m: m["code"] == "audio_too_fast")
            assert "faster than real time" in error.message["message"]
            code, _ = await flooder.wait_closed()
            assert code == CloseCode.AUDIO_FLOOD
            await flooder.close()

            async def converse(text: str) -> str:
                async with VoiceClient(url, input_sample_rates=[16000]) as client:
                    await client.connect()
                    await hear_welcome(client)
                    return (await say(client, text))["content"]

            heard = await asyncio.gather(converse("What time is it?"), converse("Can you help me?"))
            assert "time" in heard[0] and "help" in heard[1], heard

    run(scenario())


def test_a_client_is_not_blamed_for_audio_that_waited_for_a_stalled_server(tmp_path):
    """The server's event loop is held up longer than the burst allowance while a client
    streams at real time: its audio waits in the socket and is read all at once. None of it is
    refused (`audio_too_fast`), and the session goes on: its next question is heard."""
    app = create_app(Settings(data_dir=tmp_path / "data", tts_engine="espeak"))

    async def scenario(url):
        async with VoiceClient(url, input_sample_rates=[16000]) as client:
            await client.connect()
            await hear_welcome(client)
            loop = app.state.pipeline._loop_lag_task.get_loop()
            held = threading.Event()

            def hold_up():  # the server's loop stops for longer than the 5 s burst
                held.set()
                time.sleep(7.0)

            loop.call_soon_threadsafe(hold_up)
            streaming = asyncio.create_task(client.stream(silence(9.0)))
            await asyncio.to_thread(held.wait)
            await streaming
            heard = (await say(client, "What time is it?"))["content"]
            return heard, client.of_type("error")

    with serve(app) as url:
        heard, errors = run(scenario(url))
    assert "time" in heard
    assert errors == []


def test_a_flooding_client_is_closed_once_and_nothing_it_sends_after_is_read(
    tmp_path, caplog, monkeypatch
):
    """The close wins over the frames still arriving: before, the receive loop kept reading a
    flooder's frames after its session closed it, logging the close once per frame (thousands
    of lines: a log flood) and decoding for seconds while others waited."""
    pacers_stand_still(monkeypatch, sessions=1)

    async def scenario():
        with pipeline_server(tmp_path, tts_engine="espeak") as url:
            flooder = VoiceClient(url, input_sample_rates=[16000])
            await flooder.connect()
            await flood(flooder, FLOOD_S)
            code, _ = await flooder.wait_closed()
            assert code == CloseCode.AUDIO_FLOOD
            await flooder.close()

    with caplog.at_level("WARNING", logger="server.pipeline"):
        run(scenario())
    closes = [r for r in caplog.records if "keeps arriving faster" in r.getMessage()]
    assert len(closes) == 1, len(closes)


def test_an_address_closed_for_flooding_is_barred_for_a_while(tmp_path, monkeypatch):
    """Before, each new session of a flooder started with a full burst allowance that went to
    speech recognition: reconnecting at the authorize rate limit kept the recognisers busy with
    its audio (bench/stt_flood.py: another session's transcript 20 s late). Now a 4009 bars
    the address: authorize answers 429 `audio_flood`, a key it got before is refused with 4009,
    and another address is served as before."""
    pacers_stand_still(monkeypatch, sessions=1)  # the flooder's: the spare only has a key

    async def scenario():
        with pipeline_server(tmp_path, tts_engine="espeak", **BEHIND_PROXY) as url:
            spare = VoiceClient(url, input_sample_rates=[16000])
            await spare.authorize(headers=FLOODER)  # a key kept for after the close
            flooder = VoiceClient(url, input_sample_rates=[16000])
            await flooder.authorize(headers=FLOODER)
            await flooder.connect()
            await flood(flooder, FLOOD_S)
            assert (await flooder.wait_closed())[0] == CloseCode.AUDIO_FLOOD
            await flooder.close()

            async with httpx.AsyncClient() as http:
                body = {"pipeline_id": "test"}
                again = await http.post(f"{url}/api/authorize", json=body, headers=FLOODER)
                other = await http.post(
                    f"{url}/api/authorize", json=body, headers={"X-Forwarded-For": "10.0.0.1"}
                )
            assert again.status_code == 429, again.text
            assert again.json()["code"] == "audio_flood"
            assert int(again.headers["Retry-After"]) > 0
            assert other.status_code == 200, other.text

            await spare.connect(ready=False)
            code, reason = await spare.wait_closed()
            await spare.close()
            assert code == CloseCode.AUDIO_FLOOD and "flooding" in reason, (code, reason)

    run(scenario())


def test_sessions_opened_at_once_from_one_address_share_one_burst(tmp_path, monkeypatch):
    """With AUDIO_ADDRESS_BURST_SECONDS=5, three sessions from one address each send 4 s of
    audio at once: each alone is within a session's 5 s burst, together they are past the
    address's (5 s shared, 1 s each of its own):
    audio is refused (`audio_too_fast`). Before, each session had a burst of its own: 15 s.

    The pacers' clock stands still (`pacers_stand_still`): on a loaded machine the server
    read the 120 chunks over seconds, each session rightly earning that real time, and
    nothing was refused (seen failing)."""
    same_address = {"X-Forwarded-For": "10.0.0.77"}
    settings = Settings(data_dir=tmp_path / "data", tts_engine="espeak",
                        audio_address_burst_s=5.0, **BEHIND_PROXY)  # fmt: skip
    pacers_stand_still(monkeypatch, sessions=3)
    app = create_app(settings)

    async def scenario(url):
        app.state.pipeline.address_bursts.clock = still  # before any session opens
        clients = [VoiceClient(url, input_sample_rates=[16000]) for _ in range(3)]
        for client in clients:
            await client.authorize(headers=same_address)
            await client.connect()
        chunk = base64.b64encode(silence(CHUNK_S)).decode("ascii")
        for _ in range(40):
            for client in clients:
                await client.send({"type": "client.audio", "content": chunk})
        refused = [
            asyncio.create_task(c.wait_for("error", lambda m: m["code"] == "audio_too_fast"))
            for c in clients
        ]
        done, pending = await asyncio.wait(refused, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for client in clients:
            await client.close()
        return [task.result().message for task in done]

    with serve(app) as url:
        errors = run(scenario(url))
    assert errors and "faster than real time" in errors[0]["message"]
