"""The built-in demo agent: a Layercode-style webhook (Webhook SSE API) served at /api/agent."""
