import pytest

from services.placement.planner import GIB, ModelNeed, memory_needed, plan, role_of


@pytest.mark.parametrize(
    ("sizes", "offered", "modes"),
    [
        ([1 * GIB], 4 * GIB, ["solo"]),
        ([4 * GIB], 4 * GIB, ["unserved"]),  # no room for headroom and context
        ([1 * GIB, 1 * GIB], 3 * GIB, ["solo", "solo"]),
        ([2 * GIB, 1 * GIB], 3 * GIB, ["solo", "unserved"]),  # first come, first served
        ([], 4 * GIB, []),
    ],
)
def test_plan_serves_models_solo_while_they_fit(sizes: list[int], offered: int, modes: list[str]) -> None:
    needs = [ModelNeed(f"m{i}", size) for i, size in enumerate(sizes)]
    assignments = plan(needs, offered, headroom=0.1, context_bytes=256 * 1024**2)
    assert [a.mode for a in assignments] == modes
    assert [a.model_id for a in assignments] == [n.model_id for n in needs]


def test_unserved_reason_names_the_shortfall() -> None:
    (assignment,) = plan([ModelNeed("big", 8 * GIB)], 4 * GIB, headroom=0.1, context_bytes=0)
    assert "too big" in assignment.reason and "8.80 GiB" in assignment.reason


def test_memory_needed_adds_headroom_and_context() -> None:
    assert memory_needed(1000, 0.1, 50) == 1150


def test_role_is_serving_only_with_a_solo_model() -> None:
    assert role_of(plan([ModelNeed("a", 1)], GIB, 0.1, 0)) == "serving"
    assert role_of(plan([ModelNeed("a", 2 * GIB)], GIB, 0.1, 0)) == "standby"
