"""Admission: on a new connection, both sides prove they hold the mesh secret before any other stream.

Owns the exchange on the connection's admission stream, what it needs to know about this node
(LocalNode) and refusals with their reasons (AdmissionRefused). The proofs are proof.py's (pure);
closing a refused connection and serving an admitted one are endpoint.py's. The order (client =
the side that connected):
  client -> server  Hello(mesh_id, client nonce, client fingerprint, node id, address)
  server -> client  Challenge(server nonce, node id), or Challenge(refusal) for another mesh
  client -> server  Proof(HMAC(secret, "client" | transcript))
  server -> client  Result(admitted, HMAC(secret, "server" | transcript)) or Result(refused, reason)
A stranger without the secret learns nothing but the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from services.gateway.peers import proof
from services.gateway.peers.framing import StreamKind, encode_frame, read_frame
from services.proto.mesh.v1 import peer_pb2


@dataclass(frozen=True)
class LocalNode:
    """What admission needs to know about this node, read fresh for every new connection."""

    mesh_id: str
    secret: bytes
    node_id: str
    address: str  # where peers reach our endpoint, told to the server we connect to


@dataclass(frozen=True)
class AdmittedClient:
    """A client that proved it holds the secret, as it named itself in its hello."""

    node_id: str
    address: str


class AdmissionRefused(Exception):
    """Admission failed; the message says why. `by_us`: this side refused the other (the connection
    is to be closed with the reason); otherwise the other side refused us or the connection closed."""

    def __init__(self, reason: str, *, by_us: bool, peer: str = "?", address: str = "?") -> None:
        super().__init__(reason)
        self.reason = reason
        self.by_us = by_us
        self.peer = peer  # the refused side's node id and address, as far as it told them
        self.address = address


async def admit_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: LocalNode, fingerprint: str) -> AdmittedClient:
    """Server side, on the client's admission stream (its kind byte read); `fingerprint`: our
    certificate's. Raises AdmissionRefused (by us) once the refusal frame is written."""
    hello = peer_pb2.AdmissionHello.FromString(await read_frame(reader))
    if hello.mesh_id != local.mesh_id:
        reason = f"unknown mesh {hello.mesh_id!r} (this is mesh {local.mesh_id!r})"
        raise _refusal(writer, peer_pb2.AdmissionChallenge(refusal=reason), reason, hello)
    nonce = proof.new_nonce()
    _write(writer, peer_pb2.AdmissionChallenge(nonce=nonce, node_id=local.node_id))
    given = peer_pb2.AdmissionProof.FromString(await read_frame(reader)).proof
    transcript = proof.transcript(local.mesh_id, hello.fingerprint, fingerprint, hello.nonce, nonce)
    if not proof.check(local.secret, "client", transcript, given):
        reason = "wrong mesh secret (an old or forged invite token)"
        raise _refusal(writer, peer_pb2.AdmissionResult(admitted=False, reason=reason), reason, hello)
    _write(writer, peer_pb2.AdmissionResult(admitted=True, proof=proof.prove(local.secret, "server", transcript)))
    return AdmittedClient(hello.node_id, hello.address)


async def admit_to_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    local: LocalNode,
    fingerprints: tuple[str, str],
    closed_reason: Callable[[], str],
) -> str:
    """Client side, on a new stream: prove we hold the secret and check that the server does too.
    `fingerprints`: (ours, the server's); `closed_reason`: why the connection closed, should it
    close mid-way. The server's node id, or AdmissionRefused."""
    nonce = proof.new_nonce()
    hello = peer_pb2.AdmissionHello(mesh_id=local.mesh_id, nonce=nonce, fingerprint=fingerprints[0], node_id=local.node_id, address=local.address)
    writer.write(bytes([StreamKind.ADMISSION]) + encode_frame(hello.SerializeToString()))
    challenge = peer_pb2.AdmissionChallenge.FromString(await _read_answer(reader, closed_reason))
    if challenge.refusal or not challenge.nonce:
        raise AdmissionRefused(challenge.refusal or "refused", by_us=False)
    transcript = proof.transcript(local.mesh_id, *fingerprints, nonce, challenge.nonce)
    _write(writer, peer_pb2.AdmissionProof(proof=proof.prove(local.secret, "client", transcript)))
    result = peer_pb2.AdmissionResult.FromString(await _read_answer(reader, closed_reason))
    if not result.admitted:
        raise AdmissionRefused(result.reason, by_us=False)
    if not proof.check(local.secret, "server", transcript, result.proof):
        raise AdmissionRefused("peer failed to prove it holds the mesh secret", by_us=True)
    return challenge.node_id


def _write(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(encode_frame(message.SerializeToString()))


def _refusal(writer: asyncio.StreamWriter, answer: Message, reason: str, hello: peer_pb2.AdmissionHello) -> AdmissionRefused:
    """Tell the client why it is refused; the exception to raise (the caller closes the connection)."""
    _write(writer, answer)
    return AdmissionRefused(reason, by_us=True, peer=hello.node_id or "?", address=hello.address or "?")


async def _read_answer(reader: asyncio.StreamReader, closed_reason: Callable[[], str]) -> bytes:
    """The server's next frame; a server that closes instead refused us (its close says why)."""
    try:
        return await read_frame(reader)
    except asyncio.IncompleteReadError:
        raise AdmissionRefused(closed_reason() or "connection closed during admission", by_us=False) from None
