"""Errors in the Anthropic shape, `{"type": "error", "error": {"type": ..., "message": ...}}`, for
every path of the Anthropic API (gateway/errors.py picks the shape by path).

Pure: statuses and bodies in, bodies out. Anthropic clients read the error type to decide what
went wrong (and its SDK picks the exception class by status), so the type follows the status as
Anthropic's own API sets it.
"""

from __future__ import annotations

import json
from typing import Any

PATH_PREFIX = "/v1/messages"  # /v1/messages and /v1/messages/count_tokens

# Anthropic's error types by HTTP status; any other 5xx is an api_error, any other 4xx invalid.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    # No ready server for the model: Anthropic's word for "try again shortly" is overloaded.
    503: "overloaded_error",
    529: "overloaded_error",
}


def owns(path: str) -> bool:
    """True for the paths whose errors clients expect in the Anthropic shape."""
    return path == PATH_PREFIX or path.startswith(PATH_PREFIX + "/")


def error_type(status: int) -> str:
    return TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def upstream_error(status: int, raw: bytes) -> bytes:
    """An error answer from llama-server or a peer's gateway (both write the OpenAI shape) in the
    Anthropic shape; one already in it is kept as it is."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: arrays nested past Python's limit
        body = None
    if isinstance(body, dict) and body.get("type") == "error":
        return raw
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    else:
        message = raw.decode("utf-8", "replace").strip()[:1000] or f"the model's server answered {status}"
    return json.dumps(error_body(status, message)).encode()
