"""What a user types for --model, read into where the model comes from: one table of forms."""

from __future__ import annotations

import pytest

from services.common.catalog import CATALOG
from services.common.model_names import (
    CatalogSource,
    HubSource,
    LocalSource,
    ModelNameError,
    ModelSource,
    QuantChoice,
    match_name,
    model_id_of_file,
    parse_model,
    part_names,
    pick_quant_file,
    quants_in,
    split_parts,
)

URL_FILE = "unsloth/Qwen3-8B-GGUF/{kind}/main/Qwen3-8B-Q8_0.gguf"


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ("Qwen3-8B", CatalogSource(CATALOG["Qwen3-8B"])),  # exact
        ("qwen3-8B", CatalogSource(CATALOG["Qwen3-8B"])),  # any case
        ("SmolLM2", CatalogSource(CATALOG["SmolLM2-135M-Instruct"])),  # an alias
        ("235b", CatalogSource(CATALOG["Qwen3-235B-A22B"])),  # a unique substring
        ("gemma-3-27", CatalogSource(CATALOG["Gemma-3-27B-it"])),
        ("Qwen3-8B:Q8_0", CatalogSource(CATALOG["Qwen3-8B"], "Q8_0")),  # another quant of the catalog's repository
        ("qwen3-8b:q8_0", CatalogSource(CATALOG["Qwen3-8B"], "Q8_0")),
        ("Qwen3-8B:q4_k_m", CatalogSource(CATALOG["Qwen3-8B"])),  # the catalog's own quant: its own file
        ("235b:Q2_K", CatalogSource(CATALOG["Qwen3-235B-A22B"], "Q2_K")),
        (f"https://huggingface.co/{URL_FILE.format(kind='blob')}", HubSource("unsloth/Qwen3-8B-GGUF", "main", "Qwen3-8B-Q8_0.gguf")),
        (f"https://huggingface.co/{URL_FILE.format(kind='resolve')}?download=true", HubSource("unsloth/Qwen3-8B-GGUF", "main", "Qwen3-8B-Q8_0.gguf")),
        (f"huggingface.co/{URL_FILE.format(kind='blob')}", HubSource("unsloth/Qwen3-8B-GGUF", "main", "Qwen3-8B-Q8_0.gguf")),
        ("hf.co/org/repo/resolve/0a1b2c/Q4_K_M/big-00001-of-00003.gguf", HubSource("org/repo", "0a1b2c", "Q4_K_M/big-00001-of-00003.gguf")),
        ("org/repo/file.gguf", HubSource("org/repo", file="file.gguf")),
        ("org/repo/sub/file.gguf", HubSource("org/repo", file="sub/file.gguf")),
        ("bartowski/Qwen2.5-7B-Instruct-GGUF:q4_k_m", HubSource("bartowski/Qwen2.5-7B-Instruct-GGUF", quant="Q4_K_M")),
        ("/models/Tiny-1B.gguf", LocalSource("/models/Tiny-1B.gguf")),  # a path: the runner looks on disk
        ("./Tiny-1B.gguf", LocalSource("./Tiny-1B.gguf")),
        ("~/models/a/b/c.gguf", LocalSource("~/models/a/b/c.gguf")),
        ("models/Tiny-1B.gguf", LocalSource("models/Tiny-1B.gguf")),  # two parts: a relative path, not a Hub repository
        ("Tiny-1B.Q8_0.gguf", LocalSource("Tiny-1B.Q8_0.gguf")),  # a file name for the models folder
    ],
)
def test_forms(spec: str, source: ModelSource) -> None:
    assert parse_model(spec) == source


MIRROR_URL = "https://hf-mirror.com/org/repo/resolve/main/f.gguf"
LOCAL_URL = "http://127.0.0.1:8080/org/repo/blob/main/sub/f.gguf?download=true"


