"""The recorder worklet (layercode_client/worklets/recorder.js) under Node, with a stand-in for
the audio thread's globals: the chunk sizes it posts, render quantum by render quantum.

Told `unmuted`, it posts the chunk being filled after `resumeSamples` more samples instead of
when full (the user's first words go out at once; `./dev bench unmute` has the figures), and
whole chunks after it; a chunk with less than that left ends when full, as always.
"""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from layercode_client.protocol import ClientAudio

RECORDER_JS = Path(__file__).resolve().parents[2] / "layercode_client" / "worklets" / "recorder.js"
SCRIPT = """
const fs = require("fs");
const [source, plan, framing] = process.argv.slice(1);
const posted = [];
let Recorder;
globalThis.AudioWorkletProcessor = class {
  constructor() { this.port = { postMessage: (message) => posted.push(message) }; }
};
globalThis.registerProcessor = (name, processor) => { Recorder = processor; };
new Function(fs.readFileSync(source, "utf8"))();
const options = { chunkSamples: 1600, resumeSamples: 320 };
if (framing) options.framing = JSON.parse(framing);
const recorder = new Recorder({ processorOptions: options });
for (const step of JSON.parse(plan)) {
  if (step === "unmuted") recorder.port.onmessage({ data: { type: "unmuted" } });
  else for (let n = 0; n < step; n++) recorder.process([[new Float32Array(128).fill(0.25)]]);
}
// A framed chunk is a String object (Python keeps it in JS): say so, as its text.
process.stdout.write(JSON.stringify(posted.map((m) => m.frame instanceof String
  ? { ...m, frame: m.frame.valueOf(), frameIsStringObject: true } : m)));
"""


def posted_chunks(plan: list, framing: tuple[str, str] | None = None) -> list[dict]:
    """Run `plan` (a number: that many 128-sample render quanta; "unmuted": the message),
    the worklet given `framing` if any."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed (./dev setup installs it)")
    result = subprocess.run(
        [node, "-e", SCRIPT, str(RECORDER_JS), json.dumps(plan),
         json.dumps(framing) if framing else ""],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def samples(chunk: dict) -> int:
    return len(base64.b64decode(chunk["audio"])) // 2


def test_whole_chunks_then_an_early_one_after_unmute_then_whole_ones_again():
    # 25 quanta = 3200 samples: two whole chunks; 4 more quanta fill 512 of the third, then
    # "unmuted": it ends 320 samples later, at 832. Then whole chunks.
    chunks = posted_chunks([25, 4, "unmuted", 30])
    assert [samples(c) for c in chunks[:5]] == [1600, 1600, 832, 1600, 1600]
    assert all(abs(c["level"] - 1) < 1e-9 and c["zcr"] == 0 for c in chunks)  # 0.25 RMS × 4
    pcm = base64.b64decode(chunks[2]["audio"])
    assert pcm == int(0.25 * 0x7FFF).to_bytes(2, "little") * 832


def test_a_chunk_with_less_than_the_early_stretch_left_ends_when_full():
    # 11 quanta = 1408 samples of the first chunk; 192 are left, fewer than 320.
    chunks = posted_chunks([11, "unmuted", 30])
    assert [samples(c) for c in chunks[:3]] == [1600, 1600, 1600]


def test_without_unmute_every_chunk_is_whole():
    assert {samples(c) for c in posted_chunks([40])} == {1600}


def test_given_the_framing_it_posts_each_chunk_as_its_whole_client_audio_message():
    # The client sends these as they come (protocol.py's ClientAudio.framing): the message must
    # be exactly what encode() makes of the chunk's base64, and a String object (not converted
    # into a Python str on arrival).
    chunks = posted_chunks([13, "unmuted", 15], framing=ClientAudio.framing())
    assert len(chunks) == 3 and all(c["frameIsStringObject"] for c in chunks)
    for chunk, length in zip(
        chunks, [1600, 384, 1600], strict=True
    ):  # the second ended early (unmuted)
        assert "audio" not in chunk and abs(chunk["level"] - 1) < 1e-9
        content = ClientAudio.content_of(chunk["frame"])
        assert chunk["frame"] == ClientAudio(content=content).encode()
        assert base64.b64decode(content) == int(0.25 * 0x7FFF).to_bytes(2, "little") * length
