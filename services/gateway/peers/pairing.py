"""Pairing: a new machine asks a member to let it in, both show a short code, a member approves it,
and the new node receives its own credential over the QUIC channel (TLS 1.3), never the secret.

Owns the PAIRING stream, the one a connection may open before admission: the member's side
(`PairingServer.serve`: register the request with gossip, which shows it on every member, then wait
for a member's approval to arrive by gossip) and the joiner's (`ask`, run by the CLI's
--join-nearby before the node starts). The code is commit-then-reveal: the joiner commits to its
nonce before it sees the member's, so a man in the middle (two TLS sessions with two different
certificates) cannot choose nonces that make both sides show the same code; a passive listener sees
only TLS. `code()` is the pure part.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message

from services.common import addresses, clock, credentials
from services.common.credentials import Credential, CredentialError
from services.common.logs import event
from services.common.node_identity import NodeIdentity, fingerprint_of, private_key
from services.common.records import MeshView, PairingRequest
from services.common.records_proto import pairing_to_proto
from services.gateway.peers.endpoint import ALPN
from services.gateway.peers.framing import StreamKind, encode_frame, read_frame
from services.proto.mesh.v1 import gossip_pb2_grpc, peer_pb2

log = logging.getLogger(__name__)

NONCE_BYTES = 16
CODE_DIGITS = 6
WAIT_FOR_APPROVAL = 600.0  # seconds: gossip's access.PAIRING_TTL; then the joiner asks again
MAX_NAME = 64
KEEPALIVE = 5.0  # seconds between PINGs while waiting: well under any idle timeout of ours


def code(server_fingerprint: str, joiner_key: bytes, joiner_nonce: bytes, member_nonce: bytes) -> str:
    """The short code both machines show: bound to the member's certificate as the joiner saw it,
    the joiner's key and both nonces."""
    digest = hashlib.sha256(b"mesh-llm pairing\0" + server_fingerprint.encode() + b"\0" + joiner_key + joiner_nonce + member_nonce).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def commitment(nonce: bytes) -> bytes:
    return hashlib.sha256(b"mesh-llm pairing commitment\0" + nonce).digest()


