"""A conversation keeps one affinity key for all its turns, so it stays on one node (KV cache) or one MoE shard."""

from __future__ import annotations

from services.common.records import Assignment, MeshView, NodeRecord, Peer, ServedModel
from services.gateway.openai.chat.schemas import ChatCompletionRequest
from services.gateway.routing import route

SYSTEM = {"role": "system", "content": "You are terse."}


def turns(opening: str, system: bool = True) -> list[ChatCompletionRequest]:
    """The three requests a client sends for a three-turn conversation."""
    messages = [SYSTEM] if system else []
    requests = []
    for n, question in enumerate((opening, "And then?", "Why?")):
        messages = [*messages, {"role": "user", "content": question}]
        requests.append(ChatCompletionRequest(model="m", messages=messages))
        messages = [*messages, {"role": "assistant", "content": f"answer {n}"}]
    return requests


def test_every_turn_of_a_conversation_has_the_same_key() -> None:
    for system in (True, False):
        keys = {request.affinity() for request in turns("Name three colours.", system)}
        assert len(keys) == 1 and next(iter(keys))


def test_conversations_with_another_opening_or_system_text_have_other_keys() -> None:
    base = turns("Name three colours.")[0].affinity()
    assert turns("Name three birds.")[0].affinity() != base
    other_system = ChatCompletionRequest(model="m", messages=[{"role": "system", "content": "Be verbose."}, {"role": "user", "content": "Name three colours."}])
    assert other_system.affinity() != base


def test_the_user_field_wins() -> None:
    first, later = turns("Name three colours.")[0], turns("Something else.")[2]
    assert first.model_copy(update={"user": "u1"}).affinity() == later.model_copy(update={"user": "u1"}).affinity() == "user:u1"


def test_a_conversation_stays_on_one_shard_of_an_expert_split() -> None:
    def shard_node(node_id: str) -> NodeRecord:
        return NodeRecord(
            node_id, node_id, "serving", served=(ServedModel("m", "/m.gguf", "ready", 9000),), assignments=(Assignment("m", "moe-shard", "shard"),)
        )

    view = MeshView(own=shard_node("a"), peers=tuple(Peer(shard_node(n), f"{n}:1", "alive", 0.001) for n in "bcd"))
    for opening in (f"Question {i}" for i in range(20)):
        chosen = {route(view, "m", 0.0, affinity=request.affinity())[0].node_id for request in turns(opening)}
        assert len(chosen) == 1
