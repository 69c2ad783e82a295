"""The answers a service gives on purpose over gRPC: one exception per status code we send.

A servicer raises one of these (translating its domain's exception, with the request's context in
the message); the interceptor in grpc_server.py turns it into its status code with the message as
details. Anything else a servicer raises is a bug: logged with its traceback, answered INTERNAL.

Owns the family and its codes; must not know which service raises what.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class ServiceError(Exception):
    """An answer, not a crash: the caller receives `code` with str(self) as the details."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN


class NotFound(ServiceError):
    """The thing the request names does not exist here (a model file, a served model)."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(ServiceError):
    """The request itself is wrong: asking again unchanged cannot succeed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class PermissionDenied(ServiceError):
    """Someone refused us on purpose (a peer refused admission)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(ServiceError):
    """This node cannot do it until something changes (llama.cpp's binaries missing)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """The caller used up a quota (the blackboard's posts a minute); the same request works later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """What the request needs beyond this service is unreachable now (a peer down); may work later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    """What the request waited on did not answer in the time it allowed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
