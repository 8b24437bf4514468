"""The client's options: the seed's names, in Python's spelling or the seed's camelCase.

`LayercodeClient(pipeline_id=..., on_connect=...)` and the seed's word-for-word
`LayercodeClient({"pipelineId": ..., "onConnect": ...})` build the same options. A missing
required option or an unknown one fails at construction, naming it.
"""

from .errors import ConfigurationError
from .protocol import ANY, DICT, STR, SUPPORTED_INPUT_SAMPLE_RATES, Record

CALLBACKS = (
    "on_connect",
    "on_disconnect",
    "on_error",
    "on_data_message",
    "on_message",
    "on_user_amplitude_change",
    "on_agent_amplitude_change",
    "on_status_change",
)
REQUIRED = ("pipeline_id", "authorize_session_endpoint")


def snake_case(name):
    """`authorizeSessionEndpoint` → `authorize_session_endpoint`."""
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(char)
    return "".join(out).lower()


class ClientOptions(Record):
    fields = (
        (
            ("pipeline_id", STR),
            ("authorize_session_endpoint", STR),
            ("session_id", STR, None),
            ("metadata", DICT, {}),
        )
        + tuple((name, ANY, None) for name in CALLBACKS)
        + (
            # Beyond the seed: what this client can tune.
            ("input_sample_rates", ANY, SUPPORTED_INPUT_SAMPLE_RATES),  # offered, preferred first
            ("websocket_url", STR, None),  # overrides the authorize response's and the cloud's
            ("chunk_ms", ANY, 100),  # client.audio chunk length
            ("preroll_ms", ANY, 300),  # push-to-talk: audio kept from before the button went down
            ("amplitude_hz", ANY, 15.0),  # how often the amplitude callbacks run
        )
    )

    @classmethod
    def build(cls, options=None, **kwargs):
        given = {}
        for source in (options or {}, kwargs):
            for name, value in source.items():
                given[snake_case(name)] = value
        known = [spec[0] for spec in cls.fields]
        unknown = sorted(name for name in given if name not in known)
        if unknown:
            raise ConfigurationError(f"unknown option {unknown[0]!r}")
        for name in REQUIRED:
            if not given.get(name):
                raise ConfigurationError(f"the option {name!r} is required")
        for name in CALLBACKS:
            if given.get(name) is not None and not callable(given[name]):
                raise ConfigurationError(f"the option {name!r} must be a function")
        if given.get("metadata") is None:
            given.pop("metadata", None)
        elif not isinstance(given["metadata"], dict):
            raise ConfigurationError("the option 'metadata' must be a dict")
        return cls(**given)
