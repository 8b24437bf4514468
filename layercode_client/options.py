"""The client's options: the seed's names, in Python's spelling or the seed's camelCase.

`LayercodeClient(pipeline_id=..., on_connect=...)` and the seed's word-for-word
`LayercodeClient({"pipelineId": ..., "onConnect": ...})` build the same options. A missing
required option or an unknown one fails at construction, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigurationError
from .protocol import SUPPORTED_INPUT_SAMPLE_RATES

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


def snake_case(name: str) -> str:
    """`authorizeSessionEndpoint` → `authorize_session_endpoint`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass
class ClientOptions:
    pipeline_id: str
    authorize_session_endpoint: str
    session_id: str | None = None
    metadata: dict = field(default_factory=dict)
    on_connect: Callable | None = None
    on_disconnect: Callable | None = None
    on_error: Callable | None = None
    on_data_message: Callable | None = None
    on_message: Callable | None = None
    on_user_amplitude_change: Callable | None = None
    on_agent_amplitude_change: Callable | None = None
    on_status_change: Callable | None = None
    # Beyond the seed: what this client can tune.
    input_sample_rates: tuple[int, ...] = SUPPORTED_INPUT_SAMPLE_RATES  # offered, preferred first
    websocket_url: str | None = None  # overrides the authorize response's and the cloud's
    chunk_ms: int = 100  # client.audio chunk length
    preroll_ms: int = 300  # push-to-talk: audio kept from before the button went down
    amplitude_hz: float = 15.0  # how often the amplitude callbacks run

    @classmethod
    def build(cls, options: dict | None = None, **kwargs: Any) -> ClientOptions:
        given: dict[str, Any] = {}
        for source in (options or {}, kwargs):
            for name, value in source.items():
                given[snake_case(name)] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
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