@pytest.mark.parametrize(
    ("spec", "endpoint", "source"),
    [
        (MIRROR_URL, "https://hf-mirror.com", HubSource("org/repo", "main", "f.gguf")),  # HF_ENDPOINT's own URL
        (MIRROR_URL, "https://HF-Mirror.com:443/", HubSource("org/repo", "main", "f.gguf")),  # the same origin, spelled otherwise
        (MIRROR_URL, "", LocalSource(MIRROR_URL)),  # no endpoint given: not a Hub URL, a path the runner looks for
        (MIRROR_URL, "https://other-mirror.com", LocalSource(MIRROR_URL)),
        (LOCAL_URL, "http://127.0.0.1:8080", HubSource("org/repo", "main", "sub/f.gguf")),  # a local hub
        (LOCAL_URL, "http://127.0.0.1:9090", LocalSource(LOCAL_URL)),  # another port: another origin
        (LOCAL_URL, "https://127.0.0.1:8080", LocalSource(LOCAL_URL)),  # another scheme
        ("https://mirror.example/hf/org/repo/resolve/v1/f.gguf", "https://mirror.example/hf", HubSource("org/repo", "v1", "f.gguf")),  # an endpoint with a path
        (f"https://huggingface.co/{URL_FILE.format(kind='blob')}", "https://hf-mirror.com", HubSource("unsloth/Qwen3-8B-GGUF", "main", "Qwen3-8B-Q8_0.gguf")),
    ],
)
def test_urls_on_the_endpoint_in_use(spec: str, endpoint: str, source: ModelSource) -> None:
    assert parse_model(spec, endpoint=endpoint) == source


@pytest.mark.parametrize(
    ("spec", "on_disk", "source"),
    [
        ("Tiny-1B.Q8_0", True, LocalSource("Tiny-1B.Q8_0")),  # a stem in the models folder
        ("qwen", True, LocalSource("qwen")),  # a file on disk beats the substring rule
        ("org/repo/file.gguf", True, LocalSource("org/repo/file.gguf")),  # a relative path that exists beats the Hub form
        ("Qwen3-8B", True, CatalogSource(CATALOG["Qwen3-8B"])),  # a catalog name always means the catalog's model
    ],
)
def test_files_on_disk(spec: str, on_disk: bool, source: ModelSource) -> None:
    assert parse_model(spec, on_disk=on_disk) == source


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("32b", ["could mean", "Qwen2.5-32B-Instruct", "Qwen3-32B", "DeepSeek-R1-Distill-Qwen-32B"]),  # ambiguous: lists the matches
        ("qwen3", ["could mean", "Qwen3-8B", "Qwen3-235B-A22B"]),
        ("no-such-model", ["not found", "mesh-llm download", "ORG/REPO:QUANT", "huggingface.co URL"]),  # unknown: what to type instead
        ("no-such-model:Q8_0", ["not found"]),
        ("32b:Q8_0", ["could mean"]),
        ("org/repo", ["names no file", "org/repo:Q4_K_M"]),
        ("https://huggingface.co/org/repo", ["not a Hub file URL"]),
        ("https://huggingface.co/org/repo/tree/main", ["not a Hub file URL"]),
        ("  ", ["empty"]),
    ],
)
def test_names_that_mean_nothing_or_several_things(spec: str, fragments: list[str]) -> None:
    with pytest.raises(ModelNameError) as error:
        parse_model(spec)
    message = str(error.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


SERVED = ("Qwen3-8B", "Qwen3-4B", "SmolLM2-135M-Instruct", "DeepSeek-R1-Distill-Qwen-7B")


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("QWEN3-8B", "Qwen3-8B"),
        ("smollm2", "SmolLM2-135M-Instruct"),  # a catalog alias
        ("deepseek", "DeepSeek-R1-Distill-Qwen-7B"),  # a unique prefix
        ("distill", "DeepSeek-R1-Distill-Qwen-7B"),  # a unique substring
        ("qwen", ("Qwen3-8B", "Qwen3-4B", "DeepSeek-R1-Distill-Qwen-7B")),  # several: all of them
        ("llama", ()),
    ],
)
def test_match_name(requested: str, expected: str | tuple[str, ...]) -> None:
    assert match_name(requested, SERVED) == expected


