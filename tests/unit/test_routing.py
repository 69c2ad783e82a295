from services.common.records import MeshView, NodeRecord, ServedModel
from services.gateway.routing import NotReady, Target, UnknownModel, route


def view(*served: ServedModel) -> MeshView:
    return MeshView(own=NodeRecord(node_id="me", name="me", served=served))


def test_ready_model_routes_to_its_port_case_insensitively() -> None:
    decision = route(view(ServedModel("SmolLM2", "/p", "ready", port=8001)), "smollm2", now=0)
    assert decision == Target("SmolLM2", "me", 8001)


def test_unknown_model_lists_what_is_served() -> None:
    decision = route(view(ServedModel("b", "/p", "ready", 1), ServedModel("a", "/p", "starting")), "zzz", now=0)
    assert decision == UnknownModel(("a", "b"))


def test_failed_model_says_when_to_retry() -> None:
    decision = route(view(ServedModel("m", "/p", "failed", retry_at=104.2)), "m", now=100.0)
    assert decision == NotReady("m", "failed", 5)


def test_starting_model_asks_for_a_retry_in_a_second() -> None:
    assert route(view(ServedModel("m", "/p", "starting")), "m", now=0) == NotReady("m", "starting", 1)
