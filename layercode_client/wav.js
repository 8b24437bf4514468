// The recording's WAV file, built where typed arrays copy and index in bulk (browser.py compiles
// this file once, with `new Function`, and calls `buildWav`). Python lays the recording out
// (recording.py: which base64 chunk goes where); the per-sample work happens here: decoding,
// placing each chunk on its channel, interleaving. On MicroPython the same work in Python took
// about 0.6 s per recorded second; bytes cross back to Python as a hex string (`bytes.fromhex`
// runs in C there, while copying a typed array into bytes goes element by element).
function decodeBase64(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// `pieces`: [channel (0 left, 1 right), first sample, base64 PCM16, repeat, end sample].
// Each sample is written `repeat` times (8 kHz → 16 kHz), never at or past the end sample.
function buildWav(frames, pieces) {
  const out = new Uint8Array(44 + frames * 4);
  const view = new DataView(out.buffer);
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i++) out[offset + i] = text.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + frames * 4, true);
  ascii(8, "WAVEfmt ");
  view.setUint32(16, 16, true); // the fmt chunk's size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 2, true); // channels
  view.setUint32(24, 16000, true); // frames per second
  view.setUint32(28, 64000, true); // bytes per second
  view.setUint16(32, 4, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, frames * 4, true);
  const stereo = new DataView(out.buffer, 44);
  for (const [channel, first, text, repeat, end] of pieces) {
    const pcm = new DataView(decodeBase64(text).buffer);
    const last = Math.min(end, frames);
    let frame = first;
    for (let i = 0; i + 1 < pcm.byteLength && frame < last; i += 2) {
      const sample = pcm.getInt16(i, true);
      for (let r = 0; r < repeat && frame < last; r++) {
        stereo.setInt16(frame * 4 + channel * 2, sample, true);
        frame++;
      }
    }
  }
  return out;
}

const HEX = Array.from({ length: 256 }, (_, n) => n.toString(16).padStart(2, "0"));

function toHex(bytes) {
  if (bytes.toHex) return bytes.toHex();
  const parts = new Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) parts[i] = HEX[bytes[i]];
  return parts.join("");
}

function fromHex(text) {
  if (Uint8Array.fromHex) return Uint8Array.fromHex(text);
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
  return bytes;
}

function setHex(target, offset, text) {
  target.set(fromHex(text), offset);
}
