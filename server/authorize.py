"""`POST /api/authorize`: the seed's session authorization endpoint.

The browser never holds the Layercode API key. It POSTs `{pipeline_id, metadata, session_id?}`
here; this endpoint validates the body and asks an `Authorizer` for a session: with
`LAYERCODE_API_KEY` set, `CloudAuthorizer` forwards the documented fields to Layercode's cloud
with the Bearer key and returns Layercode's JSON unchanged; otherwise the embedded pipeline's
authorizer answers. Every failure is a JSON `{"error": ...}` a person can act on, with a status
that says whose fault it is (400/413 the caller's, 502/504 Layercode's, 503 configuration's).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, ClassVar, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from layercode_client.errors import ProtocolError
from layercode_client.protocol import (
    CLOUD_AGENT_AUTHORIZE_URL,
    CLOUD_PIPELINE_AUTHORIZE_URL,
    AuthorizeRequest,
)

from .errors import ServerError
from .logs import redact

log = logging.getLogger("server.authorize")

MAX_BODY_BYTES = 64 * 1024
MAX_REASON_CHARS = 300


class ApiError(ServerError):
    """An error answered as `{"error": message}` with `status`."""

    CODES: ClassVar[dict[int, str]] = {
        400: "bad_request",
        404: "not_found",
        413: "body_too_large",
        502: "upstream_error",
        503: "upstream_unavailable",
        504: "upstream_timeout",
    }

    def __init__(self, status: int, message: str):
        super().__init__(message, code=self.CODES.get(status, f"http_{status}"),
                         retryable=status >= 500)  # fmt: skip
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)


class Authorizer(Protocol):
    async def authorize(self, request: AuthorizeRequest, http: Request) -> Response: ...


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The parsed JSON body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit // 1024} KiB")
    if not body.strip():
        raise ApiError(400, "the request body is empty: send JSON with a pipeline_id")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None


def origin_allowed(request: Request, allowed: tuple[str, ...]) -> bool:
    """Same origin, an allowlisted origin, or no Origin header (not a browser page)."""
    origin = request.headers.get("origin")
    if origin is None or "*" in allowed:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    return origin.rstrip("/") in (own, *allowed)


def _reason_from(response: httpx.Response) -> str:
    """A short, human reason from Layercode's error body (its `error` field, or the text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str) and body[key].strip():
                return body[key].strip()[:MAX_REASON_CHARS]
    text = response.text.strip()
    return text[:MAX_REASON_CHARS] if text else response.reason_phrase or "no reason given"


class CloudAuthorizer:
    """Authorizes sessions with Layercode's cloud (the seed's backend, in Python)."""

    def __init__(self, url: str, api_key: str, timeout: float, client: httpx.AsyncClient):
        self.url = url
        self.api_key = api_key
        self.timeout = timeout
        self.client = client

    def url_for(self, request: AuthorizeRequest) -> str:
        """The newer agents endpoint for `agent_id` requests, unless a URL was configured."""
        if (
            request.agent_id
            and not request.pipeline_id
            and self.url == CLOUD_PIPELINE_AUTHORIZE_URL
        ):
            return CLOUD_AGENT_AUTHORIZE_URL
        return self.url

    async def authorize(self, request: AuthorizeRequest, http: Request) -> Response:
        url = self.url_for(request)
        started = time.monotonic()
        try:
            answer = await self.client.post(
                url,
                json=request.cloud_body(),
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            log.warning("Layercode did not answer in %.0f s", self.timeout)
            raise ApiError(
                504, f"Layercode did not answer within {self.timeout:g} seconds; try again"
            ) from None
        except httpx.HTTPError as error:
            reason = redact(str(error) or type(error).__name__, (self.api_key,))
            log.warning("Layercode could not be reached: %s", reason)
            raise ApiError(
                504, f"Layercode could not be reached ({reason}); check the network and try again"
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        if answer.status_code >= 400:
            reason = redact(_reason_from(answer), (self.api_key,))
            log.warning("Layercode refused the session: HTTP %d: %s", answer.status_code, reason)
            raise ApiError(
                502, f"Layercode refused the session (HTTP {answer.status_code}): {reason}"
            )
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.warning(
                "Layercode answered HTTP %d with a body that is not JSON", answer.status_code
            )
            raise ApiError(502, "Layercode answered with something that is not a JSON object")
        log.info("session authorized by Layercode in %.0f ms", elapsed_ms)
        # Unchanged: the very bytes Layercode sent.
        return Response(answer.content, media_type="application/json")


async def authorize(request: Request) -> Response:
    settings = request.app.state.settings
    try:
        if not origin_allowed(request, settings.cors_allow_origins):
            raise ApiError(
                403,
                f"origin {request.headers.get('origin')} may not call this endpoint; "
                "add it to CORS_ALLOW_ORIGINS on the server",
            )
        body = await read_json_body(request)
        try:
            auth_request = AuthorizeRequest.from_json(body)
        except ProtocolError as error:
            raise ApiError(400, error.message) from None
        return await request.app.state.authorizer.authorize(auth_request, request)
    except ApiError as error:
        return error.response()