REPO = (
    "README.md",
    "Big-Q4_K_M.gguf",
    "Big.Q5_K_S.gguf",  # a dot before the quant
    "Big-UD-Q4_K_XL.gguf",  # unsloth's dynamic quants
    "Big-IQ4_XS.gguf",
    "Q8_0/Big-Q8_0-00001-of-00002.gguf",  # a split GGUF in a folder named by its quant
    "Q8_0/Big-Q8_0-00002-of-00002.gguf",
    "BF16/Big-00001-of-00003.gguf",  # the quant only in the folder
    "BF16/Big-00002-of-00003.gguf",
    "BF16/Big-00003-of-00003.gguf",
    "Big-Q6_K.gguf",
    "Q6_K/Big-Q6_K-00001-of-00002.gguf",  # the same quant also split: the unsplit one wins
    "mmproj-F16.gguf",  # a vision projector, not a model
)


@pytest.mark.parametrize(
    ("quant", "choice"),
    [
        ("Q4_K_M", QuantChoice("Big-Q4_K_M.gguf")),
        ("q4_k_m", QuantChoice("Big-Q4_K_M.gguf")),
        ("Q5_K_S", QuantChoice("Big.Q5_K_S.gguf")),
        ("UD-Q4_K_XL", QuantChoice("Big-UD-Q4_K_XL.gguf")),
        ("Q4_K_XL", QuantChoice("Big-UD-Q4_K_XL.gguf")),
        ("IQ4_XS", QuantChoice("Big-IQ4_XS.gguf")),
        ("Q8_0", QuantChoice("Q8_0/Big-Q8_0-00001-of-00002.gguf")),
        ("bf16", QuantChoice("BF16/Big-00001-of-00003.gguf")),
        ("Q6_K", QuantChoice("Big-Q6_K.gguf", "several Q6_K files: chose Big-Q6_K.gguf over Q6_K/Big-Q6_K-00001-of-00002.gguf")),
    ],
)
def test_pick_quant_file(quant: str, choice: QuantChoice) -> None:
    assert pick_quant_file(REPO, quant) == choice


@pytest.mark.parametrize("quant", ["Q2_K", "Q4_K", "F16", "Q4"])
def test_a_quant_the_repository_lacks_lists_those_it_has(quant: str) -> None:
    with pytest.raises(ModelNameError) as error:
        pick_quant_file(REPO, quant)
    assert str(error.value) == f"no {quant} GGUF among the repository's files (its quants: BF16, IQ4_XS, Q4_K_M, Q5_K_S, Q6_K, Q8_0, UD-Q4_K_XL)"


def test_quants_in_an_empty_repository() -> None:
    assert quants_in(["README.md"]) == ()


@pytest.mark.parametrize(
    ("file", "parts", "model_id"),
    [
        ("Tiny-1B.Q8_0.gguf", ("Tiny-1B.Q8_0", 1, 1), "Tiny-1B.Q8_0"),
        ("Q8_0/Big-Q8_0-00001-of-00002.gguf", ("Big-Q8_0", 1, 2), "Big-Q8_0"),
        ("Big-Q8_0-00002-of-00002.gguf", ("Big-Q8_0", 2, 2), "Big-Q8_0"),  # every part is one model
        ("Qwen3-8B-Q4_K_M.gguf", ("Qwen3-8B-Q4_K_M", 1, 1), "Qwen3-8B"),  # a catalog file answers to its catalog name
        ("Qwen3-235B-A22B-Q4_K_M-00003-of-00003.gguf", ("Qwen3-235B-A22B-Q4_K_M", 3, 3), "Qwen3-235B-A22B"),
    ],
)
def test_split_gguf_names(file: str, parts: tuple[str, int, int], model_id: str) -> None:
    assert split_parts(file) == parts
    assert model_id_of_file(file) == model_id


def test_part_names() -> None:
    assert part_names("dir/x-00001-of-00003.gguf") == ("x-00001-of-00003.gguf", "x-00002-of-00003.gguf", "x-00003-of-00003.gguf")
    assert part_names("dir/x.gguf") == ("x.gguf",)