class PairingServer:
    """The member's side: one request per stream, answered once a member approves it."""

    def __init__(self, view: Callable[[], MeshView], gossip: gossip_pb2_grpc.GossipAsyncStub, fingerprint: str) -> None:
        self.view = view
        self.gossip = gossip
        self.fingerprint = fingerprint

    async def serve(self, connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked = peer_pb2.PairRequest.FromString(await read_frame(reader))
        view = self.view()
        refusal = _bad_request(asked) or ("" if view.mesh_id else "this node is not in a mesh yet")
        if refusal:
            _write(writer, peer_pb2.PairChallenge(refusal=refusal))
            return
        nonce = secrets.token_bytes(NONCE_BYTES)
        _write(writer, peer_pb2.PairChallenge(nonce=nonce, mesh_id=view.mesh_id))
        revealed = peer_pb2.PairReveal.FromString(await read_frame(reader)).nonce
        if commitment(revealed) != asked.commitment:
            _write(writer, peer_pb2.PairOutcome(refusal="the revealed nonce does not match its commitment"))
            return
        shown = code(self.fingerprint, asked.public_key, revealed, nonce)
        request = PairingRequest(shown, asked.node_id, asked.name[:MAX_NAME], asked.public_key, view.own.node_id, clock.now())
        await self.gossip.RequestPairing(pairing_to_proto(request), timeout=5.0)
        event(log, "pairing requested", node=asked.node_id, name=asked.name[:MAX_NAME], code=shown)
        _write(writer, peer_pb2.PairOutcome(code=shown))
        issued = await self._approval(asked.public_key)
        if issued is None:
            _write(writer, peer_pb2.PairOutcome(refusal=f"not approved within {WAIT_FOR_APPROVAL:.0f} s: ask again"))
            return
        view = self.view()
        authority = credentials.raw_public(credentials.authority_key(view.mesh_id, view.secret)) if view.secret else view.authority
        dial = [view.address, *(p.address for p in view.peers if p.address)]
        _write(writer, peer_pb2.PairOutcome(code=shown, credential=issued.encode(), authority=authority, addresses=dial))
        event(log, "pairing approved", node=asked.node_id, credential=issued.credential_id)
        await writer.drain()

    async def _approval(self, public_key: bytes) -> Credential | None:
        """The credential a member issued for `public_key`, as gossip brings it; None past the wait."""
        deadline = time.monotonic() + WAIT_FOR_APPROVAL
        while time.monotonic() < deadline:
            for encoded in self.view().paired:
                try:
                    issued = credentials.decode(encoded)
                except CredentialError:
                    continue
                if issued.public_key == public_key:
                    return issued
            await asyncio.sleep(0.25)
        return None


def _bad_request(asked: peer_pb2.PairRequest) -> str:
    if not asked.node_id or len(asked.node_id) > MAX_NAME or len(asked.commitment) != 32:
        return "malformed pairing request"
    try:
        serialization.load_der_public_key(asked.public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # UnsupportedAlgorithm: a well-formed key of a curve cryptography lacks
        return "malformed pairing request: not a public key"
    return ""


# --- the joiner's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    mesh_id: str
    credential: Credential
    authority: bytes
    addresses: tuple[str, ...]


class PairingFailed(Exception):
    """The member refused, the connection failed or the credential did not check out; says why."""


async def ask(address: str, identity: NodeIdentity, node_id: str, name: str, on_code: Callable[[str], None], timeout: float = WAIT_FOR_APPROVAL) -> Paired:
    """Ask the member at `address` to let this node in; `on_code` gets the code to show while a
    member approves. Returns the credential it issued, checked, or raises PairingFailed."""
    host, port = addresses.split(address)
    configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE, server_name="mesh-llm", idle_timeout=60.0)
    configuration.load_cert_chain(identity.certificate_path, identity.key_path)
    key = credentials.public_der(private_key(identity))
    try:
        async with asyncio.timeout(timeout + 30), connect(host, port, configuration=configuration) as connection:
            certificate = connection._quic.tls._peer_certificate  # noqa: SLF001 - aioquic has no public accessor
            fingerprint = fingerprint_of(certificate) if certificate is not None else ""
            reader, writer = await connection.create_stream()
            keepalive = asyncio.create_task(_keep_alive(connection))  # the wait for approval sends nothing else
            try:
                return await _exchange(reader, writer, fingerprint, key, node_id, name, on_code)
            finally:
                keepalive.cancel()
    except TimeoutError:
        raise PairingFailed(f"{address}: no approval in time") from None
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as failure:
        raise PairingFailed(f"{address}: {failure or type(failure).__name__}") from None


async def _keep_alive(connection: QuicConnectionProtocol) -> None:
    """PING every few seconds: the member's endpoint closes a connection idle past its timeout."""
    while True:
        await asyncio.sleep(KEEPALIVE)
        await connection.ping()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fingerprint: str, key: bytes, node_id: str, name: str, on_code: Callable[[str], None]
) -> Paired:
    nonce = secrets.token_bytes(NONCE_BYTES)
    request = peer_pb2.PairRequest(node_id=node_id, name=name[:MAX_NAME], public_key=key, commitment=commitment(nonce))
    writer.write(bytes([StreamKind.PAIRING]) + encode_frame(request.SerializeToString()))
    challenge = peer_pb2.PairChallenge.FromString(await read_frame(reader))
    if challenge.refusal or not challenge.nonce:
        raise PairingFailed(challenge.refusal or "refused")
    _write(writer, peer_pb2.PairReveal(nonce=nonce))
    shown = code(fingerprint, key, nonce, challenge.nonce)
    pending = peer_pb2.PairOutcome.FromString(await read_frame(reader))
    if pending.refusal:
        raise PairingFailed(pending.refusal)
    if pending.code != shown:
        raise PairingFailed("the member shows another code than ours: someone is in between (try again on a network you trust)")
    on_code(shown)
    outcome = peer_pb2.PairOutcome.FromString(await read_frame(reader))
    if outcome.refusal:
        raise PairingFailed(outcome.refusal)
    try:
        issued = credentials.decode(outcome.credential)
    except CredentialError as bad:
        raise PairingFailed(f"the member sent no valid credential: {bad}") from None
    reason = credentials.refusal(issued, challenge.mesh_id, outcome.authority, (), node_id)
    if reason or issued.public_key != key:
        raise PairingFailed(f"the member sent a credential that does not admit us: {reason or 'another key'}")
    return Paired(challenge.mesh_id, issued, outcome.authority, tuple(outcome.addresses))


def _write(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(encode_frame(message.SerializeToString()))
