"""Admission over real QUIC (two endpoints in one process): a node outside the mesh, or with an
old secret, is refused with the reason on both sides and is served no stream; a member is admitted
both ways with the other's node id."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.gateway.peers.admission import AdmissionRefused
from services.gateway.peers.framing import StreamKind, encode_frame
from tests.integration.test_rpc_tunnel import SECRET, endpoint, run


@pytest.mark.parametrize(
    ("mesh", "reason"),
    [
        (("mesh-other", SECRET), "unknown mesh 'mesh-other' (this is mesh 'mesh-test')"),
        (("mesh-test", b"o" * 32), "wrong mesh secret (an old or forged invite token)"),
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
