"""`POST /api/authorize`: the seed's session authorization endpoint.

The browser never holds the Layercode API key. It POSTs `{pipeline_id, metadata, session_id?}`
here; this endpoint validates the body and asks an `Authorizer` for a session: with
`LAYERCODE_API_KEY` set, `CloudAuthorizer` forwards the documented fields to Layercode's cloud
with the Bearer key and returns Layercode's JSON unchanged; otherwise the embedded pipeline's
authorizer answers. Every failure is a JSON `{"error": ..., "code": ...}` a person can act on,
with a status that says whose fault it is (400/403/413/429 the caller's, 502/504 Layercode's,
503 the server's state: full, draining or misconfigured). No input makes it answer 500.

Before the body is read: the Host must be one this server answers to and the Origin allowed
(hosts.py), the server must not be draining, and the client address within its rate
(limits.py). The body is parsed strictly: no NaN/Infinity, no lone surrogates, at most
`MAX_JSON_DEPTH` levels, metadata within `MAX_METADATA_BYTES`.

The cloud proxy is held to a total deadline (`LAYERCODE_TIMEOUT` covers connect, answer and
body, so an upstream dripping a byte at a time is cut off), reads at most
`LAYERCODE_MAX_REPLY_KB`, follows no redirect (502), and never relays the API key: a reason is
redacted (in any letter case) before it is cut or logged, and a 2xx body that contains the key
anywhere is answered 502 instead of being passed on.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from layercode_client.errors import ProtocolError
from layercode_client.protocol import (
    CLOUD_AGENT_AUTHORIZE_URL,
    CLOUD_PIPELINE_AUTHORIZE_URL,
    AuthorizeRequest,
)

from .errors import ServerError
from .hosts import host_allowed, origin_allowed
from .limits import client_address
from .logs import redact

log = logging.getLogger("server.authorize")

MAX_BODY_BYTES = 64 * 1024
MAX_REASON_CHARS = 300
MAX_JSON_DEPTH = 32  # metadata nested deeper than this is refused (400)
SECRET_HEADER = "x-authorize-secret"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ApiError(ServerError):
    """An error answered as `{"error": message, "code": code}` with `status`; the code is
    the one given, else the status's (below)."""

    CODES: ClassVar[dict[int, str]] = {
        400: "bad_request",
        403: "forbidden",
        404: "not_found",
        413: "body_too_large",
        429: "rate_limited",
        502: "upstream_error",
        503: "upstream_unavailable",
        504: "upstream_timeout",
    }

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message, code=code or self.CODES.get(status, f"http_{status}"),
                         retryable=status >= 500 or status == 429)  # fmt: skip
        self.status = status
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": self.message, "code": self.code}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(frozen=True)
class Proof:
    """What the caller showed to resume (or delete) a conversation."""

    resume_token: str | None = None
    vouched: bool = False  # the app's backend presented AUTHORIZE_SECRET


class Authorizer(Protocol):
    async def authorize(
        self, request: AuthorizeRequest, http: Request, proof: Proof
    ) -> Response: ...


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_json(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) values nested deeper than `max_depth` or holding lone surrogates.

    Iterative, so a hostile body cannot exhaust the stack; surrogates are refused because no
    UTF-8 encoder (ours, httpx's, SQLite's) can write them.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                raise ApiError(400, "the request body holds a lone UTF-16 surrogate (\\ud800)")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= max_depth:
            raise ApiError(400, f"the request body is nested deeper than {max_depth} levels")
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The parsed, checked JSON body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit // 1024} KiB")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"the request body is larger than {limit // 1024} KiB")
    except ClientDisconnect:
        raise ApiError(400, "the client went away while sending the body") from None
    if not body.strip():
        raise ApiError(400, "the request body is empty: send JSON with a pipeline_id")
    try:
        parsed = json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400, "the request body is not valid JSON (NaN and Infinity are not JSON)"
        ) from None
    check_json(parsed)
    return parsed


def _metadata_size(metadata: dict) -> int:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def proof_from(request: Request, body: dict, secret: str) -> Proof:
    token = body.get("resume_token")
    if token is not None and not isinstance(token, str):
        raise ApiError(400, "'resume_token' must be a string")
    return Proof(resume_token=token, vouched=secret_presented(request, secret))


def secret_presented(request: Request, secret: str) -> bool:
    presented = request.headers.get(SECRET_HEADER, "")
    return bool(secret) and hmac.compare_digest(
        presented.encode("utf-8", "replace"), secret.encode()
    )


# -- the cloud proxy ------------------------------------------------------------------------------


def _reason_from(status: int, content: bytes, secret: str) -> str:
    """A short, human, redacted reason from Layercode's error body (its `error`, or the text)."""
    text = content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = None
    reason = text
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str) and body[key].strip():
                reason = body[key]
                break
    # Redact first, on the whole text: cutting first could leave part of the key behind.
    reason = redact(reason, (secret,)).strip()
    return reason[:MAX_REASON_CHARS] if reason else f"HTTP {status}"


def _contains(content: bytes, secret: str) -> bool:
    """Whether the body carries the secret: raw, in any case, or behind JSON escapes."""
    text = content.decode("utf-8", "replace")
    if secret.lower() in text.lower():
        return True
    try:
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
    except (ValueError, RecursionError, TypeError):
        return False
    return secret.lower() in decoded.lower()


