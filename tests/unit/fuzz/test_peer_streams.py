"""What a peer may send on a QUIC stream: the frames, the kind byte, and each stream's first
messages (admission, pairing, HTTP and RPC tunnel heads, gossip passing the secrecy filter), and
what a peer answers an HTTP tunnel with. Whatever the bytes, each handler ends, refuses by its
own exception, or raises only what endpoint.py's _serve_stream turns into dropping that peer's
connection; the node never dies of a peer's bytes, and a tunnel never reaches past llama-server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st

from services.common import credentials
from services.common.credentials import Kind
from services.common.records import MeshView, NodeRecord
from services.gateway.discovery import ping
from services.gateway.peers import admission, pairing, secrecy
from services.gateway.peers.admission import AdmissionRefused, LocalNode
from services.gateway.peers.framing import MAX_FRAME_BYTES, FrameError, StreamKind, encode_frame, frame_length, read_frame, stream_kind
from services.gateway.tunnel.client import TunnelUpstream
from services.gateway.tunnel.rpc import RpcTunnelServer
from services.gateway.tunnel.server import TunnelServer
from services.gateway.upstream import LocalUpstream, ResponseCut, UpstreamUnavailable
from services.proto.mesh.v1 import peer_pb2
from tests.unit.fuzz.inputs import JSON_VALUES, Writer, deeply_nested, fuzz, mutated, reader_of, run

pytestmark = pytest.mark.timeout(120)

# What endpoint.py's _serve_stream catches from a stream's handler: the peer's connection is dropped.
MALFORMED = (FrameError, asyncio.IncompleteReadError, ValueError, DecodeError)

MESH = "7f3a9c01d2e4b5a6"
AUTHORITY = credentials.authority_key(MESH, b"s" * 32)
SERVER_KEY, CLIENT_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def local_node(node_id: str, key: ec.EllipticCurvePrivateKey) -> LocalNode:
    own = credentials.issue(AUTHORITY, MESH, Kind.MEMBER, node_id, credentials.public_der(key), now=1_700_000_000)
    return LocalNode(MESH, node_id, "10.0.0.1:7000", own, key, credentials.raw_public(AUTHORITY))


SERVER, CLIENT = local_node("server", SERVER_KEY), local_node("client", CLIENT_KEY)
assert SERVER.credential is not None and CLIENT.credential is not None
CLIENT_CREDENTIAL, SERVER_CREDENTIAL = CLIENT.credential.encode(), SERVER.credential.encode()


def frames(*payloads: bytes) -> bytes:
    return b"".join(encode_frame(payload) for payload in payloads)


# --- framing ------------------------------------------------------------------------------------


@fuzz(200)
@given(st.binary(max_size=2048))
def test_frames_round_trip(payload: bytes) -> None:
    framed = encode_frame(payload)
    assert frame_length(framed[:4]) == len(payload)
    assert run(lambda: read_frame(reader_of(framed + b"more"))) == payload


@fuzz(200)
@given(st.binary(min_size=4, max_size=4), st.binary(max_size=1))
@example(b"\xff\xff\xff\xff", b"")
def test_any_frame_length_or_kind_byte_is_read_or_a_frame_error(header: bytes, kind: bytes) -> None:
    try:
        assert 0 <= frame_length(header) <= MAX_FRAME_BYTES
    except FrameError:
        pass
    try:
        assert stream_kind(kind) in StreamKind
    except FrameError:
        pass


@fuzz(200)
@given(st.binary(max_size=64))
def test_any_stream_is_one_frame_or_a_framing_error(data: bytes) -> None:
    try:
        frame = run(lambda: read_frame(reader_of(data)))
    except (FrameError, asyncio.IncompleteReadError):
        return
    assert data[4:].startswith(frame)


# --- admission ----------------------------------------------------------------------------------

TEXTS = st.text(max_size=24)
CREDENTIAL_BYTES = st.just(CLIENT_CREDENTIAL) | mutated(CLIENT_CREDENTIAL) | st.binary(max_size=64)
HELLOS = st.builds(
    peer_pb2.AdmissionHello,
    mesh_id=st.just(MESH) | TEXTS,
    nonce=st.binary(max_size=32),
    fingerprint=TEXTS,
    node_id=st.just("client") | TEXTS,
    address=TEXTS,
    credential=CREDENTIAL_BYTES,
)


def hello_stream(hello: peer_pb2.AdmissionHello, proof: bytes) -> bytes:
    return frames(hello.SerializeToString(), proof)


@fuzz(200)
@given(st.builds(hello_stream, HELLOS, st.binary(max_size=80)) | st.binary(max_size=200) | mutated(frames(b"\n\x10" + MESH.encode())))
def test_a_server_admits_no_one_for_garbage(data: bytes) -> None:
    try:
        run(lambda: admission.admit_client(reader_of(data), Writer(), SERVER, "server-fingerprint"))
    except AdmissionRefused as refused:
        assert refused.by_us
    except MALFORMED:
        pass
    else:
        pytest.fail("admitted without a proof by the credential's key")


CHALLENGES = st.builds(
    peer_pb2.AdmissionChallenge,
    nonce=st.binary(max_size=32),
    node_id=st.just("server") | TEXTS,
    refusal=st.just("") | TEXTS,
    credential=st.just(SERVER_CREDENTIAL) | mutated(SERVER_CREDENTIAL) | st.binary(max_size=64),
    signature=st.binary(max_size=80),
)


@fuzz(200)
@given(st.builds(lambda challenge, rest: frames(challenge.SerializeToString()) + rest, CHALLENGES, st.binary(max_size=40)) | st.binary(max_size=200))
@example(frames(b"\xff"))  # a frame that is no protobuf
@example(b"\xff\xff\xff\xff")  # a frame over the limit
def test_a_client_is_admitted_nowhere_by_garbage_and_says_why(data: bytes) -> None:
    """admit_to_server's documented answer to anything but an admission is AdmissionRefused: the
    endpoint closes the connection on that (and on nothing else it does not expect)."""
    with pytest.raises(AdmissionRefused):
        run(lambda: admission.admit_to_server(reader_of(data), Writer(), CLIENT, ("client-fp", "server-fp"), lambda: ""))


# --- pairing ------------------------------------------------------------------------------------

EC_DER = credentials.public_der(CLIENT_KEY)
ED_DER = credentials.public_der(ed25519.Ed25519PrivateKey.generate())
PUBLIC_KEYS = st.sampled_from([EC_DER, ED_DER]) | mutated(EC_DER) | mutated(ED_DER) | st.binary(max_size=100)
# A P-256 key's point under secp112r1's OID: well-formed DER naming a curve cryptography does not support.
UNSUPPORTED_CURVE = bytes.fromhex("3056301006072a8648ce3d020106052b81040006") + EC_DER[-68:]


class PairingGossip:
    async def RequestPairing(self, request: peer_pb2.PairingRequest, timeout: float) -> peer_pb2.PairingRequest:
        return request


@fuzz(200)
@given(
    st.builds(peer_pb2.PairRequest, node_id=st.just("joiner") | TEXTS, name=TEXTS, public_key=PUBLIC_KEYS, commitment=st.binary(max_size=40)),
    st.binary(max_size=40),
)
@example(peer_pb2.PairRequest(node_id="joiner", public_key=UNSUPPORTED_CURVE, commitment=b"c" * 32), b"")
def test_a_pairing_request_is_answered_or_refused(asked: peer_pb2.PairRequest, reveal: bytes) -> None:
    """The pairing stream is served before admission: anyone on the network can write to it."""
    view = MeshView(own=NodeRecord(node_id="member", name="member"), mesh_id=MESH)
    server = pairing.PairingServer(lambda: view, PairingGossip(), "member-fp")
    writer = Writer()
    try:
        run(lambda: server.serve(object(), reader_of(frames(asked.SerializeToString(), reveal)), writer))
    except MALFORMED:
        return
    assert writer.written  # a refusal, or the challenge


# --- gossip through the secrecy filter ------------------------------------------------------------

PAIRED = credentials.issue(AUTHORITY, MESH, Kind.PAIRED, "paired", EC_DER, now=1_700_000_000)
STATE = peer_pb2.GossipState(from_node_id="a", secret=peer_pb2.MeshSecret(secret=b"s" * 32, version=3))


@fuzz(200)
@given(
    st.binary(max_size=200) | mutated(peer_pb2.GossipMessage(ping=STATE).SerializeToString()) | mutated(peer_pb2.GossipMessage(ack=STATE).SerializeToString())
)
def test_the_secret_never_reaches_a_paired_peer_whatever_the_message(payload: bytes) -> None:
    filtered = secrecy.withheld(payload, PAIRED)
    try:
        message = peer_pb2.GossipMessage.FromString(filtered)
    except DecodeError:
        return  # gossip refuses it: nothing is read from it
    kind = message.WhichOneof("kind")
    if kind in ("ping", "ack"):
        assert not (message.ping if kind == "ping" else message.ack).HasField("secret")


# --- HTTP tunnel heads (the serving side) ---------------------------------------------------------


class CapturingUpstream(LocalUpstream):
    """The real LocalUpstream, its request kept instead of sent."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.requests: list[httpx.Request] = []

    async def _send(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise httpx.ConnectError("not sent")


LLAMA_PORT = 8123


def serve_tunnel(data: bytes) -> CapturingUpstream:
    upstream = CapturingUpstream()
    server = TunnelServer(lambda model: (LLAMA_PORT, 200, ""), upstream, lambda *counted: None)
    try:
        run(lambda: server.serve(object(), reader_of(data), Writer()))
    except MALFORMED:
        pass
    return upstream


HEADS = st.fixed_dictionaries(
    {},
    optional={
        "path": st.sampled_from(["/v1/chat/completions", "@evil.example/x", "/v1/../slots", "http://evil.example/", ""]) | JSON_VALUES,
        "model": st.just("alpha") | JSON_VALUES,
        "request_id": st.just("r-1") | JSON_VALUES,
        "body_bytes": st.integers(-2, 8) | JSON_VALUES,
    },
)


def head_stream(head: dict[str, Any], body: bytes) -> bytes:
    return frames(json.dumps(head).encode()) + body


@fuzz(200)
@given(st.builds(head_stream, HEADS, st.binary(max_size=8)) | st.binary(max_size=100))
@example(head_stream({"path": "@evil.example/x", "model": "alpha", "body_bytes": 0}, b""))  # http://127.0.0.1:8123@evil.example/x
@example(head_stream({"path": "/v1/../slots", "model": "alpha", "body_bytes": 0}, b""))  # llama-server's other endpoints
@example(head_stream({"model": "alpha", "body_bytes": 0}, b""))
@example(head_stream({"path": "/v1/completions", "model": "alpha", "body_bytes": 0, "request_id": 7}, b""))
@example(frames(deeply_nested()))
def test_a_tunnel_head_reaches_only_the_llama_server_api_or_drops_the_peer(data: bytes) -> None:
    for request in serve_tunnel(data).requests:
        assert (request.url.host, request.url.port) == ("127.0.0.1", LLAMA_PORT)
        assert request.url.path.startswith("/v1/")


def test_a_valid_tunnel_head_reaches_llama_server() -> None:
    [request] = serve_tunnel(head_stream({"path": "/v1/completions", "model": "alpha", "request_id": "r-1", "body_bytes": 2}, b"{}")).requests
    assert str(request.url) == f"http://127.0.0.1:{LLAMA_PORT}/v1/completions" and request.headers["x-request-id"] == "r-1"


class StreamsOf:
    """A connection whose streams cancel into a list (the RPC tunnel's refusal of a stale port)."""

    def __init__(self) -> None:
        self.peer_node_id = "peer"
        self.cancelled: list[int] = []

    def cancel_stream(self, stream_id: int, error_code: int) -> None:
        self.cancelled.append(stream_id)


@fuzz(200)
@given(st.builds(lambda head: frames(json.dumps(head).encode()), st.fixed_dictionaries({}, optional={"port": JSON_VALUES})) | st.binary(max_size=64))
@example(frames(b'{"port": 1e999}'))
@example(frames(b"[]"))
@example(frames(b"{}"))
@example(frames(deeply_nested()))
def test_an_rpc_head_names_a_port_or_drops_the_peer(data: bytes) -> None:
    connection = StreamsOf()
    server = RpcTunnelServer(lambda: {})  # no rpc-server here: any port named is refused
    try:
        run(lambda: server.serve(connection, reader_of(data), Writer()))
    except MALFORMED:
        return
    assert connection.cancelled == [0]


# --- HTTP tunnel answers (the requesting side) ----------------------------------------------------


class OneStream:
    """A connection whose one stream reads `data`, as a peer's gateway answered."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed_reason = ""

    async def create_stream(self) -> tuple[asyncio.StreamReader, Writer]:
        return reader_of(self.data), Writer()

    def cancel_stream(self, stream_id: int, error_code: int) -> None:
        pass


class Links:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def connection_to(self, address: str, timeout: float) -> OneStream:
        return OneStream(self.data)


def answered(data: bytes) -> None:
    """A tunnel request whose peer answers `data`: UpstreamUnavailable before the first byte,
    ResponseCut after it, else a status and the body's chunks."""
    tunnel = TunnelUpstream(Links(data), lambda *counted: None, 1.0)

    async def request() -> None:
        response = await tunnel.open("10.0.0.2:7000", "/v1/completions", "alpha", b"{}", "r-1")
        assert 100 <= response.status <= 599 and isinstance(response.content_type, str)
        try:
            async for chunk in response.chunks:
                assert isinstance(chunk, bytes)
        except ResponseCut:
            pass
        await response.close()

    try:
        run(request)
    except UpstreamUnavailable:
        pass


def test_a_valid_tunnel_answer_is_read_whole() -> None:
    async def request() -> tuple[int, str, list[bytes]]:
        data = frames(b'{"status": 200, "content_type": "text/event-stream"}', b"data: 1", b"data: 2", b"")
        response = await TunnelUpstream(Links(data), lambda *counted: None, 1.0).open("10.0.0.2:7000", "/v1/completions", "alpha", b"{}", "r-1")
        return response.status, response.content_type, [chunk async for chunk in response.chunks]

    assert run(request) == (200, "text/event-stream", [b"data: 1", b"data: 2"])


REPLY_HEADS = st.fixed_dictionaries({}, optional={"status": st.just(200) | JSON_VALUES, "content_type": st.just("text/event-stream") | JSON_VALUES})


@fuzz(200)
@given(st.builds(lambda head, body: head_stream(head, body), REPLY_HEADS, st.binary(max_size=40)) | st.binary(max_size=100))
@example(frames(b"{}"))
@example(frames(b'{"status": "x"}'))
@example(frames(b'{"status": 200, "content_type": 3}'))
@example(frames(b"[1]"))
@example(frames(deeply_nested()))
def test_a_tunnel_answer_is_a_response_or_unavailable_or_cut(data: bytes) -> None:
    answered(data)


# --- the ping probe's answers ----------------------------------------------------------------------


@fuzz(200)
@given(st.binary(max_size=40), st.binary(min_size=8, max_size=8))
def test_any_datagram_is_an_answer_or_not(packet: bytes, source_cid: bytes) -> None:
    assert ping.answers(packet, source_cid) in (True, False)
    negotiation = bytes([0x80]) + bytes(4) + bytes([len(source_cid)]) + source_cid + bytes([0]) + bytes.fromhex("00000001")
    assert ping.answers(negotiation, source_cid)
