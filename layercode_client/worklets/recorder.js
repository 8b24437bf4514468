// Microphone → base64 PCM16 chunks. Runs on the audio thread (where Python cannot): converts the
// context's float frames (already at the session's rate) to Int16 and posts one chunk of
// `chunkSamples`, base64-encoded (the `client.audio` content as is), with its RMS level and
// zero-crossing rate (crossings per sample: the client's VAD tells voice from hiss with it).
// Told `unmuted`, it ends the chunk being filled after `resumeSamples` more (live) samples, so
// the user's first words go out at once instead of when a whole chunk has filled (up to
// `chunkSamples` later); the chunks after it are whole again. Everything else happens in Python.
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CODES = Uint8Array.from(ALPHABET, (char) => char.charCodeAt(0));

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

class LayercodeRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.resume = options.processorOptions.resumeSamples || this.size;
    this.chunk = new Int16Array(this.size);
    this.filled = 0;
    this.target = this.size; // the chunk being filled is posted at this many samples
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "unmuted") {
        this.target = Math.min(this.size, this.filled + this.resume);
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
        this.port.postMessage({ audio: base64(pcm), level, zcr });
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
