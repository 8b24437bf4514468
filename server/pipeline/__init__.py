"""The embedded, Layercode-compatible voice pipeline: turn detection, STT, agent webhook, TTS."""
