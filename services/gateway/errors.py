"""The gateway's error family and the one place that turns errors into bodies: OpenAI's shape, or
Anthropic's on the Anthropic API's paths."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.gateway.anthropic import errors as anthropic_errors

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client sees: HTTP status plus the OpenAI error fields."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(ApiError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(ApiError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class Forbidden(ApiError):
    status, type, code = 403, "invalid_request_error", "forbidden"


class Conflict(ApiError):
    """The request is well formed but the mesh's state refuses it (e.g. no pairing request shows that code)."""

    status, type, code = 409, "invalid_request_error", "conflict"


class ModelNotFound(ApiError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class NoServer(ApiError):
    """The model is known but no server is ready for it right now."""

    status, type, code = 503, "server_error", "model_not_ready"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"Retry-After": str(max(1, retry_after))})


def error_body(message: str, type_: str, code: str | None) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "code": code}}


def error_response(error: ApiError, path: str = "") -> JSONResponse:
    """The error as the API at `path` writes errors."""
    return shaped(path, error.status, error.message, error.type, error.code, error.headers)


def shaped(path: str, status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    if anthropic_errors.owns(path):
        return JSONResponse(anthropic_errors.error_body(status, message), status_code=status, headers=headers)
    return JSONResponse(error_body(message, type_, code), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Map every error that can leave the app to its API's shape; never a traceback."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error, request.url.path)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        return error_response(InvalidRequest(str(error)), request.url.path)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        code = "not_found" if error.status_code == 404 else "http_error"
        return shaped(request.url.path, error.status_code, str(error.detail), "invalid_request_error", code)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(ApiError("internal error; see the gateway log"), request.url.path)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
