"""A Python LayercodeClient for the browser (PyScript / Pyodide).

`LayercodeClient` authorizes a session through the app's backend, streams the microphone to a
Layercode-compatible voice pipeline over a WebSocket, plays the agent's voice, and reports
status, amplitudes, transcripts and data messages through callbacks. Only `browser.py` touches
the browser; the rest runs (and is tested) in plain CPython.
"""

from .client import LayercodeClient, ServerError
from .devices import (
    list_audio_input_devices,
    listAudioInputDevices,
    watch_audio_input_devices,
    watchAudioInputDevices,
)
from .errors import (
    AudioError,
    AuthorizationError,
    ConfigurationError,
    ConnectionClosed,
    ConnectionFailed,
    InvalidArgument,
    InvalidStateError,
    LayercodeError,
    MicrophoneNotFound,
    MicrophonePermissionDenied,
    ProtocolError,
)

__version__ = "0.1.0"
__all__ = [
    "AudioError",
    "AuthorizationError",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionFailed",
    "InvalidArgument",
    "InvalidStateError",
    "LayercodeClient",
    "LayercodeError",
    "MicrophoneNotFound",
    "MicrophonePermissionDenied",
    "ProtocolError",
    "ServerError",
    "listAudioInputDevices",
    "list_audio_input_devices",
    "watchAudioInputDevices",
    "watch_audio_input_devices",
]
