"""Admission over real QUIC (two endpoints in one process): a node outside the mesh, or with an
old secret, is refused with the reason on both sides and is served no stream; a member is admitted
both ways with the other's node id; a paired node (a credential, no secret) is admitted both ways
by members and paired nodes alike, until its credential is revoked."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.common.credentials import Kind
from services.gateway.peers.admission import NOT_READY, AdmissionRefused
from services.gateway.peers.framing import StreamKind, encode_frame
from tests.integration.test_rpc_tunnel import SECRET, endpoint, run


@pytest.mark.parametrize(
    ("mesh", "reason"),
    [
        (("mesh-other", SECRET), "unknown mesh 'mesh-other' (this is mesh 'mesh-test')"),
        (("mesh-test", b"o" * 32), "credential not issued by this mesh (an old or forged token, or the mesh key was rotated)"),
    ],
    ids=["another mesh", "an old secret"],
)
def test_a_stranger_is_refused_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture, mesh: tuple[str, bytes], reason: str) -> None:
    async def scenario() -> None:
        served: list[str] = []

        async def gossip(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.append("gossip")

        (member, _), (stranger, stranger_links) = (
            await endpoint(tmp_path, "member", {StreamKind.GOSSIP: gossip}),
            await endpoint(tmp_path, "stranger", mesh=mesh),
        )
        with pytest.raises(AdmissionRefused, match=re.escape(reason)):
            await stranger_links.request(member.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        await asyncio.sleep(0.3)  # the member closes the connection a moment after its refusal frame
        assert served == [] and not member.connections
        member.close()
        stranger.close()

    run(scenario)
    refusals = [getattr(record, "fields", {}).get("reason") for record in caplog.records if record.getMessage() == "peer refused"]
    assert refusals == [reason]  # the member's log says why too


def test_members_are_admitted_both_ways_with_each_others_node_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def answer(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(encode_frame(b"ok"))

        (host, host_links), (worker, _) = await endpoint(tmp_path, "host"), await endpoint(tmp_path, "worker", {StreamKind.GOSSIP: answer})
        reply, peer, _ = await host_links.request(worker.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        assert (reply, peer) == (b"ok", "worker")
        [admitted] = worker.connections
        assert (admitted.peer_node_id, admitted.peer_address) == ("host", host.local().address)
        host.close()
        worker.close()

    run(scenario)


@pytest.mark.parametrize("kinds", [(Kind.MEMBER, Kind.PAIRED), (Kind.PAIRED, Kind.MEMBER), (Kind.PAIRED, Kind.PAIRED)], ids=lambda k: "-".join(k))
def test_a_paired_node_is_admitted_both_ways_with_its_kind(tmp_path: Path, kinds: tuple[Kind, Kind]) -> None:
    async def scenario() -> None:
        async def answer(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(encode_frame(b"ok"))

        (a, a_links), (b, _) = await endpoint(tmp_path, "a", kind=kinds[0]), await endpoint(tmp_path, "b", {StreamKind.GOSSIP: answer}, kind=kinds[1])
        reply, peer, _ = await a_links.request(b.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        assert (reply, peer) == (b"ok", "b")
        [served] = b.connections
        [dialled] = a.connections
        assert served.peer_credential is not None and served.peer_credential.kind == kinds[0]
        assert dialled.peer_credential is not None and dialled.peer_credential.kind == kinds[1]
        a.close()
        b.close()

    run(scenario)


def test_a_revoked_credential_is_refused_and_its_connection_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def answer(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(encode_frame(b"ok"))

        revoked: list[str] = []
        (paired, paired_links), (member, _) = (
            await endpoint(tmp_path, "paired", kind=Kind.PAIRED),
            await endpoint(tmp_path, "member", {StreamKind.GOSSIP: answer}, revoked=revoked),
        )
        await paired_links.request(member.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        revoked.append("paired-paired")  # the credential id endpoint() gave it
        member.drop_revoked(revoked)
        await asyncio.sleep(0.3)
        assert not member.connections
        with pytest.raises(AdmissionRefused, match="was revoked"):
            await paired_links.request(member.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        paired.close()
        member.close()

    run(scenario)


def test_a_node_that_does_not_know_its_mesh_yet_refuses_as_not_ready(tmp_path: Path) -> None:
    """A node still starting (its gateway has no mesh from gossip yet) refuses with NOT_READY: a join
    tries again instead of ending at once as it does when every seed truly refuses."""

    async def scenario() -> None:
        (starting, _), (joiner, joiner_links) = await endpoint(tmp_path, "starting", mesh=("", SECRET)), await endpoint(tmp_path, "joiner")
        with pytest.raises(AdmissionRefused) as refused:
            await joiner_links.request(starting.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        assert refused.value.transient and refused.value.reason.startswith(NOT_READY), refused.value.reason
        starting.close()
        joiner.close()

    run(scenario)


def test_a_joiner_whose_gateway_has_no_credential_yet_is_not_ready_and_tries_again(tmp_path: Path) -> None:
    """A node whose gossip asks for a join before it has told its gateway the credential (seen on a
    loaded machine) fails that try as NOT_READY, which a join tries again, not as a refusal, which
    ends it; once the credential is there it is admitted."""

    async def scenario() -> None:
        async def answer(connection: object, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(encode_frame(b"ok"))

        (member, _), (early, early_links) = await endpoint(tmp_path, "member", {StreamKind.GOSSIP: answer}), await endpoint(tmp_path, "early", credential=False)
        with pytest.raises(AdmissionRefused) as refused:
            await early_links.request(member.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        assert refused.value.transient and refused.value.reason.startswith(NOT_READY), refused.value.reason
        (told, told_links) = await endpoint(tmp_path, "early")  # the same node once gossip told its gateway
        reply, peer, _ = await told_links.request(member.local().address, StreamKind.GOSSIP, b"ping", 10.0)
        assert (reply, peer) == (b"ok", "member")
        for opened in (member, early, told):
            opened.close()

    run(scenario)
