// Microphone → PCM16 chunks. Runs on the audio thread (where Python cannot): converts the
// context's float frames (already at the session's rate) to Int16 and posts one chunk of
// `chunkSamples` with its RMS level. Everything else happens in Python.
class LayercodeRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.chunk = new Int16Array(this.size);
    this.filled = 0;
    this.energy = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.energy += s * s;
      if (this.filled === this.size) {
        const level = Math.min(1, Math.sqrt(this.energy / this.size) * 4);
        this.port.postMessage({ pcm: this.chunk.buffer, level }, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.size);
        this.filled = 0;
        this.energy = 0;
      }
    }
    return true;
  }
}
registerProcessor("layercode-recorder", LayercodeRecorder);
