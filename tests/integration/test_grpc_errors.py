"""One interceptor answers every servicer's exceptions: the family in services/common/errors.py
becomes its status code with the message as details, anything else INTERNAL (and a log line with
the traceback), for unary and streaming calls alike.

A real grpc.aio server from grpc_server.start on a free loopback port, with a tiny servicer (the
gossip service's shape) whose methods raise what the test asks for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common import errors, grpc_server
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, node_pb2
from tests.nodes import free_port

ANSWERS = [errors.NotFound, errors.InvalidArgument, errors.PermissionDenied, errors.FailedPrecondition, errors.Unavailable, errors.DeadlineExceeded]


class Raising(gossip_pb2_grpc.GossipServicer):
    """GetSelf raises `failure`; Watch yields one view, then raises it."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def GetSelf(self, request: gossip_pb2.GetSelfRequest, context: grpc.aio.ServicerContext) -> node_pb2.NodeRecord:
        raise self.failure

    async def Watch(self, request: gossip_pb2.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[gossip_pb2.MeshView]:
        yield gossip_pb2.MeshView(address="first")
        raise self.failure

    async def Leave(self, request: gossip_pb2.LeaveRequest, context: grpc.aio.ServicerContext) -> gossip_pb2.LeaveResponse:
        # A servicer that still ends the call itself keeps its own status.
        await context.abort(grpc.StatusCode.ABORTED, "ended by the servicer")
        raise AssertionError("abort returned")


async def outcomes(failure: Exception) -> tuple[grpc.aio.AioRpcError, list[str], grpc.aio.AioRpcError]:
    """What a client sees from GetSelf, then Watch (the views before the failure, the failure)."""
    port = free_port()
    server = await grpc_server.start(port, lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(Raising(failure), s))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gossip_pb2_grpc.GossipStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await stub.GetSelf(gossip_pb2.GetSelfRequest(), timeout=5)
            seen: list[str] = []
            with pytest.raises(grpc.aio.AioRpcError) as streaming:
                async for view in stub.Watch(gossip_pb2.WatchRequest(), timeout=5):
                    seen.append(view.address)
            return unary.value, seen, streaming.value
    finally:
        await server.stop(grace=0)


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda answer: answer.__name__)
def test_a_raised_answer_reaches_the_caller_as_its_code_and_message(answer: type[errors.ServiceError]) -> None:
    unary, seen, streaming = asyncio.run(outcomes(answer("the reason, for the caller")))
    assert (unary.code(), unary.details()) == (answer.code, "the reason, for the caller")
    assert seen == ["first"], "the items before the failure arrive"
    assert (streaming.code(), streaming.details()) == (answer.code, "the reason, for the caller")


def test_an_unexpected_exception_is_internal_and_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=grpc_server.__name__):
        unary, _, streaming = asyncio.run(outcomes(KeyError("gone")))
    assert unary.code() == streaming.code() == grpc.StatusCode.INTERNAL
    assert unary.details() == "KeyError: 'gone'"
    logged = [record for record in caplog.records if record.name == grpc_server.__name__]
    assert len(logged) == 2, "one line per failed call"
    assert all(record.exc_info and record.exc_info[0] is KeyError for record in logged)
    assert {record.fields["method"] for record in logged} == {"/mesh.v1.Gossip/GetSelf", "/mesh.v1.Gossip/Watch"}  # pyright: ignore[reportAttributeAccessIssue] - logs.event's extra


def test_a_servicer_that_aborts_keeps_its_own_status() -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        port = free_port()
        server = await grpc_server.start(port, lambda s: gossip_pb2_grpc.add_GossipServicer_to_server(Raising(KeyError()), s))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await gossip_pb2_grpc.GossipStub(channel).Leave(gossip_pb2.LeaveRequest(), timeout=5)
                return ended.value
        finally:
            await server.stop(grace=0)

    ended = asyncio.run(scenario())
    assert (ended.code(), ended.details()) == (grpc.StatusCode.ABORTED, "ended by the servicer")
