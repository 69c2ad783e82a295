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


def test_a_split_gguf_is_one_model_of_all_its_parts(tmp_path: Path) -> None:
    models = tmp_path / "models"
    parts = [gguf(models / "Q8_0" / f"Big-Q8_0-0000{part}-of-00003.gguf") for part in (1, 2, 3)]
    parts[2].write_bytes(parts[2].read_bytes() + b"\0" * 100)
    assert models_on_disk(models, []) == ("Big-Q8_0", "SmolLM2-135M-Instruct")
    by_id, by_part = resolve("Big-Q8_0", models), resolve(str(parts[1]), models)
    assert by_id == by_part and by_id.model_id == "Big-Q8_0"
    assert by_id.path == parts[0] and by_id.size_bytes == 3 * 64 + 100


def test_a_split_gguf_missing_a_part_is_refused(tmp_path: Path) -> None:
    first = gguf(tmp_path / "Big-00001-of-00002.gguf")
    with pytest.raises(ModelError, match="Big-00002-of-00002.gguf missing"):
        resolve(str(first), tmp_path)


def test_hub_and_catalog_models_are_found_where_downloads_go(tmp_path: Path) -> None:
    """downloads.py's layout: <models_dir>/<org>/<repo>/<file>."""
    repo = tmp_path / "unsloth" / "Qwen3-8B-GGUF"
    default, q8 = gguf(repo / "Qwen3-8B-Q4_K_M.gguf"), gguf(repo / "Q8_0" / "Qwen3-8B-Q8_0.gguf")
    assert (resolve("qwen3-8b", tmp_path).model_id, resolve("qwen3-8b", tmp_path).path) == ("Qwen3-8B", default)
    assert resolve("Qwen3-8B:q8_0", tmp_path).path == q8
    assert resolve("unsloth/Qwen3-8B-GGUF:Q8_0", tmp_path).model_id == "Qwen3-8B-Q8_0"
    assert resolve("https://huggingface.co/unsloth/Qwen3-8B-GGUF/blob/main/Q8_0/Qwen3-8B-Q8_0.gguf", tmp_path).path == q8
    assert models_on_disk(tmp_path, []) == ("Qwen3-8B", "Qwen3-8B-Q8_0", "SmolLM2-135M-Instruct")


def test_a_catalog_file_put_in_the_models_folder_by_hand_is_found(tmp_path: Path) -> None:
    file = gguf(tmp_path / "Qwen3-8B-Q4_K_M.gguf")
    assert models_on_disk(tmp_path, []) == ("Qwen3-8B", "SmolLM2-135M-Instruct")
    assert resolve("Qwen3-8B", tmp_path).path == file


def test_a_file_of_a_catalog_name_serves_when_the_catalog_file_is_not_here(tmp_path: Path) -> None:
    file = gguf(tmp_path / "mine" / "Qwen3-8B.gguf")
    assert (resolve("Qwen3-8B", tmp_path).model_id, resolve("Qwen3-8B", tmp_path).path) == ("Qwen3-8B", file)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("Qwen3-8B", "`mesh-llm download Qwen3-8B` fetches it"),
        ("Qwen3-8B:Q8_0", "`mesh-llm download Qwen3-8B:Q8_0` fetches it"),
        ("org/repo/sub/file.gguf", "`mesh-llm download org/repo/sub/file.gguf` fetches it"),
        ("smollm2:Q8_0", "only as Q4_1"),
        ("32b", "could mean Qwen2.5-32B-Instruct, Qwen3-32B, DeepSeek-R1-Distill-Qwen-32B"),
        ("no-such-model", "not found"),
    ],
)
def test_models_not_on_this_machine_say_what_to_do(tmp_path: Path, spec: str, fragment: str) -> None:
    with pytest.raises(ModelError) as error:
        resolve(spec, tmp_path)
    assert fragment in str(error.value) and "\n" not in str(error.value)
