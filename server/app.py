"""The Starlette application: one routing table, one place that wires the parts together.

`create_app(settings)` builds the app; the lifespan owns the long-lived resources (the HTTP
client for Layercode's cloud, the client wheel, the embedded pipeline) and closes them. Errors
that escape a handler become a JSON 500 that says nothing of the internals; the log gets one
line (the traceback at debug level only, secrets redacted), never the client.

Draining (`drain(app)`, called by `python -m server` on SIGTERM): new sessions are refused
(authorize 503 `draining`, `/health` 503, new sockets 1012), answers being spoken may finish
for up to `DRAIN_GRACE` seconds, then every socket closes with 1012 and the process exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import static, vendor
from .agent.app import agent_routes
from .authorize import CloudAuthorizer, authorize
from .config import Settings
from .conversations import delete_conversation
from .limits import FloodPenalty, RateLimiter
from .pipeline.embedded import EmbeddedPipeline, websocket_routes
from .pipeline.stores import StoreUnavailable

log = logging.getLogger("server")


async def health(request: Request) -> JSONResponse:
    """200 while this node takes new sessions; 503 with the reason while it cannot (draining
    for a restart, starting, or a store unreachable), so a load balancer sends callers
    elsewhere."""
    state = request.app.state
    pipeline = state.pipeline
    if state.draining:
        body = {"status": "draining", "reason": "draining: the server is restarting"}
    else:
        reason = await pipeline.unready_reason() if pipeline is not None else None
        body = {"status": "ok"} if reason is None else {"status": "unavailable", "reason": reason}
    if pipeline is not None and pipeline.stores is not None:
        body["stores"] = pipeline.stores.describe()
    return JSONResponse(
        {
            **body,
            "pipeline": state.pipeline_kind,
            "runtime": {
                "pyscript": vendor.PYSCRIPT.version,
                "micropython": vendor.MICROPYTHON.version,
                "pyodide": vendor.PYODIDE.version,
                "vendored": vendor.is_vendored(),
            },
            "client_wheel": state.client_wheel.filename,
        },
        status_code=200 if body["status"] == "ok" else 503,
    )


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    # One line; the logging filter keeps the traceback only at debug level.
    log.error("unhandled error on %s %s", request.method, request.url.path[:200], exc_info=exc)
    return JSONResponse(
        {"error": "the server failed to handle this request; its log has the details"},
        status_code=500,
    )


async def drain(app: Starlette) -> None:
    """Stop taking sessions, let those speaking finish (up to DRAIN_GRACE), close the rest."""
    if app.state.draining:
        return
    app.state.draining = True
    log.info("draining: new sessions refused for up to %g s", app.state.settings.drain_grace)
    pipeline = getattr(app.state, "pipeline", None)
    if pipeline is not None:
        await pipeline.drain(app.state.settings.drain_grace)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if not settings.agent_webhook_secret:
        # The pipeline signs its webhook calls and the demo agent checks them: they need a
        # shared secret even when none is configured, so this run makes one.
        settings = dataclasses.replace(settings, agent_webhook_secret=secrets.token_urlsafe(32))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        async with httpx.AsyncClient(follow_redirects=False) as http:
            app.state.http = http
            if settings.uses_cloud:
                app.state.authorizer = CloudAuthorizer(
                    settings.layercode_authorize_url,
                    settings.layercode_api_key,
                    settings.layercode_timeout,
                    http,
                    settings.layercode_max_reply_kb * 1024,
                )
                app.state.pipeline = None
                app.state.pipeline_kind = "layercode-cloud"
            else:
                pipeline = EmbeddedPipeline(settings, http)
                try:
                    await pipeline.start()
                except StoreUnavailable as error:
                    log.error("cannot start: %s", error, exc_info=error.__cause__)
                    await pipeline.close()
                    raise
                app.state.pipeline = pipeline
                app.state.authorizer = pipeline.authorizer
                if settings.redis_url:  # one budget per caller across the nodes
                    from .limits_redis import RedisRateLimiter

                    app.state.rate_limiter = RedisRateLimiter(
                        pipeline.stores.keys.client, settings.authorize_rate_limit
                    )
                app.state.pipeline_kind = "embedded"
            if not vendor.is_vendored():
                log.warning("the browser runtime is not vendored: run ./dev setup")
            try:
                yield
            finally:
                if app.state.pipeline is not None:
                    await app.state.pipeline.close()

    middleware = [Middleware(GZipMiddleware, minimum_size=1024)]
    if settings.cors_allow_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_allow_origins),
                allow_methods=["POST", "DELETE"],
                allow_headers=["content-type", "x-resume-token"],
                max_age=600,
            ),
        )

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/api/authorize", authorize, methods=["POST"]),
        Route("/api/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
    ]
    if not settings.uses_cloud:
        routes += [*websocket_routes(), *agent_routes(settings.agent_webhook_secret)]
    routes += static.routes
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, 500: server_error},
    )
    app.state.settings = settings
    app.state.draining = False
    app.state.pipeline = None
    app.state.rate_limiter = RateLimiter(settings.authorize_rate_limit)
    app.state.flood_penalty = FloodPenalty(settings.flood_penalty_s)
    app.state.client_wheel = static.load_client_wheel()
    app.state.client_mpy = static.load_client_mpy()
    return app
