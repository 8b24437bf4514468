"""The recorder worklet's WAV builder (recorder.js, asked {type: "wav"} by the browser port on
MicroPython) gives the very bytes of recording.py's `build_wav`.

Run under Node with a stand-in for the audio thread's globals, as test_recorder_js.py does (the
page runs it in Chromium: the browser recording test). `atob` is removed (an audio thread has
none) and Node 20 lacks `Uint8Array.prototype.toHex`, so this also covers its fallback.
"""

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from layercode_client.recording import Recording, build_wav
from tests.client.fakes import b64

RECORDER_JS = Path(__file__).resolve().parents[2] / "layercode_client" / "worklets" / "recorder.js"
SCRIPT = """
const fs = require("fs");
const [source, input] = process.argv.slice(1);
const posted = [];
let Recorder;
delete globalThis.atob;
globalThis.AudioWorkletProcessor = class {
  constructor() { this.port = { postMessage: (message) => posted.push(message) }; }
};
globalThis.registerProcessor = (name, processor) => { Recorder = processor; };
new Function(fs.readFileSync(source, "utf8"))();
const recorder = new Recorder({ processorOptions: { chunkSamples: 1600 } });
const { frames, pieces } = JSON.parse(fs.readFileSync(input, "utf8"));
recorder.port.onmessage({ data: { type: "wav", id: 7, frames, pieces } });
process.stdout.write(JSON.stringify(posted));
"""
HEX_PART = 2 * 65536  # hex characters per part at most (recorder.js's HEX_BYTES)


def built_by_worklet(tmp_path, frames, pieces) -> bytes:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed (./dev setup installs it)")
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"frames": frames, "pieces": pieces}))
    result = subprocess.run(
        [node, "-e", SCRIPT, str(RECORDER_JS), str(layout)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [reply] = json.loads(result.stdout)
    assert reply["type"] == "wav" and reply["id"] == 7
    assert all(len(part) <= HEX_PART for part in reply["hex"])
    return bytes.fromhex("".join(reply["hex"]))


def ramp(start, samples):
    return b64(struct.pack(f"<{samples}h", *range(start, start + samples)))


def test_a_recording_built_by_the_worklet_equals_the_python_build(tmp_path):
    recording = Recording(0, 2)
    for n in range(12):  # 8 kHz microphone chunks of 100 ms (each sample written twice) …
        recording.add_microphone(ramp(-30000 + 800 * n, 800), 8000, 100 * (n + 1))
    recording.add_microphone(ramp(5, 1600), 16000, 1900)  # … a gap, then 16 kHz
    recording.add_agent(ramp(100, 4000), 300)  # queued at 300 ms, cut at 400 ms
    recording.interrupt_agent(400)
    recording.add_agent(ramp(-7, 32001), 500)  # runs past the maximum (2 s)
    frames, pieces = recording.layout()
    assert frames == 32000 and {p[3] for p in pieces} == {1, 2}
    python = recording.wav()
    assert python == build_wav(frames, pieces)
    assert built_by_worklet(tmp_path, frames, pieces) == python


def test_overlaps_odd_lengths_and_an_empty_recording(tmp_path):
    odd = b64(struct.pack("<3h", 1, 2, 3) + b"\x07")  # a stray byte is not a sample
    pieces = [[0, 0, ramp(10, 50), 1, 40], [0, 20, odd, 3, 40], [1, 38, ramp(9, 5), 1, 99]]
    assert built_by_worklet(tmp_path, 40, pieces) == build_wav(40, pieces)
    assert built_by_worklet(tmp_path, 0, []) == build_wav(0, []) == Recording(0, 1).wav()
