"""One model means one file: three nodes with three different GGUFs under one name (the real
SmolLM2 and two random-weight models written under its name). The node that asks for a split holds
a file nobody else has, so no split is planned (it stays unserved and says why); the two that serve
alone show up in every node's /v1/models as a clash of two files under one id."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.runner.models import resolve
from tests.conftest import SMOLLM2
from tests.synthetic import DenseShape, write_dense

pytestmark = pytest.mark.e2e
SHAPE = DenseShape(layers=4, hidden=256, ffn=512, heads=4, kv_heads=2)


def random_weights(folder: Path, seed: int) -> str:
    """A random-weight model under SmolLM2's own file name: the same model id, another file."""
    target = folder / f"seed{seed}" / f"{SMOLLM2}.gguf"
    target.parent.mkdir(parents=True)
    return str(write_dense(target, SHAPE, resolve(SMOLLM2, folder).path, seed=seed))


def assignment(node) -> dict:
    try:
        (only,) = node.status()["assignments"]
        return only
    except (httpx.HTTPError, ValueError):
        return {}


def fingerprint(node) -> str:
    (file,) = [f for f in node.status()["model_files"] if f["model_id"] == SMOLLM2]
    return file["fingerprint"]


def listed(node) -> list[dict]:
    try:
        return httpx.get(f"{node.api}/v1/models", timeout=5).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def test_two_files_under_one_name_are_never_split_together_and_models_shows_the_clash(mesh_bed, tmp_path: Path) -> None:
    a = mesh_bed.start("A", "--model", SMOLLM2, "--max-vram", "1")
    b = mesh_bed.start("B", "--model", random_weights(tmp_path, 1), "--max-vram", "1", join=a)
    # C has the most memory, so on name alone it would host a split over A or B (--split forces one).
    c = mesh_bed.start("C", "--model", random_weights(tmp_path, 2), "--max-vram", "2", "--split", join=a)
    a.wait_ready(SMOLLM2)
    b.wait_ready(SMOLLM2)
    mesh_bed.wait_until(lambda: mesh_bed.all_see_each_other(["A", "B", "C"]), 60, "all three in one mesh")
    ids = {node.name: node.status()["id"] for node in (a, b, c)}

    # C decides again once it sees A's and B's records: on name alone, a split over one of them.
    def decided() -> bool:
        mine = assignment(c)
        return mine.get("mode") not in (None, "unserved") or all(ids[name] in mine.get("reason", "") for name in "AB")

    mesh_bed.wait_until(decided, 60, "C planning with A and B in view")
    planned = assignment(c)
    assert planned["mode"] == "unserved" and not planned["workers"], planned
    files = {node.name: fingerprint(node) for node in (a, b, c)}
    assert len(set(files.values())) == 3, files
    for name in "AB":
        assert f"{ids[name]} (file {files[name]})" in planned["reason"]
    assert f"than ours ({files['C']})" in planned["reason"]
    for node in (a, b):
        assert assignment(node)["mode"] == "solo"
    for node in (a, b, c):
        assert all(model["kind"] != "rpc-server" for model in node.status()["models"])

    # Every node's /v1/models: one entry for the name (usable as `model`), two files, one per server.
    def clash_everywhere() -> bool:
        return all(len(listed(node)) == 1 and len(listed(node)[0]["nodes"]) == 2 for node in (a, b, c))

    mesh_bed.wait_until(clash_everywhere, 30, "both servers listed on every node")
    for node in (a, b, c):
        (entry,) = listed(node)
        assert entry["id"] == SMOLLM2 and entry["object"] == "model"
        assert entry["fingerprints"] == sorted([files["A"], files["B"]])
        assert {(n["name"], n["fingerprint"]) for n in entry["nodes"]} == {("A", files["A"]), ("B", files["B"])}
        assert "2 different files" in entry["clash"]
