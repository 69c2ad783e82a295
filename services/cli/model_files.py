"""`mesh-llm download [MODEL] [--draft]` and `mesh-llm models [rm NAME]`: the catalog, and the model
files in the models folder (--models-dir).

`download` takes a catalog name (NAME or NAME:QUANT, by --model's name rule) or a Hub model in any of
--model's forms (a huggingface.co URL, ORG/REPO/FILE.gguf, ORG/REPO:QUANT); --draft only with a
catalog name, whose entry names the draft.

The catalog is the built-in one plus the models folder's own catalog.toml, when there is one (a
private mirror's or one's own models, in the built-in file's layout). Fetching files is
services/runner/downloads.py's; this module reads the command line, prints, and deletes a model's
files with what its download left beside them.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from huggingface_hub import constants

from services.cli.flags import DRAFT, UsageError
from services.common.catalog import CatalogEntry
from services.common.model_names import CatalogSource, HubSource, ModelNameError, match_name, parse_model
from services.runner.downloads import download, download_source
from services.runner.hub_files import DownloadError, downloaded_models
from services.runner.layer_fetch import layers_path
from services.runner.models import catalog_of, is_gguf, model_id_of

_LATER_PART = "-00001-of-"  # a split GGUF is listed by its first part
_HUB_FORMS = "ORG/REPO:QUANT, ORG/REPO/FILE.gguf or a huggingface.co file URL"


def run(args: argparse.Namespace) -> int:
    command, models_dir = args.command, args.models_dir.expanduser()
    catalog = catalog_of(models_dir)
    if command[0] == "download":
        names = list(command[1:])
        if args.draft not in (None, DRAFT):
            names.append(args.draft)  # `download --draft NAME`: argparse read the name as --draft's value
        if len(names) > 1:
            raise UsageError(f"usage: mesh-llm download [NAME [--draft] | {_HUB_FORMS}]")
        if not names:
            print(catalog_table(catalog, models_dir))
            return 0
        source = source_named(names[0], catalog)
        if isinstance(source, HubSource):
            if args.draft is not None:
                raise UsageError(f"--draft needs a catalog name (its entry names the draft), not the Hub model {names[0]}")
            return fetch_hub(source, names[0], models_dir)
        return fetch(source.entry, catalog, models_dir, draft=args.draft is not None, quant=source.quant)
    if command[1:] == []:
        print(models_table(held(models_dir, catalog)))
        return 0
    if command[1] == "rm" and len(command) == 3:
        for path in remove(command[2], models_dir, catalog):
            print(f"removed {path}")
        return 0
    raise UsageError("usage: mesh-llm models [rm NAME]")


def entry_named(name: str, catalog: dict[str, CatalogEntry]) -> CatalogEntry:
    """The catalog entry `name` means, by --model's rule (any case, an alias, a unique substring);
    UsageError otherwise, naming the matches when there are several."""
    aliases = {alias.lower(): entry.name for entry in catalog.values() for alias in entry.aliases}
    match = match_name(name, tuple(catalog), aliases)
    if isinstance(match, str):
        return catalog[match]
    if match:
        raise UsageError(f"{name!r} names several catalog models: {', '.join(match)}")
    raise UsageError(f"{name!r} is not a catalog name (mesh-llm download lists them), nor a Hub model ({_HUB_FORMS})")


def source_named(spec: str, catalog: dict[str, CatalogEntry]) -> CatalogSource | HubSource:
    """What `mesh-llm download SPEC` fetches, read as --model reads it (model_names.parse_model);
    UsageError for a name that means nothing, several things, or a file rather than a model to fetch."""
    if "/" not in spec:
        # A catalog name (NAME, NAME:QUANT): the catalog's own errors, not --model's, which also speak of files on disk.
        entry_named(spec.partition(":")[0], catalog)
    try:
        source = parse_model(spec, entries=tuple(catalog.values()), endpoint=constants.ENDPOINT)
    except ModelNameError as bad:
        raise UsageError(str(bad)) from None
    if isinstance(source, CatalogSource | HubSource):
        return source
    raise UsageError(f"{spec} is a file, not a model to download: give a catalog name or {_HUB_FORMS}")


def fetch(entry: CatalogEntry, catalog: dict[str, CatalogEntry], models_dir: Path, draft: bool, quant: str = "") -> int:
    """A catalog model (in another quant of its repository, with `quant`) and, with `draft`, its draft."""
    wanted = [entry]
    if draft:
        if not entry.draft:
            raise UsageError(f"{entry.name} has no draft model in the catalog")
        wanted.append(catalog[entry.draft])
    if quant and entry.package:
        raise UsageError(f"{entry.name} comes only as {entry.quant} (in the Python package {entry.package})")
    for model in wanted:
        if model.package:
            print(f"{model.name} ships in the Python package {model.package}: nothing to download")
            continue
        if quant and model is entry:
            code = fetch_hub(HubSource(entry.repo, quant=quant), f"{entry.name}:{quant}", models_dir, serve_as=f"{entry.name}:{quant}")
        else:
            print(f"downloading {model.name} ({model.size_bytes / 1e9:.2f} GB) from {model.repo}", flush=True)
            code = _downloaded(partial(download, model, models_dir), model.name, serve_as=model.name)
        if code:
            return code
    return 0


def fetch_hub(source: HubSource, spec: str, models_dir: Path, serve_as: str = "") -> int:
    """A Hub model: its file (every part of a split one), or its repository's file of a quant."""
    print(f"downloading {spec} from {source.repo}", flush=True)
    return _downloaded(partial(download_source, source, models_dir), spec, serve_as or serve_name(source))


