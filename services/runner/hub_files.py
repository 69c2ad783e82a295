"""What of the Hub's models is on disk under the models folder, and the error a download raises.

Split from downloads.py so that what only looks at the disk (a node's start resolving --model, the
CLI's flags, `mesh-llm models`) imports no network client: huggingface_hub's download calls,
httpx2 and tqdm cost ~0.3 s of CPU at every start that never downloads.

Reads the disk only; must not fetch anything (downloads.py does).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from services.common.catalog import CatalogEntry
from services.common.model_names import part_names


class DownloadError(Exception):
    """A download that cannot start or finish; the message is one line for the user."""


def part_files(entry: CatalogEntry) -> tuple[str, ...]:
    """Every file of the model: a split GGUF's parts (-00001-of-0000N …), else its one file."""
    return parts_of(entry.file)


def parts_of(file: str) -> tuple[str, ...]:
    """Every part's path in the repository of the model `file` (any of its parts) belongs to, first first."""
    folder = PurePosixPath(file).parent
    return tuple(str(folder / name) for name in part_names(file))


def folder_of(entry: CatalogEntry, models_dir: Path) -> Path:
    """Where a Hub entry's files go: the repository's own folder under models_dir."""
    return models_dir / entry.repo


def downloaded_paths(entry: CatalogEntry, models_dir: Path) -> tuple[Path, ...]:
    """Every part of a Hub entry when all of them are downloaded, else (). A part exists only once
    complete and checked (it is renamed from its partial file)."""
    if not entry.repo:
        return ()
    paths = tuple(folder_of(entry, models_dir) / file for file in part_files(entry))
    return paths if all(path.is_file() for path in paths) else ()


def downloaded_path(entry: CatalogEntry, models_dir: Path) -> Path | None:
    """The file llama.cpp opens (a split GGUF's first part) of a downloaded Hub entry, or None."""
    paths = downloaded_paths(entry, models_dir)
    return paths[0] if paths else None


def downloaded_models(models_dir: Path, catalog: dict[str, CatalogEntry]) -> dict[str, tuple[Path, ...]]:
    """Catalog name -> every part, of the catalog's models downloaded into models_dir."""
    return {name: paths for name, entry in catalog.items() if (paths := downloaded_paths(entry, models_dir))}
