"""The blackboard's logic on the gateway: scrub a post before it goes anywhere (a flagged one is
refused here, 422 naming what was found), then ask gossip, which holds the board, to post, search
or read the feed; gossip's refusals become the OpenAI error shape.

Owns only that mapping; the rules are the gossip service's, the scrubbing services/common/scrubber.py's.
"""

from __future__ import annotations

import grpc

from services.common import scrubber
from services.gateway.errors import ApiError, Conflict, InvalidRequest, NoServer
from services.proto.mesh.v1 import gossip_pb2, gossip_pb2_grpc, peer_pb2

TIMEOUT = 5.0  # seconds gossip has to answer: it writes one post to SQLite at most


class SensitiveContent(ApiError):
    """The text holds a secret or personal data: nothing was posted."""

    status, type, code = 422, "invalid_request_error", "sensitive_content"


class RateLimited(ApiError):
    status, type, code = 429, "requests", "rate_limit_exceeded"


class BoardClient:
    def __init__(self, gossip: gossip_pb2_grpc.GossipAsyncStub) -> None:
        self.gossip = gossip

    async def post(self, text: str, tags: list[str]) -> tuple[peer_pb2.BoardPost, scrubber.Scrubbed]:
        """The post as stored (home paths rewritten) and what the scrubber found."""
        scrubbed = scrubber.scrub(text)
        flagged = scrubber.flagged(scrubbed.findings) + scrubber.scrub(" ".join(tags)).findings
        if flagged:
            raise SensitiveContent(f"the post holds {scrubber.describe(flagged)}: nothing was posted; remove it and post again")
        try:
            post = await self.gossip.Post(gossip_pb2.PostRequest(text=scrubbed.text, tags=tags), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as failure:
            raise _api_error(failure) from None
        return post, scrubbed

    async def search(self, terms: list[str], limit: int) -> list[peer_pb2.BoardPost]:
        try:
            found = await self.gossip.Search(gossip_pb2.SearchRequest(terms=terms, limit=limit), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as failure:
            raise _api_error(failure) from None
        return list(found.posts)

    async def feed(self, since: float, author: str, limit: int) -> list[peer_pb2.BoardPost]:
        try:
            found = await self.gossip.Feed(gossip_pb2.FeedRequest(since=since, author=author, limit=limit), timeout=TIMEOUT)
        except grpc.aio.AioRpcError as failure:
            raise _api_error(failure) from None
        return list(found.posts)


def _api_error(failure: grpc.aio.AioRpcError) -> ApiError:
    details = failure.details() or failure.code().name
    code = failure.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited(details, {"Retry-After": "60"})
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return Conflict(details)
    return NoServer(f"the gossip service did not answer ({code.name}); retry", 1)
