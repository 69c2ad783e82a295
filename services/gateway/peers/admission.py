"""Admission: on a new connection, both sides prove they hold a credential of the mesh before any other stream.

Owns the exchange on the connection's admission stream, what it needs to know about this node
(LocalNode) and refusals with their reasons (AdmissionRefused). Credentials and signatures are
credentials.py's (pure); closing a refused connection and serving an admitted one are endpoint.py's.
The order (client = the side that connected):
  client -> server  Hello(mesh_id, client nonce, client fingerprint, node id, address, client credential)
  server -> client  Challenge(server nonce, node id, server credential, server signature of the transcript),
                    or Challenge(refusal) for another mesh or a credential it does not admit
  client -> server  Proof(client signature of the transcript)
  server -> client  Result(admitted) or Result(refused, reason)
Each credential is checked against the mesh authority's public key and the revocations this node
knows; each signature is by the credential's key over the mesh id, both certificates' fingerprints
(the client's as it states it, the server's as the client's TLS saw it) and both fresh nonces, so
a proof is valid for one side of one handshake only. Members, paired nodes and public joiners all
pass the same exchange; what they are admitted as (the credential's kind) decides what else they
are told (the mesh secret only to members: links.py). A stranger learns nothing but the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.message import DecodeError, Message

from services.common import credentials
from services.common.credentials import Credential, CredentialError, Kind
from services.common.records import MeshView
from services.gateway.peers import proof
from services.gateway.peers.framing import FrameError, StreamKind, encode_frame, read_frame
from services.proto.mesh.v1 import peer_pb2

Answer = TypeVar("Answer", bound=Message)  # a message the server answers with


@dataclass(frozen=True)
class LocalNode:
    """What admission needs to know about this node, read fresh for every new connection."""

    mesh_id: str
    node_id: str
    address: str  # where peers reach our endpoint, told to the server we connect to
    credential: Credential | None  # None: this node holds no credential yet (it admits nobody)
    signing_key: credentials.PrivateKey  # the key our credential binds
    authority: bytes  # the mesh authority's public key: what peers' credentials must be signed by
    revoked: Collection[str] = ()  # credential ids this node refuses


def local_of(view: MeshView, node_key: credentials.PrivateKey, now: float) -> LocalNode:
    """This node as admission presents it: a member issues its own credential from the mesh secret
    (the authority's key is derived from it); a paired or public node has the one it was given."""
    if view.secret:
        authority = credentials.authority_key(view.mesh_id, view.secret)
        public = credentials.public_der(node_key)
        own = credentials.issue(authority, view.mesh_id, Kind.MEMBER, view.own.node_id, public, now, f"member-{view.own.node_id}")
        return LocalNode(view.mesh_id, view.own.node_id, view.address, own, node_key, credentials.raw_public(authority), view.revoked)
    try:
        given = credentials.decode(view.credential) if view.credential else None
    except CredentialError:
        given = None  # a damaged mesh.json: this node admits nobody and is admitted nowhere, and says so
    signing: credentials.PrivateKey = ed25519.Ed25519PrivateKey.from_private_bytes(view.signing_key) if view.signing_key else node_key
    return LocalNode(view.mesh_id, view.own.node_id, view.address, given, signing, view.authority, view.revoked)


@dataclass(frozen=True)
class Admitted:
    """The other side of an admitted connection: who it said it is, and its credential."""

    node_id: str
    address: str
    credential: Credential

    @property
    def member(self) -> bool:
        return self.credential.kind == Kind.MEMBER


# How a refusal by a node still starting begins (it has no mesh or credential yet): not a verdict
# on the caller, who may try again (a join keeps trying; a refusal of every seed ends it).
NOT_READY = "not ready yet: "


class AdmissionRefused(Exception):
    """Admission failed; the message says why. `by_us`: this side refused the other (the connection
    is to be closed with the reason); otherwise the other side refused us or the connection closed."""

    def __init__(self, reason: str, *, by_us: bool, peer: str = "?", address: str = "?") -> None:
        super().__init__(reason)
        self.reason = reason
        self.by_us = by_us
        self.peer = peer  # the refused side's node id and address, as far as it told them
        self.address = address

    @property
    def transient(self) -> bool:
        """The other side refused only because it is still starting (NOT_READY)."""
        return self.reason.startswith(NOT_READY)


async def admit_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: LocalNode, fingerprint: str) -> Admitted:
    """Server side, on the client's admission stream (its kind byte read); `fingerprint`: our
    certificate's. Raises AdmissionRefused (by us) once the refusal frame is written."""
    hello = peer_pb2.AdmissionHello.FromString(await read_frame(reader))
    if not local.mesh_id or local.credential is None:
        # Seen on a loaded machine: a node dialled before its gossip told its gateway the mesh.
        reason = NOT_READY + "this node does not know its mesh and credential yet"
        raise _refusal(writer, peer_pb2.AdmissionChallenge(refusal=reason), reason, hello)
    if hello.mesh_id != local.mesh_id:
        reason = f"unknown mesh {hello.mesh_id!r} (this is mesh {local.mesh_id!r})"
        raise _refusal(writer, peer_pb2.AdmissionChallenge(refusal=reason), reason, hello)
    client, reason = _checked(hello.credential, local, hello.node_id)
    if client is None:
        raise _refusal(writer, peer_pb2.AdmissionChallenge(refusal=reason), reason, hello)
    nonce = proof.new_nonce()
    transcript = proof.transcript(local.mesh_id, hello.fingerprint, fingerprint, hello.nonce, nonce)
    signature = credentials.sign(local.signing_key, "server", transcript)
    _write(writer, peer_pb2.AdmissionChallenge(nonce=nonce, node_id=local.node_id, credential=local.credential.encode(), signature=signature))
    given = peer_pb2.AdmissionProof.FromString(await read_frame(reader)).proof
    if not credentials.signed(client.public_key, "client", transcript, given):
        reason = "the client's proof does not match its credential's key"
        raise _refusal(writer, peer_pb2.AdmissionResult(admitted=False, reason=reason), reason, hello)
    _write(writer, peer_pb2.AdmissionResult(admitted=True))
    return Admitted(hello.node_id, hello.address, client)


