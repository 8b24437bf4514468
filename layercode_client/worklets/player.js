// Agent voice ← base64 PCM16 chunks. Runs on the audio thread: decodes each chunk (off the main
// thread), plays queued chunks back to back (gapless), drops everything on "interrupt" (and
// answers an interrupt that carries an id with where it stopped: the turn, the delta id of the
// chunk it was playing and the milliseconds of that turn it played), reports "drained" (with the
// turn and delta id of the last chunk it finished) when the queue runs dry, "started" (with the
// turn id) when the first sample of a turn plays, and its RMS level ~20 times a second.
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUES = new Uint8Array(128);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

function samples(text) {
  let length = text.length;
  while (length > 0 && text[length - 1] === "=") length--;
  const bytes = new Uint8Array((length * 3) >> 2);
  let j = 0;
  for (let i = 0; i < length; i += 4) {
    const n =
      (VALUES[text.charCodeAt(i)] << 18) |
      (VALUES[text.charCodeAt(i + 1)] << 12) |
      (VALUES[text.charCodeAt(i + 2) & 127] << 6) |
      VALUES[text.charCodeAt(i + 3) & 127];
    bytes[j++] = n >> 16;
    if (j < bytes.length) bytes[j++] = (n >> 8) & 255;
    if (j < bytes.length) bytes[j++] = n & 255;
  }
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1); // an odd last byte is dropped
}

class LayercodePlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.playing = false;
    this.last = {};
    this.current = {}; // the chunk playing now, or the last one played
    this.turnSamples = 0; // samples of `current.turnId` played so far
    this.energy = 0;
    this.counted = 0;
    this.startedTurn = undefined; // the turn whose first sample was reported
    this.port.onmessage = ({ data }) => {
      if (data.type === "audio") {
        const { turnId, deltaId } = data;
        this.queue.push({ samples: samples(data.audio), turnId, deltaId });
      } else if (data.type === "interrupt") {
        if (data.id !== undefined) {
          const { turnId = null, deltaId = null } = this.current;
          const playedMs = Math.round((this.turnSamples * 1000) / sampleRate);
          this.port.postMessage({ type: "interrupted", id: data.id, turnId, deltaId, playedMs });
        }
        this.queue = [];
        this.offset = 0;
        this.playing = false;
      }
    };
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      const chunk = this.queue[0];
      if (!chunk) {
        out[i] = 0;
        continue;
      }
      if (this.offset === 0 && chunk !== this.current) {
        if (chunk.turnId !== this.current.turnId) this.turnSamples = 0;
        this.current = chunk;
      }
      if (this.offset === 0 && chunk.turnId !== this.startedTurn) {
        this.startedTurn = chunk.turnId;
        this.port.postMessage({ type: "started", turnId: chunk.turnId ?? null });
      }
      const s = chunk.samples[this.offset++] / 0x8000;
      this.turnSamples++;
      out[i] = s;
      this.energy += s * s;
      this.playing = true;
      if (this.offset >= chunk.samples.length) {
        this.queue.shift();
        this.offset = 0;
        this.last = chunk;
      }
    }
    this.counted += out.length;
    if (this.counted >= sampleRate / 20) {
      const level = Math.min(1, Math.sqrt(this.energy / this.counted) * 4);
      this.port.postMessage({ type: "level", level });
      this.energy = 0;
      this.counted = 0;
    }
    if (this.playing && this.queue.length === 0) {
      this.playing = false;
      const { turnId = null, deltaId = null } = this.last;
      this.port.postMessage({ type: "drained", turnId, deltaId });
    }
    return true;
  }
}
registerProcessor("layercode-player", LayercodePlayer);
