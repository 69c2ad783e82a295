"""Gateway process: follows gossip, serves the API and the console, owns the QUIC endpoint to peers."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import grpc

from services.common import clock, credentials, grpc_server, http_server, lifecycle, node_identity
from services.common.logs import event
from services.common.settings import NodeSettings
from services.gateway.app import Approver, create_api_app, create_console_app
from services.gateway.blackboard.service import BoardClient
from services.gateway.demand import DemandReporter
from services.gateway.discovery.lan import LanAnnouncer, version
from services.gateway.discovery.publisher import Publisher
from services.gateway.errors import Conflict, NoServer
from services.gateway.metrics import GatewayMetrics
from services.gateway.mirror import MeshMirror
from services.gateway.openai.relay import Relay
from services.gateway.openai.takeover import TakeoverPolicy
from services.gateway.peers.admission import LocalNode, local_of
from services.gateway.peers.datagrams import datagram_size
from services.gateway.peers.endpoint import PeerEndpoint, StreamHandler, open_endpoint
from services.gateway.peers.framing import StreamKind
from services.gateway.peers.links import GossipHandler, PeerLinks, request_reply
from services.gateway.peers.pairing import PairingServer
from services.gateway.routing import local_port_of, rpc_ports
from services.gateway.servicer import GatewayServicer
from services.gateway.settings import GatewaySettings
from services.gateway.tunnel.client import TunnelUpstream
from services.gateway.tunnel.rpc import RpcTunnels, RpcTunnelServer
from services.gateway.tunnel.server import TunnelServer
from services.gateway.upstream import LocalUpstream
from services.proto.mesh.v1 import gateway_pb2_grpc, gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


def answer_gossip(gossip_stub: gossip_pb2_grpc.GossipAsyncStub) -> GossipHandler:
    """Peers' gossip messages, answered by our gossip service."""

    async def on_gossip(payload: bytes, peer: str) -> bytes | None:
        try:
            reply = await gossip_stub.HandlePeerMessage(gossip_pb2.PeerMessage(payload=payload, peer_node_id=peer), timeout=5.0)
        except grpc.aio.AioRpcError as failure:
            # Our gossip service is stopping or stuck: the peer gets no answer, as from a node down.
            event(log, "gossip service did not answer", logging.WARNING, peer=peer, status=failure.code().name)
            return None
        return reply.payload

    return on_gossip


def peer_handlers(
    gossip_stub: gossip_pb2_grpc.GossipAsyncStub, mirror: MeshMirror, metrics: GatewayMetrics, local_upstream: LocalUpstream
) -> dict[StreamKind, StreamHandler]:
    """What serves each kind of stream an admitted peer opens: gossip messages, relayed HTTP requests, RPC tunnels."""
    return {
        StreamKind.GOSSIP: request_reply(answer_gossip(gossip_stub), metrics.count_peer_bytes),
        StreamKind.HTTP: TunnelServer(lambda model: local_port_of(mirror.view, model), local_upstream, metrics.count_peer_bytes).serve,
        StreamKind.RPC: RpcTunnelServer(lambda: rpc_ports(mirror.view)).serve,
    }


def local_node(mirror: MeshMirror, node_key: credentials.PrivateKey) -> LocalNode:
    """This node as admission tells peers about it, from the mesh view gossip keeps current."""
    return local_of(mirror.view, node_key, clock.now())


