"""ASGI middleware of the API: request ids on every hop, and the API key when one is set (as a
bearer token, or in `x-api-key` as Anthropic clients send it).

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched.
"""

from __future__ import annotations

import hmac
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logs import request_id
from services.gateway.errors import Unauthorized, error_response

OPEN_PATHS = ("/health",)


class RequestContext:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        try:
            if self.api_key and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
                refusal = Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
                await error_response(refusal, scope["path"])(scope, receive, send)
                return
            await self.app(scope, receive, self._with_request_id(send, rid))
        finally:
            request_id.reset(token)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        bearer = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
        given = [bearer, headers.get(b"x-api-key", b"").decode("latin-1").strip()]
        # Both compared, always: which header held the key must not show in the timing.
        return any([hmac.compare_digest(key.encode(), self.api_key.encode()) for key in given])

    @staticmethod
    def _with_request_id(send: Send, rid: str) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        return sending
