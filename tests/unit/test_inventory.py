"""The runner's answer to placement's Models call: the specs found, and every model on disk."""

from pathlib import Path

import pytest

from services.runner.inventory import take_inventory
from services.runner.models import ModelError


def gguf(path: Path, filler: bytes = b"\0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + filler * 60)
    return path


def test_the_named_models_in_order_and_every_model_on_disk_once(tmp_path: Path) -> None:
    models = tmp_path / "models"
    gguf(models / "b-model.gguf")
    gguf(models / "org" / "a-model.gguf")
    elsewhere = gguf(tmp_path / "elsewhere" / "a-model.gguf", b"\1")  # another file under a name in the folder
    inventory = take_inventory(["b-model", str(elsewhere)], models)
    assert [(ref.model_id, ref.path) for ref in inventory.named] == [("b-model", models / "b-model.gguf"), ("a-model", elsewhere)]
    on_disk = {ref.model_id: ref for ref in inventory.on_disk}
    assert on_disk["a-model"].path == elsewhere  # the named file wins over the folder's
    assert list(on_disk) == sorted(on_disk) and {"a-model", "b-model", "SmolLM2-135M-Instruct"} <= set(on_disk)
    assert all(ref.fingerprint and ref.size_bytes for ref in inventory.on_disk)


def test_a_spec_naming_no_gguf_is_the_users_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        take_inventory(["missing-model"], tmp_path)
