"""A client that floods audio cannot starve the others, over a real socket to the real server.

One session sends a minute of speech as fast as the socket takes it (a broken or hostile
client). The pipeline paces audio to real time plus `AUDIO_BURST_SECONDS`: the excess is
dropped with an `audio_too_fast` error, never queued for the speech recogniser, and a client
that keeps flooding is closed with 4009. Then two other sessions speak, and both are heard.
"""

from __future__ import annotations

import asyncio
import base64

from layercode_client.protocol import CloseCode
from tests.pipeline.test_conversation import hear_welcome, pipeline_server, say
from tests.support.aio import run
from tests.support.speech import speak
from tests.support.voice_client import VoiceClient

FLOOD_S = 60.0
CHUNK_S = 0.1


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


def test_a_flooding_client_is_refused_and_two_others_are_still_heard(tmp_path):
    async def scenario():
        with pipeline_server(tmp_path, tts_engine="espeak") as url:
            flooder = VoiceClient(url, input_sample_rates=[16000])
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
