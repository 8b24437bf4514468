"""A Python LayercodeClient for the browser (PyScript / Pyodide).

`LayercodeClient` authorizes a session through the app's backend, streams the microphone to a
Layercode-compatible voice pipeline over a WebSocket, plays the agent's voice, and reports
status, amplitudes, transcripts and data messages through callbacks. Only `browser.py` touches
the browser; the rest runs (and is tested) in plain CPython.
"""

from .client import LayercodeClient, ServerError
from .devices import (
    list_audio_input_devices,
    list_audio_output_devices,
    listAudioInputDevices,
    listAudioOutputDevices,
    watch_audio_input_devices,
    watch_audio_output_devices,
    watchAudioInputDevices,
    watchAudioOutputDevices,
)
from .errors import (
    AudioError,
    AuthorizationError,
    BrowserUnsupported,
    ConfigurationError,
    ConnectionClosed,
    ConnectionFailed,
    InsecureContextError,
    InvalidArgument,
    InvalidStateError,
    LayercodeError,
    MicrophoneNotFound,
    MicrophonePermissionDenied,
    OutputDeviceNotFound,
    ProtocolError,
)

__version__ = "0.1.0"
__all__ = [
    "AudioError",
    "AuthorizationError",
    "BrowserUnsupported",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionFailed",
    "InsecureContextError",
    "InvalidArgument",
    "InvalidStateError",
    "LayercodeClient",
    "LayercodeError",
    "MicrophoneNotFound",
    "MicrophonePermissionDenied",
    "OutputDeviceNotFound",
    "ProtocolError",
    "ServerError",
    "listAudioInputDevices",
    "listAudioOutputDevices",
    "list_audio_input_devices",
    "list_audio_output_devices",
    "watchAudioInputDevices",
    "watchAudioOutputDevices",
    "watch_audio_input_devices",
    "watch_audio_output_devices",
]
