"""Reading OpenAI request bodies: JSON parsing and schema validation into InvalidRequest errors."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from services.gateway.errors import InvalidRequest

Schema = TypeVar("Schema", bound=BaseModel)


def parse_body(raw: bytes, schema: type[Schema]) -> Schema:
    """The validated request, or InvalidRequest naming the first problem."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as bad:  # RecursionError: arrays nested past Python's limit
        raise InvalidRequest(f"request body is not valid JSON: {bad}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as invalid:
        raise InvalidRequest(describe(invalid)) from None


def describe(invalid: ValidationError) -> str:
    first = invalid.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
