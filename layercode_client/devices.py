"""Microphones: listing them, following changes, and moving the session to another one.

`InputDevices` is the client's part: which device the user chose (or the system default), and
what to do when the browser's device list changes (`devicechange`): report the new list through
`on_devices_changed`, and when the device in use went away — or the default changed while the
client follows it — move the microphone to the default without touching the session, then call
`on_device_switched(device_id)`. The module functions are the SDK's `listAudioInputDevices` and
`watchAudioInputDevices`, for a page that wants a device picker before connecting, and their
counterparts for outputs (beyond the SDK: `set_output_device`).

Devices are dicts with the SDK's keys (`deviceId`, `groupId`, `kind`, `label`, `default`) and
`device_id` too. Browser access is the `Browser` port's (ports.py).
"""

from .compat import is_awaitable

DEFAULT_DEVICE = "default"


def _page_browser(browser):
    if browser is not None:
        return browser
    from .browser import PageBrowser  # only importable in a PyScript page

    return PageBrowser()


async def list_audio_input_devices(request_permission=False, *, browser=None):
    """The audio input devices. Labels are empty until microphone permission was granted;
    `request_permission=True` asks for it first."""
    return await _page_browser(browser).list_input_devices(request_permission)


def watch_audio_input_devices(callback, *, browser=None):
    """Call `callback(devices)` now and whenever the devices change; returns `stop()`."""
    if not callable(callback):
        from .errors import InvalidArgument

        raise InvalidArgument("watch_audio_input_devices needs a function")
    return _page_browser(browser).watch_devices(callback)


async def list_audio_output_devices(request_permission=False, *, browser=None):
    """The audio output devices (speakers), for `set_output_device`; `kind` `audiooutput`."""
    return await _page_browser(browser).list_output_devices(request_permission)


def watch_audio_output_devices(callback, *, browser=None):
    """Call `callback(devices)` with the outputs now and whenever they change; returns `stop()`."""
    if not callable(callback):
        from .errors import InvalidArgument

        raise InvalidArgument("watch_audio_output_devices needs a function")
    return _page_browser(browser).watch_devices(callback, "audiooutput")


listAudioInputDevices = list_audio_input_devices
watchAudioInputDevices = watch_audio_input_devices
listAudioOutputDevices = list_audio_output_devices
watchAudioOutputDevices = watch_audio_output_devices


def default_device_id(devices):
    """The id of the device the system uses by default (Chrome lists it as `default`)."""
    for device in devices:
        if device.get("default"):
            return device.get("deviceId")
    return devices[0].get("deviceId") if devices else None


class InputDevices:
    """The client's microphone choice and its reaction to device changes."""

    def __init__(self, client):
        self._client = client
        self.preferred = None  # a deviceId; None follows the system default
        self._stop_watching = None
        self._known_default = None

    async def list(self, request_permission=False):
        return await self._client._browser_().list_input_devices(request_permission)

    async def choose(self, device_id):
        self.preferred = None if device_id == DEFAULT_DEVICE else device_id
        await self._client._switch_microphone(device_id)

    def watch(self):
        """Follow device changes while the microphone runs (idempotent)."""
        if self._stop_watching is not None or self._client._microphone is None:
            return
        watch = getattr(self._client._browser_(), "watch_devices", None)
        if watch is not None:
            self._stop_watching = watch(self._on_change)

    def unwatch(self):
        if self._stop_watching is not None:
            stop, self._stop_watching = self._stop_watching, None
            stop()
        self._known_default = None

    def _on_change(self, devices):
        self._client._call("on_devices_changed", devices)
        default = default_device_id(devices)
        previous, self._known_default = self._known_default, default
        ids = [d.get("deviceId") for d in devices]
        if self.preferred is not None and self.preferred not in ids:
            self.preferred = None  # the chosen one went away: the default takes over
        elif self.preferred is not None or previous is None or previous == default:
            return  # nothing the session uses changed
        client = self._client
        result = client._switch_microphone(default or DEFAULT_DEVICE)
        if is_awaitable(result):
            client._own(result, "device-switch")