async def main(node: NodeSettings, settings: GatewaySettings) -> None:
    mirror = MeshMirror()
    metrics = GatewayMetrics(mirror)
    local_upstream = LocalUpstream(settings.connect_timeout)
    me = node_identity.load_or_create(node.home)
    async with grpc_server.channel(node.address("gossip")) as gossip:
        gossip_stub = gossip_pb2_grpc.GossipStub(gossip)
        endpoint = await open_endpoint(
            settings.peer_host,
            settings.peer_port,
            identity=me,
            local=partial(local_node, mirror, node_identity.private_key(me)),
            handlers=peer_handlers(gossip_stub, mirror, metrics, local_upstream),
            idle_timeout=settings.peer_idle_timeout,
            datagram_bytes=settings.peer_datagram_bytes or datagram_size(settings.peer_host),
            pairing=PairingServer(lambda: mirror.view, gossip_stub, me.fingerprint).serve,
        )
        links = PeerLinks(endpoint, metrics.count_peer_bytes)
        demand = DemandReporter(gossip)
        blackboard = BoardClient(gossip_stub)
        tunnel = TunnelUpstream(links, metrics.count_peer_bytes, settings.connect_timeout)
        relay = Relay(
            mirror,
            metrics,
            local_upstream,
            tunnel,
            demand.count,
            TakeoverPolicy(settings.takeovers, settings.takeover_wait),
            settings.queue,
            settings.queue_wait,
        )
        rpc_tunnels = RpcTunnels(links, metrics.count_rpc_bytes, settings.connect_timeout)
        grpc = await grpc_server.start(node.gateway_grpc_port, lambda s: gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayServicer(links, rpc_tunnels), s))
        # Health: SERVING once the QUIC endpoint (above) and the HTTP servers listen, while gossip's Watch can be followed.
        console_up, api_up = asyncio.Event(), asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(mirror.follow(gossip))
                group.create_task(demand.run())
                group.create_task(drop_revoked(mirror, endpoint))
                if settings.announce:
                    group.create_task(LanAnnouncer(mirror, settings.peer_host, settings.invite_addresses, version()).run())
                group.create_task(Publisher(mirror, settings.relays, node.home, settings.publish_interval, version()).run())
                group.create_task(
                    http_server.serve(
                        create_console_app(settings, mirror, me.fingerprint, relay, metrics, metrics_urls(node, settings), approver(gossip_stub), blackboard),
                        settings.console_host,
                        settings.console_port,
                        console_up,
                    )
                )
                if settings.api_enabled:
                    group.create_task(
                        http_server.serve(create_api_app(settings, mirror, relay, metrics, blackboard), settings.api_host, settings.api_port, api_up)
                    )
                else:
                    api_up.set()
                group.create_task(grpc_server.serve_while_reachable(grpc.health, {"gossip": gossip}, (console_up, api_up)))
        finally:
            # Leave while the endpoint still carries the farewell; gossip may be stopping too.
            try:
                await gossip_stub.Leave(gossip_pb2.LeaveRequest(), timeout=2.0)
            except Exception:  # noqa: BLE001 - gossip already gone: peers will detect us as dead instead
                pass
            rpc_tunnels.close_all()
            endpoint.close()
            await local_upstream.close()
            await grpc.stop(grace=1.0)


def approver(gossip_stub: gossip_pb2_grpc.GossipAsyncStub) -> Approver:
    """The console's Approve button: gossip issues the credential (members only) and spreads it."""

    async def approve(code: str) -> dict[str, str]:
        try:
            change = await gossip_stub.Approve(gossip_pb2.ApproveRequest(code=code), timeout=5.0)
        except grpc.aio.AioRpcError as failure:
            if failure.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise Conflict(failure.details() or "refused") from None
            raise NoServer(f"the gossip service did not answer ({failure.code().name}); retry", 1) from None
        return {"node_id": change.node_id, "name": change.name, "credential_id": change.credential_id}

    return approve


async def drop_revoked(mirror: MeshMirror, endpoint: PeerEndpoint) -> None:
    """Close connections of peers whose credential was revoked, as soon as the revocation arrives."""
    seen, revoked = -1, frozenset[str]()
    while True:
        seen = await mirror.changes.wait_newer(seen)
        if mirror.view.revoked != revoked:
            revoked = mirror.view.revoked
            endpoint.drop_revoked(revoked)


def metrics_urls(node: NodeSettings, settings: GatewaySettings) -> dict[str, str]:
    """Where Prometheus finds each of this node's four services (all on this machine's loopback)."""
    gateway = f"http://127.0.0.1:{settings.console_port}/metrics"
    return {"gateway": gateway, **{name: f"http://127.0.0.1:{getattr(node, f'{name}_metrics_port')}/metrics" for name in ("gossip", "placement", "runner")}}


def main_from_environment() -> None:
    lifecycle.run_service("gateway", main, GatewaySettings)