def serve_name(source: HubSource) -> str:
    """The --model that serves a downloaded Hub model: its repository and quant, or file (found on disk by model_names' rule)."""
    return f"{source.repo}:{source.quant}" if source.quant else f"{source.repo}/{source.file}"


def _downloaded(fetching: Callable[[], Path], spec: str, serve_as: str) -> int:
    """Run one download and print where it went and the name to serve it with; the exit code."""
    try:
        path = fetching()
    except DownloadError as failure:
        raise UsageError(str(failure)) from None
    except KeyboardInterrupt:
        # Ctrl-C: what arrived is kept; the same command resumes from there.
        print(f"\nmesh-llm: download of {spec} stopped; `mesh-llm download {spec}` resumes it", file=sys.stderr)
        return 130
    print(f"{spec}: {path}")
    print(f"serve it with: mesh-llm --model {serve_as}")
    return 0


def catalog_table(catalog: dict[str, CatalogEntry], models_dir: Path) -> str:
    downloaded = downloaded_models(models_dir, catalog)
    rows = [f"{'name':<32} {'size':>9}  {'quant':<8} {'MoE':<4} on disk"]
    for entry in catalog.values():
        if entry.package:
            on_disk = "yes (package)" if importlib.util.find_spec(entry.package) is not None else f"pip install {entry.package}"
        else:
            on_disk = "yes" if entry.name in downloaded else "-"
        rows.append(f"{entry.name:<32} {entry.size_bytes / 1e9:>6.2f} GB  {entry.quant:<8} {'yes' if entry.moe else '-':<4} {on_disk}")
    return "\n".join(rows)


@dataclass(frozen=True)
class Held:
    """A model in the models folder."""

    name: str  # its catalog name, or its file's name without .gguf
    paths: tuple[Path, ...]  # every file of it (a split GGUF's parts)
    size_bytes: int
    last_read: float  # the files' newest access time (seconds since the epoch): when it was last loaded, as far as the file system records


