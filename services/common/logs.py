"""Structured logs: one line an event, with service, node and request id.

Owns the log format and the request-id context variable; must not configure anything else.
"""

from __future__ import annotations

import contextvars
import logging
import sys

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _EventFormatter(logging.Formatter):
    def __init__(self, service: str, node: str) -> None:
        super().__init__()
        self.service = service
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        extra = "".join(f" {key}={value!r}" if isinstance(value, str) and " " in value else f" {key}={value}" for key, value in fields.items())
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<5} service={self.service} node={self.node} "
            f"request_id={request_id.get()} {record.getMessage()}{extra}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(service: str, node: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EventFormatter(service, node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs and per-call client logs duplicate our own request events.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("uvicorn.error", "httpx", "httpcore", "quic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one event with key=value fields."""
    logger.log(level, message, extra={"fields": fields})