class CloudAuthorizer:
    """Authorizes sessions with Layercode's cloud (the seed's backend, in Python)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float,
        client: httpx.AsyncClient,
        max_reply_bytes: int = 256 * 1024,
    ):
        self.url = url
        self.api_key = api_key
        self.timeout = timeout
        self.client = client
        self.max_reply_bytes = max_reply_bytes

    def url_for(self, request: AuthorizeRequest) -> str:
        """The newer agents endpoint for `agent_id` requests, unless a URL was configured."""
        if (
            request.agent_id
            and not request.pipeline_id
            and self.url == CLOUD_PIPELINE_AUTHORIZE_URL
        ):
            return CLOUD_AGENT_AUTHORIZE_URL
        return self.url

    async def _exchange(self, url: str, body: dict) -> tuple[int, bytes]:
        """POST and read the answer, at most `max_reply_bytes` of it."""
        async with self.client.stream(
            "POST",
            url,
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=self.timeout,
            follow_redirects=False,
        ) as answer:
            content = bytearray()
            async for chunk in answer.aiter_raw():
                content += chunk
                if len(content) > self.max_reply_bytes:
                    log.warning("Layercode's answer exceeded %d bytes", self.max_reply_bytes)
                    raise ApiError(
                        502,
                        f"Layercode's answer was larger than {self.max_reply_bytes // 1024} KiB",
                    )
            return answer.status_code, bytes(content)

    async def authorize(self, request: AuthorizeRequest, http: Request, proof: Proof) -> Response:
        url = self.url_for(request)
        started = time.monotonic()
        try:
            # One deadline for the whole exchange: httpx's timeout is per read, so an upstream
            # sending a byte a second would otherwise never time out.
            async with asyncio.timeout(self.timeout):
                status, content = await self._exchange(url, request.cloud_body())
        except (TimeoutError, httpx.TimeoutException):
            log.warning("Layercode did not answer in %g s", self.timeout)
            raise ApiError(
                504, f"Layercode did not answer within {self.timeout:g} seconds; try again"
            ) from None
        except httpx.HTTPError as error:
            reason = redact(str(error) or type(error).__name__, (self.api_key,))[:MAX_REASON_CHARS]
            log.warning("Layercode could not be reached: %s", reason)
            raise ApiError(
                504, f"Layercode could not be reached ({reason}); check the network and try again"
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        if 300 <= status < 400:
            log.warning("Layercode answered with a redirect (HTTP %d); not followed", status)
            raise ApiError(
                502, f"Layercode answered with a redirect (HTTP {status}); check the URL"
            )
        if status >= 400:
            reason = _reason_from(status, content, self.api_key)
            log.warning("Layercode refused the session: HTTP %d: %s", status, reason)
            raise ApiError(502, f"Layercode refused the session (HTTP {status}): {reason}")
        if _contains(content, self.api_key):
            log.error("Layercode's answer contained our API key; it was not passed on")
            raise ApiError(502, "Layercode's answer could not be passed on safely")
        try:
            body = json.loads(content)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            log.warning("Layercode answered HTTP %d with a body that is not JSON", status)
            raise ApiError(502, "Layercode answered with something that is not a JSON object")
        log.info("session authorized by Layercode in %.0f ms", elapsed_ms)
        # Unchanged: the very bytes Layercode sent.
        return Response(content, media_type="application/json")


# -- the endpoint ---------------------------------------------------------------------------------


async def check_caller(request: Request) -> None:
    """Host, Origin, draining and rate: what every call is checked for before its body."""
    state = request.app.state
    settings = state.settings
    if not host_allowed(request, settings):
        raise ApiError(
            403,
            f"this server does not answer to the host {request.headers.get('host', '')[:100]!r}; "
            "set PUBLIC_URL or ALLOWED_HOSTS on the server",
            "host_not_allowed",
        )
    if not origin_allowed(request, settings):
        raise ApiError(
            403,
            f"origin {request.headers.get('origin', '')[:100]} may not call this endpoint; "
            "add it to CORS_ALLOW_ORIGINS on the server",
            "origin_not_allowed",
        )
    if state.draining:
        raise ApiError(
            503, "the server is draining for a restart; try again shortly", "draining",
            {"Retry-After": "5"},
        )  # fmt: skip
    address = client_address(request, settings.trusted_proxies)
    retry_after = await state.rate_limiter.hit(address)
    if retry_after is not None:
        raise ApiError(
            429,
            f"too many requests from this address (AUTHORIZE_RATE_LIMIT is "
            f"{settings.authorize_rate_limit} a minute); retry in {retry_after:g} s",
            "rate_limited",
            {"Retry-After": str(int(retry_after))},
        )


def check_flood_penalty(request: Request) -> None:
    """An address whose session was closed for flooding audio gets no new session for a
    while (limits.FloodPenalty)."""
    state = request.app.state
    barred = state.flood_penalty.remaining(client_address(request, state.settings.trusted_proxies))
    if barred is not None:
        raise ApiError(
            429,
            f"a session from this address was closed for flooding audio (4009); retry in "
            f"{barred:g} s (FLOOD_PENALTY_SECONDS)",
            "audio_flood",
            {"Retry-After": str(int(barred))},
        )


async def authorize(request: Request) -> Response:
    settings = request.app.state.settings
    try:
        await check_caller(request)
        check_flood_penalty(request)
        body = await read_json_body(request)
        try:
            auth_request = AuthorizeRequest.from_json(body)
        except ProtocolError as error:
            raise ApiError(400, error.message) from None
        if _metadata_size(auth_request.metadata) > settings.max_metadata_bytes:
            raise ApiError(
                413,
                f"'metadata' is larger than {settings.max_metadata_bytes} bytes of JSON "
                "(MAX_METADATA_BYTES)",
            )
        proof = proof_from(request, body, settings.authorize_secret)
        return await request.app.state.authorizer.authorize(auth_request, request, proof)
    except ApiError as error:
        return error.response()