def held(models_dir: Path, catalog: dict[str, CatalogEntry]) -> tuple[Held, ...]:
    """The models in models_dir: downloaded catalog models by their names, other GGUFs by their files'."""
    downloaded = downloaded_models(models_dir, catalog)
    taken = {path for paths in downloaded.values() for path in paths}
    found = [_held(name, paths) for name, paths in downloaded.items()]
    others = sorted(path for path in models_dir.rglob("*.gguf") if path not in taken) if models_dir.is_dir() else []
    found += [_held(model_id_of(path), _parts_of(path)) for path in others if _is_first(path) and is_gguf(path)]
    return tuple(sorted(found, key=lambda model: model.name.lower()))


def _held(name: str, paths: tuple[Path, ...]) -> Held:
    stats = [path.stat() for path in paths]
    return Held(name, paths, sum(stat.st_size for stat in stats), max(stat.st_atime for stat in stats))


def _is_first(path: Path) -> bool:
    return "-of-" not in path.name or _LATER_PART in path.name


def _parts_of(path: Path) -> tuple[Path, ...]:
    if _LATER_PART not in path.name:
        return (path,)
    stem = path.name.split(_LATER_PART)[0]
    return tuple(sorted(path.parent.glob(f"{stem}-0*-of-*.gguf")))


def models_table(models: tuple[Held, ...]) -> str:
    if not models:
        return "no models on disk (mesh-llm download lists the catalog)"
    rows = [f"{'name':<40} {'size':>9}  last read"]
    rows += [f"{model.name:<40} {model.size_bytes / 1e9:>6.2f} GB  {_ago(model.last_read)}" for model in models]
    return "\n".join(rows)


def _ago(when: float) -> str:
    seconds = max(time.time() - when, 0)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def remove(name: str, models_dir: Path, catalog: dict[str, CatalogEntry]) -> tuple[Path, ...]:
    """Delete a model's files (and a download's partial files and metadata); the paths removed."""
    models = {model.name.lower(): model for model in held(models_dir, catalog)}
    entry = next((entry for entry in catalog.values() if name.lower() in (entry.name.lower(), *(alias.lower() for alias in entry.aliases))), None)
    model = models.get(entry.name.lower() if entry else name.lower())
    if model is None:
        if entry is not None and entry.package:
            raise UsageError(f"{entry.name} ships in the Python package {entry.package}: pip uninstall {entry.package.replace('_', '-')}")
        raise UsageError(f"no model {name!r} in {models_dir} (mesh-llm models lists them)")
    for path in model.paths:
        path.unlink()
        _forget_download(path, models_dir)
    return model.paths


def _forget_download(path: Path, models_dir: Path) -> None:
    """What a Hub download of the removed file left beside it, when the file lies in the download
    layout (<models_dir>/<org>/<repo>/<file>, a catalog entry's or a Hub form's): the client's
    metadata, partial files and their locks, and a split worker's partial layer file; then the
    repository's folder, once no file is left in it (its .cache included, but for the client's
    markers), but not its org's."""
    relative = path.relative_to(models_dir)  # held() finds the files under models_dir
    if len(relative.parts) < 3:
        return
    repo, file = "/".join(relative.parts[:2]), "/".join(relative.parts[2:])
    folder, layers = models_dir / repo, layers_path(models_dir, repo, file)
    download_dir = folder / ".cache" / "huggingface" / "download"
    flat = glob.escape(file.replace("/", "--"))  # downloads.partial_path's name
    leftovers = (
        *(download_dir / f"{file}.{suffix}" for suffix in ("metadata", "lock")),
        *download_dir.glob(f"{flat}.*.incomplete"),
        *download_dir.glob(f"{flat}.*.lock"),
        *(layers.with_name(layers.name + suffix) for suffix in ("", ".json", ".lock")),
    )
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    # The client marks every .cache/huggingface it makes with these two: no trace of a model.
    markers = {folder / ".cache" / "huggingface" / name for name in (".gitignore", "CACHEDIR.TAG")}
    if not any((inside.is_file() or inside.is_symlink()) and inside not in markers for inside in folder.rglob("*")):
        shutil.rmtree(folder)