async def admit_to_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    local: LocalNode,
    fingerprints: tuple[str, str],
    closed_reason: Callable[[], str],
) -> Admitted:
    """Client side, on a new stream: prove we hold a credential and check that the server does too.
    `fingerprints`: (ours, the server's); `closed_reason`: why the connection closed, should it
    close mid-way. The server as admitted, or AdmissionRefused."""
    if local.credential is None:
        # Seen on a loaded machine: gossip sent its join before it told this gateway the credential.
        raise AdmissionRefused(NOT_READY + "this node holds no credential of the mesh yet", by_us=True)
    nonce = proof.new_nonce()
    hello = peer_pb2.AdmissionHello(
        mesh_id=local.mesh_id, nonce=nonce, fingerprint=fingerprints[0], node_id=local.node_id, address=local.address, credential=local.credential.encode()
    )
    writer.write(bytes([StreamKind.ADMISSION]) + encode_frame(hello.SerializeToString()))
    challenge = await _read_answer(reader, closed_reason, peer_pb2.AdmissionChallenge)
    if challenge.refusal or not challenge.nonce:
        raise AdmissionRefused(challenge.refusal or "refused", by_us=False)
    server, reason = _checked(challenge.credential, local, challenge.node_id)
    transcript = proof.transcript(local.mesh_id, *fingerprints, nonce, challenge.nonce)
    if server is None:
        raise AdmissionRefused(f"peer's {reason}", by_us=True)
    if not credentials.signed(server.public_key, "server", transcript, challenge.signature):
        raise AdmissionRefused("peer failed to prove its credential is its own", by_us=True)
    _write(writer, peer_pb2.AdmissionProof(proof=credentials.sign(local.signing_key, "client", transcript)))
    result = await _read_answer(reader, closed_reason, peer_pb2.AdmissionResult)
    if not result.admitted:
        raise AdmissionRefused(result.reason, by_us=False)
    return Admitted(challenge.node_id, "", server)


def _checked(encoded: bytes, local: LocalNode, node_id: str) -> tuple[Credential | None, str]:
    """The other side's credential if it admits `node_id` here, else None and why not."""
    if not encoded:
        return None, "no credential (an invite token, pairing or a public-join token gives one)"
    try:
        credential = credentials.decode(encoded)
    except CredentialError as bad:
        return None, f"malformed credential: {bad}"
    reason = credentials.refusal(credential, local.mesh_id, local.authority, local.revoked, node_id)
    return (None, reason) if reason else (credential, "")


def _write(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(encode_frame(message.SerializeToString()))


def _refusal(writer: asyncio.StreamWriter, answer: Message, reason: str, hello: peer_pb2.AdmissionHello) -> AdmissionRefused:
    """Tell the client why it is refused; the exception to raise (the caller closes the connection)."""
    _write(writer, answer)
    return AdmissionRefused(reason, by_us=True, peer=hello.node_id or "?", address=hello.address or "?")


async def _read_answer(reader: asyncio.StreamReader, closed_reason: Callable[[], str], kind: type[Answer]) -> Answer:
    """The server's next message; a server that closes instead refused us (its close says why), and
    we refuse one that answers with anything but the message (the connection is closed)."""
    try:
        return kind.FromString(await read_frame(reader))
    except asyncio.IncompleteReadError:
        raise AdmissionRefused(closed_reason() or "connection closed during admission", by_us=False) from None
    except (FrameError, DecodeError) as bad:
        raise AdmissionRefused(f"malformed admission answer: {bad}", by_us=True) from None
