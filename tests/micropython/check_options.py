"""Options checks: the seed's names in either spelling; mistakes fail by name."""

from layercode_client import ConfigurationError, LayercodeClient
from layercode_client.compat import MICROPYTHON
from layercode_client.options import snake_case
from tests.micropython.runner import raises


def test_the_seeds_camel_case_and_pythons_names_are_the_same_options():
    def on_connect(info):
        pass

    client = LayercodeClient(
        {
            "pipelineId": "pl_1",
            "sessionId": "sess_9",
            "authorizeSessionEndpoint": "/api/authorize",
            "onConnect": on_connect,
        }
    )
    assert client.options.pipeline_id == "pl_1" and client.options.on_connect is on_connect
    assert client.session_id == client.sessionId == "sess_9"
    assert client.status == "disconnected" and client.userAudioAmplitude == 0.0
    other = LayercodeClient(pipeline_id="p", authorize_session_endpoint="/a")
    # 40 ms chunks on MicroPython (the default page), 100 ms elsewhere (options.py's CHUNK_MS).
    assert other.options.metadata == {} and other.options.chunk_ms == (40 if MICROPYTHON else 100)
    assert snake_case("onUserAmplitudeChange") == "on_user_amplitude_change"
    assert snake_case("already_snake") == "already_snake"


def test_mistakes_fail_at_construction_naming_the_option():
    for options, named in (
        ({"authorize_session_endpoint": "/a"}, "pipeline_id"),
        ({"pipelineId": "p"}, "authorize_session_endpoint"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "onConect": print}, "on_conect"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "on_error": 3}, "on_error"),
        ({"pipeline_id": "p", "authorize_session_endpoint": "/a", "metadata": [1]}, "metadata"),
    ):
        raises(ConfigurationError, lambda o=options: LayercodeClient(o), named)


def test_the_chunk_length_is_a_whole_number_of_ms_within_bounds():
    def client(chunk_ms):
        return LayercodeClient(pipeline_id="p", authorize_session_endpoint="/a", chunk_ms=chunk_ms)

    assert client(10).options.chunk_ms == 10 and client(1000).options.chunk_ms == 1000
    for wrong in (0, 9, 1001, 20.5, "50", True, None):
        raises(ConfigurationError, lambda c=wrong: client(c), "chunk_ms")
