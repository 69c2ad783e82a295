"""Performing a plan's actions through this node's siblings: the runner, gossip and the gateway.

Each action is one call (through services/common/calls.py: a sibling away is waited for, never a
reason to stop); its answer becomes facts for the next plan (what the runner now runs, a model
read, a tunnel's port). A sibling that refuses an action on purpose (a model file gone, llama.cpp's
binaries missing) is logged and left to the next round. Owns no decisions.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import grpc

from services.common import calls
from services.common.logs import event
from services.common.records import SelfUpdate, ServedModel
from services.common.records_proto import experts_from_proto, experts_to_proto, served_from_proto, update_to_proto
from services.placement.actions import Action, Fetch, Inspect, OpenTunnel, Publish, Serve, ServeRpc, Stop
from services.placement.facts import Facts, Inspection, Key, LlamaRequest, RpcRequest
from services.proto.mesh.v1 import gateway_pb2, gateway_pb2_grpc, gossip_pb2_grpc, runner_pb2, runner_pb2_grpc

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, runner: runner_pb2_grpc.RunnerAsyncStub, gossip: gossip_pb2_grpc.GossipAsyncStub, gateway: gateway_pb2_grpc.GatewayAsyncStub) -> None:
        self.runner = runner
        self.gossip = gossip
        self.gateway = gateway

    async def perform(self, facts: Facts, actions: tuple[Action, ...]) -> Facts:
        """The facts once every action was performed (or refused) in order."""
        for action in actions:
            try:
                facts = await self._perform(facts, action)
            except grpc.aio.AioRpcError as refused:
                # An answer, not an absence (calls.call waits those out): asking again unchanged now
                # would be refused again; the next round asks again, in case the cause went away.
                event(log, "action refused", logging.WARNING, action=type(action).__name__, code=refused.code().name, details=refused.details() or "")
        return facts

    async def _perform(self, facts: Facts, action: Action) -> Facts:
        match action:
            case Publish(values):
                update = update_to_proto(SelfUpdate(fields=frozenset(values), values=dict(values)))
                await calls.call(lambda: self.gossip.UpdateSelf(update, wait_for_ready=True), "UpdateSelf")
                return facts
            case Inspect(model_id, path):
                read = await calls.call(lambda: self.runner.Inspect(runner_pb2.InspectRequest(path=path), wait_for_ready=True), "Inspect")
                return replace(facts, inspections={**facts.inspections, model_id: inspection_from_proto(read)})
            case OpenTunnel(address, port, direct_host):
                request = gateway_pb2.RpcTunnelRequest(address=address, port=port, direct_host=direct_host)
                tunnel = await calls.call(lambda: self.gateway.OpenRpcTunnel(request, wait_for_ready=True), "OpenRpcTunnel")
                endpoint = tunnel.endpoint or f"127.0.0.1:{tunnel.local_port}"
                return replace(facts, tunnels={**facts.tunnels, (address, port): endpoint})
            case Serve(request):
                reply = await calls.call(lambda: self.runner.Serve(serve_to_proto(request), wait_for_ready=True), "Serve")
                return served(facts, request, served_from_proto(reply))
            case ServeRpc(request):
                reply = await calls.call(lambda: self.runner.ServeRpc(serve_rpc_to_proto(request), wait_for_ready=True), "ServeRpc")
                return served(facts, request, served_from_proto(reply))
            case Fetch(model_id):
                fetch = runner_pb2.FetchRequest(spec=model_id, models_dir=str(facts.settings.models_dir))
                await calls.call(lambda: self.runner.Fetch(fetch, wait_for_ready=True), "Fetch")
                return facts
            case Stop(model_id, kind):
                await calls.call(lambda: self.runner.Stop(runner_pb2.StopRequest(model_id=model_id, kind=kind), wait_for_ready=True), "Stop")
                return stopped(facts, (model_id, kind))


def served(facts: Facts, request: LlamaRequest | RpcRequest, state: ServedModel) -> Facts:
    """The facts once the runner took the request: it was sent, and the runner runs what it answered
    (its Watch stream says so too, a moment later)."""
    running = {**facts.running_by_key(), request.key: state}
    return replace(facts, sent={**facts.sent, request.key: request}, running=tuple(running[key] for key in sorted(running)))


def stopped(facts: Facts, key: Key) -> Facts:
    sent = {k: request for k, request in facts.sent.items() if k != key}
    return replace(facts, sent=sent, running=tuple(s for s in facts.running if (s.model_id, s.kind) != key))


def serve_to_proto(request: LlamaRequest) -> runner_pb2.ServeRequest:
    return runner_pb2.ServeRequest(
        model_id=request.model_id,
        path=request.path,
        rpc_endpoints=request.rpc_endpoints,
        worker_layers=request.worker_layers,
        tensor_split=request.tensor_split,
        shard=experts_to_proto(request.shard),
        draft_path=request.draft,
        rpc_key=request.rpc_key,
        host_last=request.host_last,
    )


def serve_rpc_to_proto(request: RpcRequest) -> runner_pb2.ServeRpcRequest:
    return runner_pb2.ServeRpcRequest(
        model_id=request.model_id,
        path=request.path,
        layers=request.layers,
        worker_index=request.worker_index,
        source=request.source,
        fingerprint=request.fingerprint,
        models_dir=request.models_dir,
        rpc_key=request.rpc_key,
        host_last=request.host_last,
    )


def inspection_from_proto(read: runner_pb2.ModelFacts) -> Inspection:
    if read.experts <= 1:
        return Inspection(read.layers)
    return Inspection(read.layers, read.experts, read.experts_used, read.expert_bytes, read.trunk_bytes, experts_from_proto(read.ranking))
