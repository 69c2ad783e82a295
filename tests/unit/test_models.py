from pathlib import Path

import pytest

from services.runner.models import ModelError, models_on_disk, resolve


def gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


def test_catalog_name_resolves_to_the_packaged_file(tmp_path: Path) -> None:
    ref = resolve("smollm2-135m-instruct", tmp_path)
    assert ref.model_id == "SmolLM2-135M-Instruct"
    assert ref.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and ref.size_bytes > 50_000_000


def test_path_file_name_and_stem(tmp_path: Path) -> None:
    file = gguf(tmp_path / "models" / "org" / "Tiny-1B.Q8_0.gguf")
    assert resolve(str(file), tmp_path).model_id == "Tiny-1B.Q8_0"
    assert resolve("Tiny-1B.Q8_0.gguf", tmp_path / "models").path == file
    assert resolve("Tiny-1B.Q8_0", tmp_path / "models").path == file


@pytest.mark.parametrize("spec", ["/nope/missing.gguf", "missing-model", "./missing.gguf"])
def test_missing_models_are_one_line_errors(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ModelError) as error:
        resolve(spec, tmp_path)
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve(str(text), tmp_path)


def test_models_on_disk_lists_named_models_and_the_models_folder(tmp_path: Path) -> None:
    gguf(tmp_path / "models" / "a" / "Alpha.gguf")
    (tmp_path / "models" / "notes.gguf").write_text("not a model")
    named = [resolve("SmolLM2-135M-Instruct", tmp_path)]
    assert models_on_disk(tmp_path / "models", named) == ("Alpha", "SmolLM2-135M-Instruct")


def test_installed_catalog_models_count_as_on_disk(tmp_path: Path) -> None:
    assert models_on_disk(tmp_path / "no-such-folder", []) == ("SmolLM2-135M-Instruct",)
