"""Which host names and page origins this server answers to, and the URL clients reach it at.

DNS rebinding: a page on `evil.example` can point its own name at 127.0.0.1 and then call this
server from the victim's browser as "same origin" — the request carries `Host: evil.example`.
So `/api/authorize` and the WebSocket answer only to allowed host names (loopback names, `HOST`,
`PUBLIC_URL`'s host, `ALLOWED_HOSTS`), and `websocket_url` is built from `PUBLIC_URL` or from a
Host that passed that check, never from whatever Host a caller sent.

Origins: a browser page may call `/api/authorize` or open the WebSocket when its origin is this
server's own (an allowed host) or listed in `CORS_ALLOW_ORIGINS`. A request without `Origin` is
not from a browser page (a backend, `curl`, the test voice client) and is allowed: the Origin
check protects browsers' users, it is not authentication.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from .config import Settings


def host_name(host_header: str) -> str:
    """`example.com:8000` → `example.com`; `[::1]:80` → `::1`; lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def host_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    if "*" in settings.allowed_hosts:
        return True
    return host_name(connection.headers.get("host", "")) in settings.host_allowlist


def origin_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    """No Origin (not a browser page), an allowlisted origin, or one on an allowed host."""
    origin = connection.headers.get("origin")
    if origin is None or "*" in settings.cors_allow_origins:
        return True
    origin = origin.rstrip("/")
    if origin in settings.cors_allow_origins:
        return True
    if settings.public_url and origin == _origin_of(settings.public_url):
        return True
    # Same origin: the page was served by this server under a host name it answers to.
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[" and the like: not an origin any browser sends
        return False
    own = connection.headers.get("host", "")
    return (
        parts.scheme in ("http", "https")
        and parts.netloc.lower() == own.lower()
        and host_allowed(connection, settings)
    )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)  # PUBLIC_URL, validated at start
    return f"{parts.scheme}://{parts.netloc}"


def websocket_url(connection: HTTPConnection, settings: Settings, path: str) -> str:
    """Where clients open the WebSocket: under `PUBLIC_URL`, else on the (allowed) Host."""
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
    scheme = "wss" if connection.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{connection.headers.get('host', connection.url.netloc)}{path}"
