"""Typed errors with stable codes, shared by the browser client and the server.

Every error a user or program can meet carries a `code` that never changes (so callers can
branch on it and the page can word it for a person) and says whether retrying can help.
When wrapping a browser or network failure, raise with `from` so the cause is kept (MicroPython
parses `from` but keeps no chain: messages name the cause too).
"""


class LayercodeError(Exception):
    """Base of every error this package raises."""

    code = "layercode_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ConfigurationError(LayercodeError):
    """An option is missing or wrong; fix the code that builds the client."""

    code = "configuration_error"


class InvalidStateError(LayercodeError):
    """A method was called in a state where it cannot work; the message says what to call first."""

    code = "invalid_state"


class InvalidArgument(LayercodeError):
    """A method got an argument it cannot use; the message says what it needs."""

    code = "invalid_argument"


class ProtocolError(LayercodeError):
    """A frame or payload does not follow the wire protocol."""

    code = "protocol_error"


class UnknownMessageType(ProtocolError):
    """A well-formed frame of a type this version does not know: log it and carry on."""

    code = "unknown_message_type"

    def __init__(self, message_type: str):
        super().__init__(f"unknown message type {message_type!r}")
        self.message_type = message_type


class AuthorizationError(LayercodeError):
    """The authorize endpoint refused the session or could not be reached."""

    code = "authorization_failed"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message, retryable=status is None or status >= 500)
        self.status = status
        self.reason = reason

    def to_dict(self) -> dict:
        details = super().to_dict()
        details.update(status=self.status, reason=self.reason)
        return details


class MicrophonePermissionDenied(LayercodeError):
    code = "microphone_permission_denied"


class MicrophoneNotFound(LayercodeError):
    code = "microphone_not_found"


class AudioError(LayercodeError):
    """The browser's audio system failed (AudioContext, worklet, playback)."""

    code = "audio_error"


class ConnectionFailed(LayercodeError):
    """The WebSocket could not be opened."""

    code = "websocket_failed"
    retryable = True


class ConnectionClosed(LayercodeError):
    """The WebSocket closed abnormally; `close_code` and `reason` say how."""

    code = "websocket_closed"
    retryable = True

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = ""):
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason

    def to_dict(self) -> dict:
        details = super().to_dict()
        details.update(close_code=self.close_code, reason=self.reason)
        return details


class InsecureContextError(LayercodeError):
    """The page is not a secure context, so the browser offers no microphone or audio worklets.

    Browsers give `getUserMedia` and AudioWorklet only to pages served over HTTPS or from
    localhost; a page opened over plain HTTP from another machine (a phone on the LAN) has
    neither."""

    code = "insecure_context"


class BrowserUnsupported(LayercodeError):
    """The browser lacks a feature the client needs (AudioWorklet, `AudioContext.setSinkId`)."""

    code = "browser_unsupported"


class OutputDeviceNotFound(LayercodeError):
    """The audio output device asked for is not (or no longer) there."""

    code = "output_device_not_found"
