"""The gRPC server shell every service uses: loopback only, standard health check, one error policy.

Owns binding, health, and the interceptor that turns a servicer's exceptions into status codes
(errors.py's family into their codes; anything else, logged once, into INTERNAL). Health starts NOT_SERVING and says SERVING only when the service says it
can do its work (`Health.set`), or while the siblings it needs are reachable (`serve_while_reachable`);
it is NOT_SERVING for good once the server stops. Servicers are registered by the caller; what
"ready" means is each service's own word, given in its server.py.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import ServiceError
from services.common.logs import event

log = logging.getLogger(__name__)
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
# What a servicer method is given besides its request; ours read nothing from it (errors are raised).
Context = grpc.aio.ServicerContext[Any, Any]
# grpc_health's asyncio servicer: types-grpcio's stubs lack `health.aio`, so it is reached untyped
# here once and typed by HealthServicer below.
_aio_health: Any = importlib.import_module("grpc_health.v1.health").aio


class HealthServicer(Protocol):
    """grpc_health's asyncio HealthServicer, as far as we use it."""

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None: ...

    async def enter_graceful_shutdown(self) -> None: ...


class Health:
    """This service's answer to `grpc.health.v1.Health`; the service alone decides it."""

    def __init__(self, servicer: HealthServicer) -> None:
        self._servicer = servicer
        self.serving: bool | None = None  # None: the service has not said yet (checkers hear NOT_SERVING)

    async def set(self, serving: bool, reason: str = "") -> None:
        """SERVING or NOT_SERVING from now on; the first word and every change are logged with the reason."""
        if serving == self.serving:
            return
        self.serving = serving
        await self._servicer.set("", SERVING if serving else NOT_SERVING)
        event(log, "health", status="SERVING" if serving else "NOT_SERVING", reason=reason or "-")

    async def stopping(self) -> None:
        """NOT_SERVING for good: callers stop sending work while the server drains."""
        self.serving = False
        await self._servicer.enter_graceful_shutdown()


Behaviour = Callable[..., Any]  # a servicer method as grpc calls it: (request or request iterator, context)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Servicers raise, this answers: a ServiceError becomes its code with its message as details;
    any other exception is a bug, logged once with its traceback and answered INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return answering_handler(handler, handler_call_details.method)


def answering_handler(handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, its behaviour wrapped so that exceptions become status codes."""
    wrap = {
        (False, False): (grpc.unary_unary_rpc_method_handler, handler.unary_unary),
        (False, True): (grpc.unary_stream_rpc_method_handler, handler.unary_stream),
        (True, False): (grpc.stream_unary_rpc_method_handler, handler.stream_unary),
        (True, True): (grpc.stream_stream_rpc_method_handler, handler.stream_stream),
    }
    build, behaviour = wrap[(handler.request_streaming, handler.response_streaming)]
    if behaviour is None:
        return handler  # grpc answers UNIMPLEMENTED itself
    return build(answering(behaviour, method), handler.request_deserializer, handler.response_serializer)


def answering(behaviour: Behaviour, method: str) -> Behaviour:
    """`behaviour` with its exceptions answered; the kind grpc tells apart (coroutine function or
    async generator function) is kept. Synchronous behaviours (we have none) pass unwrapped."""
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                async for item in behaviour(request, context):
                    yield item
            except Exception as failure:  # noqa: BLE001 - every failure is answered, none ignored
                await answer(failure, method, context)

        return streaming
    if inspect.iscoroutinefunction(behaviour):

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except Exception as failure:  # noqa: BLE001 - every failure is answered, none ignored
                await answer(failure, method, context)

        return unary
    return behaviour


async def answer(failure: Exception, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """End the call with the status `failure` stands for (context.abort raises)."""
    if isinstance(failure, grpc.aio.AbortError):
        raise failure  # the servicer ended the call itself: its status stands
    if isinstance(failure, ServiceError):
        await context.abort(failure.code, str(failure))
    # As logs.event writes one line, with the traceback: this is a bug to fix, not an answer.
    log.error("unexpected failure", exc_info=failure, extra={"fields": {"method": method}})
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(failure).__name__}: {failure}")


class Server:
    """A started gRPC server and its health."""

    def __init__(self, server: grpc.aio.Server, health_: Health) -> None:
        self.server = server
        self.health = health_

    async def stop(self, grace: float) -> None:
        await self.health.stopping()
        await self.server.stop(grace=grace)


async def start(port: int, register: Callable[[grpc.aio.Server], None]) -> Server:
    """A started server on 127.0.0.1:port whose health answers NOT_SERVING until the service sets it,
    and whose servicers' exceptions are answered by ErrorInterceptor."""
    # No SO_REUSEPORT (gRPC's default on Linux): a second process given the same port must fail to
    # start, not silently share the port's connections with ours.
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=[("grpc.so_reuseport", 0)])
    register(server)
    health_servicer: HealthServicer = _aio_health.HealthServicer()
    # The reference servicer starts at SERVING: a checker asking before the service is ready must hear the truth.
    await health_servicer.set("", NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)  # pyright: ignore[reportUnknownMemberType] - typeshed leaves its arguments untyped
    # Security invariant: gRPC is never reachable from other machines.
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return Server(server, Health(health_servicer))


async def serve_while_reachable(health_: Health, siblings: Mapping[str, grpc.aio.Channel], ready: Iterable[asyncio.Event] = ()) -> None:
    """SERVING while every sibling's channel is connected (once every `ready` event is set),
    NOT_SERVING otherwise; runs until cancelled. Follows the channels' own state changes: no polling."""
    for part in ready:
        await part.wait()
    while True:
        # try_to_connect: an idle channel (no call for a while) connects instead of reading as down.
        states = {name: channel.get_state(try_to_connect=True) for name, channel in siblings.items()}
        missing = [name for name, state in states.items() if state != grpc.ChannelConnectivity.READY]
        await health_.set(not missing, f"{', '.join(missing)} not reachable" if missing else "siblings reachable")
        changes = [asyncio.create_task(siblings[name].wait_for_state_change(state)) for name, state in states.items()]
        try:
            await asyncio.wait(changes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for change in changes:
                change.cancel()


# A sibling on loopback comes up (or back, after a restart) within seconds: gRPC's default backoff
# (1 s growing to 120 s) would leave a channel that tried during a slow start waiting long after.
SIBLING_RECONNECT = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))


def channel(address: str) -> grpc.aio.Channel:
    """A channel to a sibling service; calls wait for it to come up instead of failing."""
    return grpc.aio.insecure_channel(address, options=SIBLING_RECONNECT)
