"""gRPC adapter of the gateway: proto in, PeerLinks call, proto out. Nothing else."""

from __future__ import annotations

import asyncio

from services.common.errors import DeadlineExceeded, PermissionDenied, Unavailable
from services.common.grpc_server import Context
from services.gateway.peers.endpoint import AdmissionRefused
from services.gateway.peers.framing import FrameError, StreamKind
from services.gateway.peers.links import PeerLinks
from services.gateway.tunnel.rpc import RpcTunnels
from services.proto.mesh.v1 import gateway_pb2, gateway_pb2_grpc


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, links: PeerLinks, rpc_tunnels: RpcTunnels) -> None:
        self.links = links
        self.rpc_tunnels = rpc_tunnels

    async def OpenRpcTunnel(self, request: gateway_pb2.RpcTunnelRequest, context: Context) -> gateway_pb2.RpcTunnel:
        endpoint, local_port = await self.rpc_tunnels.reach(request.address, request.port, request.direct_host)
        return gateway_pb2.RpcTunnel(local_port=local_port, endpoint=endpoint)

    async def CloseRpcTunnel(self, request: gateway_pb2.RpcTunnel, context: Context) -> gateway_pb2.RpcTunnel:
        self.rpc_tunnels.close(request.local_port)
        return request

    async def SendToPeer(self, request: gateway_pb2.PeerRequest, context: Context) -> gateway_pb2.PeerReply:
        try:
            reply, peer, rtt = await self.links.request(request.address, StreamKind.GOSSIP, request.payload, request.timeout or 5.0)
        # The peer's failures, told in the words gossip records as the peer's reason (join_error).
        except AdmissionRefused as refused:
            if refused.transient:  # the peer is still starting: worth another try
                raise Unavailable(f"{request.address}: {refused}") from refused
            raise PermissionDenied(f"refused: {refused}") from refused
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from {request.address} in {request.timeout:.1f}s") from None
        except (ConnectionError, OSError, FrameError) as failure:
            raise Unavailable(f"{request.address}: {failure}") from failure
        except asyncio.IncompleteReadError:
            raise Unavailable(f"{request.address}: closed the stream before answering") from None
        return gateway_pb2.PeerReply(payload=reply, peer_node_id=peer, rtt=rtt)
