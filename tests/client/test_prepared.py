"""`prepare_audio()`: the player made before connect() (client.py's PreparedPlayer), with the
browser faked (tests/client/fakes.py): the session takes it, connect resumes it in the caller's
turn, a failed preparation fails the connect as opening the player there did, and every
disconnect and session end releases it."""

from __future__ import annotations

import asyncio
import base64

import pytest

from layercode_client import AudioError, BrowserUnsupported, LayercodeClient
from tests.client.fakes import FakeBrowser
from tests.support.aio import run

PCM = bytes(range(256)) * 4


def make(browser=None, **options):
    browser = browser or FakeBrowser()
    seen = {"errors": [], "statuses": []}
    client = LayercodeClient(
        browser=browser,
        pipeline_id="pl_1",
        authorize_session_endpoint="/api/authorize",
        on_error=seen["errors"].append,
        on_status_change=seen["statuses"].append,
        **options,
    )
    return client, browser, seen


async def settle(turns: int = 20) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def audio(turn_id: str) -> dict:
    content = base64.b64encode(PCM).decode()
    return {"type": "response.audio", "content": content, "turn_id": turn_id, "delta_id": "d1"}


def test_the_prepared_player_is_made_before_connect_resumed_in_its_turn_and_plays():
    async def scenario():
        client, browser, _ = make()
        client.prepare_audio()
        player = browser.player
        assert player.prepared and not player.started and player.resumed == 0
        client.prepareAudio()  # the SDK's spelling; one prepared player only
        assert browser.players == [player]
        connecting = client.connect()
        assert player.resumed == 1  # before connect()'s own work ran: inside the click
        await connecting
        browser.socket.receive(audio("t1"))
        return client, browser, player

    client, browser, player = run(scenario())
    assert client.status == "connected" and browser.players == [player]
    assert player.started and not player.closed
    assert player.played == [(PCM, "t1")] and client.agent_speaking


def test_connect_waits_for_a_preparation_still_under_way():
    async def scenario():
        browser = FakeBrowser()
        browser.player_preparing = asyncio.Event()  # the worklet still loading
        client, _, _ = make(browser)
        client.prepare_audio()
        connecting = client.connect()
        await settle()
        waiting = (client.status, len(browser.posts), len(browser.sockets))
        browser.player_preparing.set()
        await connecting
        return client, browser, waiting

    client, browser, waiting = run(scenario())
    assert waiting == ("connecting", 1, 0)  # authorized; the socket waits for the player
    assert client.status == "connected" and browser.player.started


@pytest.mark.parametrize(
    "failure",
    [
        AudioError("audio playback could not start: NotSupportedError: no output"),
        BrowserUnsupported("this browser has no AudioWorklet"),
    ],
)
def test_a_failed_preparation_fails_the_connect_as_opening_the_player_did(failure):
    async def scenario():
        browser = FakeBrowser()
        browser.player_failure = failure
        client, _, seen = make(browser)
        client.prepare_audio()
        with pytest.raises(type(failure)) as raised:
            await client.connect()
        return client, browser, seen, raised.value

    client, browser, seen, raised = run(scenario())
    assert raised is failure and seen["errors"] == [failure]
    assert client.status == "error" and browser.player.closed
    assert browser.sockets == [] and browser.microphones == []  # neither starts after it


def test_disconnect_releases_the_player_and_the_page_prepares_the_next_one():
    async def scenario():
        client, browser, _ = make()
        client.prepare_audio()
        first = browser.player
        await client.connect()
        await client.disconnect()
        assert first.closed
        client.prepare_audio()  # after the session: a new one, for the next connect
        second = browser.player
        assert second is not first and second.prepared and not second.started
        await client.connect()
        assert second.started and not second.closed
        await client.disconnect()
        client.prepare_audio()
        third = browser.player
        await client.disconnect()  # while idle: releases the prepared one too
        return browser, second, third

    browser, second, third = run(scenario())
    assert second.closed and third.closed and not third.started
    assert len(browser.players) == 3


def test_disconnect_while_the_prepared_player_starts_closes_it_quietly():
    async def scenario():
        browser = FakeBrowser()
        browser.player_preparing = asyncio.Event()  # never set: the worklet never loads
        client, _, seen = make(browser)
        client.prepare_audio()
        connecting = client.connect()
        await settle()
        await client.disconnect()
        await connecting  # returns quietly
        return client, browser, seen

    client, browser, seen = run(scenario())
    assert client.status == "disconnected" and browser.player.closed
    assert seen["errors"] == [] and browser.sockets == []


def test_a_session_ended_by_the_server_releases_the_player():
    async def scenario():
        client, browser, _ = make()
        client.prepare_audio()
        await client.connect()
        browser.socket.drop(4003, "bye")  # the agent hung up: a normal end
        await settle()
        return client, browser

    client, browser = run(scenario())
    assert client.status == "disconnected" and browser.player.closed


@pytest.mark.parametrize(
    "options", [{"audio_output": False}, {"defer_audio_init": True}], ids=["no-output", "deferred"]
)
def test_nothing_is_prepared_without_audio_output_or_with_deferred_audio(options):
    async def scenario():
        client, browser, _ = make(**options)
        client.prepare_audio()
        prepared = list(browser.players)
        await client.connect()
        return prepared, browser

    prepared, browser = run(scenario())
    assert prepared == [] and browser.players == []


def test_nothing_is_prepared_outside_a_secure_context_or_while_a_session_runs():
    async def scenario():
        insecure = FakeBrowser()
        insecure.secure_context = False
        client, _, _ = make(insecure)
        client.prepare_audio()
        client, browser, _ = make()
        await client.connect()
        client.prepare_audio()  # it has its player
        return insecure, browser

    insecure, browser = run(scenario())
    assert insecure.players == [] and len(browser.players) == 1


def test_audio_output_turned_off_releases_the_prepared_player():
    async def scenario():
        client, browser, _ = make()
        client.prepare_audio()
        prepared = browser.player
        await client.set_audio_output(False)
        await client.connect()
        return prepared, browser

    prepared, browser = run(scenario())
    assert prepared.closed and browser.players == [prepared]  # none opened for the session


def test_the_chosen_speaker_applies_to_the_prepared_player():
    async def scenario():
        client, browser, _ = make()
        await client.set_output_device("spk-1")
        client.prepare_audio()
        await client.connect()
        return browser

    assert run(scenario()).player.output_device == "spk-1"


def test_a_browser_that_cannot_prepare_opens_the_player_at_connect():
    class OldBrowser(FakeBrowser):
        prepare_player = None

    async def scenario():
        client, browser, _ = make(OldBrowser())
        client.prepare_audio()
        assert browser.players == []
        await client.connect()
        return browser

    player = run(scenario()).player
    assert not player.prepared and player.started


def test_prepare_audio_after_connect_in_the_same_turn_prepares_nothing():
    """connect() has not run yet when prepare_audio() follows it: a player prepared then would
    be taken by that connect without the resume it gave in the click's turn."""

    async def scenario():
        client, browser, _ = make()
        connecting = client.connect()
        client.prepare_audio()
        prepared_before_it_ran = [p for p in browser.players if p.prepared]
        await connecting
        return client, browser, prepared_before_it_ran

    client, browser, prepared = run(scenario())
    assert prepared == []
    assert client.status == "connected" and browser.player.started
