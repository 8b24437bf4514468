"""WebSocket close codes added by the hardening work (docs/protocol-additions.md lists them all).

They extend `layercode_client.protocol.CloseCode` (1000-1011, 4001-4003, 4008) and belong
beside it once that module's port to plain classes lands; until then the server imports them
from here. A client reconnects (authorizing again, resuming with its token) after 1012 and 1013;
the others are final for that connection.
"""

SERVICE_RESTART = 1012  # the server is draining for a restart: authorize again and resume
TRY_AGAIN_LATER = 1013  # this node has MAX_SESSIONS sessions: try again shortly
CONVERSATION_DELETED = 4004  # DELETE /api/conversations/{id} ended this conversation
IDLE_TIMEOUT = 4008  # nothing received for IDLE_TIMEOUT seconds
AUDIO_FLOOD = 4009  # client.audio kept arriving far faster than real time
ORIGIN_REFUSED = 4010  # the page's Origin (or the Host) is not allowed on this server
SESSION_REPLACED = 4011  # a newer connection took over this session
