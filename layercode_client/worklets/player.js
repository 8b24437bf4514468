// Agent voice ← PCM16 chunks. Runs on the audio thread: plays queued chunks back to back
// (gapless), drops everything on "interrupt", reports "drained" (with the turn and delta id of
// the last chunk it finished) when the queue runs dry, and its RMS level ~20 times a second.
class LayercodePlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.playing = false;
    this.last = {};
    this.energy = 0;
    this.counted = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === "audio") {
        const { turnId, deltaId } = data;
        this.queue.push({ samples: new Int16Array(data.pcm), turnId, deltaId });
      } else if (data.type === "interrupt") {
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
      const s = chunk.samples[this.offset++] / 0x8000;
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
