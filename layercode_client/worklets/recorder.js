// Microphone → base64 PCM16 chunks. Runs on the audio thread (where Python cannot): converts the
// context's float frames (already at the session's rate) to Int16 and posts one chunk of
// `chunkSamples`, base64-encoded (the `client.audio` content as is), with its RMS level and
// zero-crossing rate (crossings per sample: the client's VAD tells voice from hiss with it).
// Given `framing` ([before, after]: protocol.py's `ClientAudio.framing()`), it posts the whole
// `client.audio` message instead, `frame`, as a String object: Python hands it to the socket
// as it came, never building it nor copying its text in and out (most of the page's CPU per
// chunk on MicroPython); a primitive string would be converted to a Python str on arrival.
// Told `unmuted`, it ends the chunk being filled after `resumeSamples` more (live) samples, so
// the user's first words go out at once instead of when a whole chunk has filled (up to
// `chunkSamples` later); the chunks after it are whole again. Everything else happens in Python,
// except the per-sample work of a recording's WAV file: asked {type: "wav", id, frames, pieces}
// it builds the stereo file (`buildWav`, the bytes of recording.py's `build_wav`) and answers
// {type: "wav", id, hex: [...]}, the file as hex strings of at most `HEX_BYTES` bytes each
// (MicroPython reads hex in C; a typed array it copies element by element). On MicroPython the
// same work in Python takes about 0.5 s per recorded second (`./dev bench recording`).
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CODES = Uint8Array.from(ALPHABET, (char) => char.charCodeAt(0));
const VALUES = new Uint8Array(128);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;
const HEX = Array.from({ length: 256 }, (_, n) => n.toString(16).padStart(2, "0"));
const HEX_BYTES = 65536;

// Base64 into a byte buffer, then one string: no per-character string building on the
// audio thread.
function base64(bytes) {
  const out = new Uint8Array(Math.ceil(bytes.length / 3) * 4);
  let j = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out[j++] = CODES[(n >> 18) & 63];
    out[j++] = CODES[(n >> 12) & 63];
    out[j++] = CODES[(n >> 6) & 63];
    out[j++] = CODES[n & 63];
  }
  if (bytes.length % 3) out[out.length - 1] = 61; // "="
  if (bytes.length % 3 === 1) out[out.length - 2] = 61;
  let text = "";
  for (let k = 0; k < out.length; k += 8192) {
    text += String.fromCharCode.apply(null, out.subarray(k, k + 8192));
  }
  return text;
}

// Base64 → bytes (an audio thread has no atob).
function decode(text) {
  let length = text.length;
  while (length > 0 && text[length - 1] === "=") length--;
  const bytes = new Uint8Array((length * 3) >> 2);
  let j = 0;
  for (let i = 0; i < length; i += 4) {
    const n =
      (VALUES[text.charCodeAt(i) & 127] << 18) |
      (VALUES[text.charCodeAt(i + 1) & 127] << 12) |
      (VALUES[text.charCodeAt(i + 2) & 127] << 6) |
      VALUES[text.charCodeAt(i + 3) & 127];
    bytes[j++] = n >> 16;
    if (j < bytes.length) bytes[j++] = (n >> 8) & 255;
    if (j < bytes.length) bytes[j++] = n & 255;
  }
  return bytes;
}

// The recording's WAV: 16-bit stereo at 16 kHz, `frames` frames. `pieces` (recording.py lays
// them out, in order: a later one overwrites an earlier one): [channel (0 left, 1 right), first
// frame, base64 PCM16, repeat, end frame]. Each sample is written `repeat` times (8 kHz →
// 16 kHz), never at or past the end frame.
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
    const pcm = new DataView(decode(text).buffer);
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

function toHex(bytes) {
  if (bytes.toHex) return bytes.toHex();
  const parts = new Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) parts[i] = HEX[bytes[i]];
  return parts.join("");
}

// `bytes` as hex strings of at most HEX_BYTES bytes each.
function hexParts(bytes) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += HEX_BYTES) {
    parts.push(toHex(bytes.subarray(i, i + HEX_BYTES)));
  }
  return parts;
}

class LayercodeRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.resume = options.processorOptions.resumeSamples || this.size;
    this.framing = options.processorOptions.framing || null;
    this.chunk = new Int16Array(this.size);
    this.filled = 0;
    this.target = this.size; // the chunk being filled is posted at this many samples
    this.port.onmessage = (event) => {
      const data = event.data || {};
      if (data.type === "unmuted") {
        this.target = Math.min(this.size, this.filled + this.resume);
      } else if (data.type === "wav") {
        const hex = hexParts(buildWav(data.frames, data.pieces));
        this.port.postMessage({ type: "wav", id: data.id, hex });
      }
    };
    this.energy = 0;
    this.crossings = 0;
    this.last = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.energy += s * s;
      if ((s < 0) !== (this.last < 0)) this.crossings++;
      this.last = s;
      if (this.filled >= this.target) {
        const level = Math.min(1, Math.sqrt(this.energy / this.filled) * 4);
        const zcr = this.crossings / this.filled;
        const pcm = new Uint8Array(this.chunk.buffer, 0, this.filled * 2);
        if (this.framing) {
          const frame = new String(this.framing[0] + base64(pcm) + this.framing[1]);
          this.port.postMessage({ frame, level, zcr });
        } else {
          this.port.postMessage({ audio: base64(pcm), level, zcr });
        }
        this.filled = 0;
        this.target = this.size;
        this.energy = 0;
        this.crossings = 0;
      }
    }
    return true;
  }
}
registerProcessor("layercode-recorder", LayercodeRecorder);
