"""`prepare_audio()` (client.py's PreparedPlayer) with fake browser ports, on any Python."""

import asyncio

from layercode_client import AudioError, LayercodeClient
from tests.client.fakes import FakeBrowser
from tests.micropython.runner import raises_async


def make(browser=None, **options):
    browser = browser or FakeBrowser()
    errors = []
    client = LayercodeClient(
        browser=browser, pipeline_id="pl_1", authorize_session_endpoint="/api/authorize",
        on_error=errors.append, **options,
    )  # fmt: skip
    return client, browser, errors


async def test_the_prepared_player_is_resumed_by_connect_and_becomes_the_sessions():
    client, browser, _ = make()
    client.prepare_audio()
    player = browser.player
    assert player.prepared and not player.started
    connecting = client.connect()
    assert player.resumed == 1
    await connecting
    assert client.status == "connected" and browser.players == [player] and player.started
    await client.disconnect()
    assert player.closed


async def test_a_failed_preparation_is_the_connects_error():
    browser = FakeBrowser()
    failure = AudioError("audio playback could not start: no output")
    browser.player_failure = failure
    client, _, errors = make(browser)
    client.prepare_audio()
    await raises_async(AudioError, client.connect(), "no output")
    assert errors == [failure] and client.status == "error" and browser.player.closed
    assert browser.sockets == [] and browser.microphones == []


async def test_disconnect_while_the_preparation_is_under_way_closes_it():
    browser = FakeBrowser()
    browser.player_preparing = asyncio.Event()
    client, _, errors = make(browser)
    client.prepare_audio()
    connecting = client.connect()
    for _ in range(20):
        await asyncio.sleep(0)
    await client.disconnect()
    await connecting
    assert client.status == "disconnected" and browser.player.closed and errors == []


async def test_idle_disconnect_releases_it_and_deferred_audio_prepares_nothing():
    client, browser, _ = make()
    client.prepare_audio()
    await client.disconnect()
    assert browser.player.closed
    client, browser, _ = make(defer_audio_init=True)
    client.prepare_audio()
    assert browser.players == []
