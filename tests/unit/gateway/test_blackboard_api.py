"""/v1/blackboard/…: each class the scrubber flags is refused with a 422 in the OpenAI shape naming
it, before gossip hears of it; home paths are rewritten and said so; gossip's refusals map to
429 (rate), 409 (board off), 400; the feed and search pass their parameters on."""

from __future__ import annotations

import grpc
import pytest
from fastapi.testclient import TestClient

from services.common.records import MeshView, NodeRecord
from services.common.scrubber import NAMES, Kind
from services.gateway.app import create_api_app
from services.gateway.blackboard.service import BoardClient
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.relay import Relay
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import LocalUpstream
from services.proto.mesh.v1 import gossip_pb2, peer_pb2
from tests.unit.test_scrubber import CAUGHT


class FakeGossip:
    """Gossip's blackboard RPCs: records what it was asked, answers `refusal` when set."""

    def __init__(self, refusal: grpc.StatusCode | None = None) -> None:
        self.refusal = refusal
        self.asked: list[object] = []

    def _answer(self, request: object) -> None:
        self.asked.append(request)
        if self.refusal is not None:
            raise grpc.aio.AioRpcError(self.refusal, grpc.aio.Metadata(), grpc.aio.Metadata(), details="refused by gossip")

    async def Post(self, request: gossip_pb2.PostRequest, timeout: float) -> peer_pb2.BoardPost:
        self._answer(request)
        return peer_pb2.BoardPost(id="p1", author_id="me", author_name="me", created_at=1.0, text=request.text, tags=request.tags)

    async def Search(self, request: gossip_pb2.SearchRequest, timeout: float) -> gossip_pb2.BoardPostList:
        self._answer(request)
        return gossip_pb2.BoardPostList(posts=[peer_pb2.BoardPost(id="p1", text="found")])

    async def Feed(self, request: gossip_pb2.FeedRequest, timeout: float) -> gossip_pb2.BoardPostList:
        self._answer(request)
        return gossip_pb2.BoardPostList(posts=[peer_pb2.BoardPost(id="p2", text="newest"), peer_pb2.BoardPost(id="p1", text="older")])


def client(gossip: FakeGossip) -> TestClient:
    mirror = MeshMirror()
    mirror.view = MeshView(own=NodeRecord(node_id="me", name="me"))
    metrics = GatewayMetrics()
    relay = Relay(mirror, metrics, LocalUpstream(1.0), None)
    return TestClient(create_api_app(GatewaySettings(), mirror, relay, metrics, BoardClient(gossip)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "kind", "scrubbed"), [case for case in CAUGHT if case[1] != Kind.HOME_PATH])
def test_each_flagged_class_is_a_422_naming_it(text: str, kind: str, scrubbed: str) -> None:
    gossip = FakeGossip()
    response = client(gossip).post("/v1/blackboard/posts", json={"text": text})
    assert response.status_code == 422
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["code"] == "sensitive_content"
    assert NAMES[Kind(kind)] in error["message"]
    assert gossip.asked == []  # nothing left the gateway


def test_a_flagged_tag_is_refused_too() -> None:
    gossip = FakeGossip()
    response = client(gossip).post("/v1/blackboard/posts", json={"text": "fine", "tags": ["bob@example.com"]})
    assert response.status_code == 422 and "an email address" in response.json()["error"]["message"] and gossip.asked == []


def test_home_paths_are_rewritten_and_reported() -> None:
    gossip = FakeGossip()
    response = client(gossip).post("/v1/blackboard/posts", json={"text": "STATUS: built in /home/alice/mesh", "tags": ["status"]})
    assert response.status_code == 200
    assert response.json()["text"] == "STATUS: built in ~/mesh" and response.json()["scrubbed"] == {"home_path": 1}
    assert response.json()["tags"] == ["status"] and response.json()["object"] == "blackboard.post"


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_exceeded"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "conflict"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request"),
        (grpc.StatusCode.UNAVAILABLE, 503, "model_not_ready"),
    ],
)
def test_gossip_refusals_in_the_openai_shape(refusal: grpc.StatusCode, status: int, code: str) -> None:
    response = client(FakeGossip(refusal)).post("/v1/blackboard/posts", json={"text": "fine"})
    assert response.status_code == status and response.json()["error"]["code"] == code


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "hi", "extra": 1}, {"text": 3}])
def test_bad_bodies_get_400(body: dict) -> None:
    assert client(FakeGossip()).post("/v1/blackboard/posts", json=body).status_code == 400


def test_feed_and_search_pass_their_parameters() -> None:
    gossip = FakeGossip()
    c = client(gossip)
    feed = c.get("/v1/blackboard/posts", params={"since": 12.5, "from": "beta", "limit": 2}).json()
    assert [p["id"] for p in feed["data"]] == ["p2", "p1"] and feed["object"] == "list"
    assert gossip.asked[-1] == gossip_pb2.FeedRequest(since=12.5, author="beta", limit=2)
    found = c.get("/v1/blackboard/search", params={"q": "qwen  split"}).json()
    assert [p["text"] for p in found["data"]] == ["found"]
    assert gossip.asked[-1] == gossip_pb2.SearchRequest(terms=["qwen", "split"])
    assert c.get("/v1/blackboard/search").status_code == 400
    assert c.get("/v1/blackboard/posts", params={"limit": 501}).status_code == 400
