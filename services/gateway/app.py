"""FastAPI factories for the two HTTP surfaces of the gateway: the API (:9337) and the console (:3131)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse, Response

from services.gateway import errors
from services.gateway.anthropic.messages.router import router as messages_router
from services.gateway.blackboard.router import router as blackboard_router
from services.gateway.blackboard.service import BoardClient
from services.gateway.console.router import router as console_router
from services.gateway.errors import Conflict
from services.gateway.mcp import http as mcp_http
from services.gateway.metrics import GatewayMetrics
from services.gateway.middleware import RequestContext
from services.gateway.mirror import MeshMirror
from services.gateway.openai.chat.router import router as chat_router
from services.gateway.openai.completions.router import router as completions_router
from services.gateway.openai.models.router import router as models_router
from services.gateway.openai.relay import Relay
from services.gateway.openai.responses.router import router as responses_router
from services.gateway.settings import GatewaySettings


def create_api_app(settings: GatewaySettings, mirror: MeshMirror, relay: Relay, metrics: GatewayMetrics, blackboard: BoardClient | None = None) -> FastAPI:
    """`blackboard`: gossip's board behind /v1/blackboard/… (None: no such routes)."""
    app = FastAPI(title="mesh-llm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.mirror, app.state.relay, app.state.metrics = settings, mirror, relay, metrics
    for router in (chat_router, completions_router, models_router, responses_router, messages_router):
        app.include_router(router)
    if blackboard is not None:
        app.state.blackboard = blackboard
        app.include_router(blackboard_router)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "node": mirror.view.own.node_id})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    errors.install(app)
    app.add_middleware(RequestContext, api_key=settings.api_key)
    return app


Approver = Callable[[str], Awaitable[dict[str, str]]]  # a pairing code -> the approved node (console's Approve button)


async def _no_approver(code: str) -> dict[str, str]:
    raise Conflict("this console cannot approve pairing requests")


def create_console_app(
    settings: GatewaySettings,
    mirror: MeshMirror,
    fingerprint: str,
    relay: Relay | None = None,
    metrics: GatewayMetrics | None = None,
    metrics_urls: dict[str, str] | None = None,
    approve: Approver | None = None,
    blackboard: BoardClient | None = None,
) -> FastAPI:
    """The console page, /api/status, /api/events; and, for its chat panel on the same origin, the
    chat and models API (the console is loopback-only, so no API key), and the gateway's /metrics;
    for its blackboard panel, /v1/blackboard/… when given `blackboard`, and with it the MCP server
    (streamable HTTP) at /mcp for agents on this machine."""
    hosts = sorted({"localhost", "127.0.0.1", settings.console_host})
    mcp = mcp_http.LazyMcp(blackboard, lambda: mirror.view, hosts) if blackboard is not None else None
    # /mcp answers through the SDK's session manager, started by its first request, stopped with the app.
    app = FastAPI(title="mesh-llm console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lambda _: mcp_http.running(mcp))
    app.state.settings, app.state.mirror, app.state.fingerprint = settings, mirror, fingerprint
    app.state.relay, app.state.metrics, app.state.metrics_urls = relay, metrics, metrics_urls or {}
    app.state.approve = approve or _no_approver
    app.include_router(console_router)
    if blackboard is not None:
        app.state.blackboard = blackboard
        app.include_router(blackboard_router)
    if mcp is not None:
        app.router.routes.extend(mcp_http.routes(mcp))
    if relay is not None and metrics is not None:
        for router in (chat_router, models_router):
            app.include_router(router)

        @app.get("/metrics")
        async def prometheus() -> Response:
            return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    errors.install(app)
    app.add_middleware(RequestContext, api_key="")
    # Only this machine's names for the console: a web page whose name is made to resolve to
    # 127.0.0.1 (DNS rebinding) sends its own Host, and must not read the invite token.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app
