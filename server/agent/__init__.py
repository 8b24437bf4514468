"""The built-in demo agent: a Layercode-style webhook served by this same server."""
