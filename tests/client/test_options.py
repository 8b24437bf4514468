"""Options: the seed's names in either spelling; mistakes fail at construction, by name."""

from __future__ import annotations

import pytest

from layercode_client import ConfigurationError, LayercodeClient


def test_the_seeds_example_translates_word_for_word():
    def on_connect(info):
        pass

    client = LayercodeClient(
        {
            "pipelineId": "pl_1",
            "sessionId": "sess_9",
            "authorizeSessionEndpoint": "/api/authorize",
            "metadata": {"userId": "123"},
            "onConnect": on_connect,
            "onDataMessage": print,
            "onUserAmplitudeChange": print,
        }
    )
    assert client.options.pipeline_id == "pl_1"
    assert client.options.on_connect is on_connect
    assert client.options.on_user_amplitude_change is print
    assert client.session_id == client.sessionId == "sess_9"
    assert client.status == "disconnected"
    assert client.user_audio_amplitude == client.agentAudioAmplitude == 0.0


def test_pythonic_names_are_the_same_options():
    client = LayercodeClient(pipeline_id="pl_1", authorize_session_endpoint="/auth")
    assert client.options.metadata == {} and client.session_id is None
    assert client.triggerUserTurnStarted == client.trigger_user_turn_started


@pytest.mark.parametrize(
    "options,named",
    [
        ({"authorize_session_endpoint": "/a"}, "pipeline_id"),
        ({"pipelineId": "p"}, "authorize_session_endpoint"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "onConect": print}, "on_conect"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "on_error": 3}, "on_error"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "metadata": [1]}, "metadata"),
    ],
)
def test_mistakes_fail_at_construction_naming_the_option(options, named):
    with pytest.raises(ConfigurationError, match=named):
        LayercodeClient(options)
