"""What a user types to name a model, read into where the model comes from.

Owns the forms `--model` (and `mesh-llm download`) accept and the name rule shared with the API's
`model` field: exact in any case, then a catalog alias, then a unique substring. Also owns the
naming of split GGUFs (`name-00001-of-00003.gguf` is one model, named `name`) and the choice of a
quant's file from a repository's file list. Pure: whether a file exists, what a repository holds
and where files are kept are the callers' (services/runner); must not touch the disk or network.

The forms, in the order they are tried:
  https://huggingface.co/ORG/REPO/blob|resolve/REV/PATH.gguf   a Hub file (scheme optional)
  ENDPOINT/ORG/REPO/blob|resolve/REV/PATH.gguf                  the same on the endpoint in use (HF_ENDPOINT: a mirror, a local hub)
  NAME                                                          a catalog name or alias, in any case
  (a file the caller found on disk)                             a path, or a file name or stem in the models folder
  NAME, NAME:QUANT                                              a unique substring of a catalog name; another quant of its repository
  ORG/REPO:QUANT                                                a Hub repository's file of that quant
  ORG/REPO/PATH.gguf                                            a Hub repository's file (PATH may have folders)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import SplitResult, urlsplit

from services.common.catalog import ALIASES, ENTRIES, CatalogEntry

FORMS = "a catalog name (Qwen3-8B, or Qwen3-8B:Q8_0), a GGUF path or file in the models folder, ORG/REPO:QUANT, ORG/REPO/FILE.gguf or a huggingface.co URL"
DEFAULT_REVISION = "main"

_HUB_HOSTS = ("huggingface.co", "hf.co")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HUB_FILE_URL = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)/(?:blob|resolve)/(?P<revision>[^/]+)/(?P<file>.+\.gguf)")
_REPO = re.compile(r"[\w.-]+/[\w.-]+")
_SPLIT_PART = re.compile(r"(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf", re.IGNORECASE)
# A quant as publishers spell it in file names: Q4_K_M, IQ4_XS, Q8_0, UD-Q4_K_XL, BF16, MXFP4.
_QUANT = re.compile(r"(?:^|[-./])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4))(?=[-./]|$)", re.IGNORECASE)


class ModelNameError(ValueError):
    """A model spec that names nothing, or more than one thing; the message is one line for the user."""


@dataclass(frozen=True)
class CatalogSource:
    entry: CatalogEntry
    quant: str = ""  # another quant of the entry's repository; "" for the catalog's own file


@dataclass(frozen=True)
class HubSource:
    repo: str  # ORG/REPO on the Hugging Face Hub
    revision: str = DEFAULT_REVISION
    file: str = ""  # the GGUF's path in the repository; "" when `quant` chooses it
    quant: str = ""  # chooses the file from the repository's list (pick_quant_file); "" when `file` names it


@dataclass(frozen=True)
class LocalSource:
    spec: str  # a path, or a file name or stem in the models folder: the runner finds it on disk


ModelSource = CatalogSource | HubSource | LocalSource


@dataclass(frozen=True)
class QuantChoice:
    file: str  # the chosen file's path in the repository (a split GGUF: its first part)
    note: str = ""  # why, when several files were of that quant; "" when only one was


def parse_model(spec: str, on_disk: bool = False, entries: Sequence[CatalogEntry] = ENTRIES, endpoint: str = "") -> ModelSource:
    """Where the model `spec` names comes from. `on_disk`: the caller found `spec` as a file (a
    path, or a name or stem in the models folder); a catalog name or alias still wins over it, as
    a catalog name always meant the catalog's model. `endpoint`: the Hub's address in use
    (huggingface_hub's constants.ENDPOINT, from HF_ENDPOINT): a file URL on it is a Hub file too."""
    spec = spec.strip()
    if not spec:
        raise ModelNameError(f"an empty model name: give {FORMS}")
    hub = _hub_url(spec, endpoint)
    if hub is not None:
        return hub
    by_name = {entry.name: entry for entry in entries}
    aliases = {alias.lower(): entry.name for entry in entries for alias in entry.aliases}
    if "/" not in spec and ":" not in spec:
        exact = match_name(spec, tuple(by_name), aliases, substring=False)
        if isinstance(exact, str):
            return CatalogSource(by_name[exact])
    if on_disk or spec.startswith(("/", ".", "~")):
        return LocalSource(spec)
    if "/" in spec:
        return _hub_path(spec)
    name, _, quant = spec.partition(":")
    if spec.lower().endswith(".gguf") and not quant:
        return LocalSource(spec)  # a file name the models folder lacks: the runner says so
    entry = by_name[_catalog_match(name, tuple(by_name), aliases)]
    return CatalogSource(entry, quant.upper() if quant.lower() != entry.quant.lower() else "")


def _hub_url(spec: str, endpoint: str) -> HubSource | None:
    """A Hub file URL's repository, revision and file; None for a spec that is no Hub URL."""
    rest = _on_endpoint(spec, endpoint) if endpoint else None
    if rest is None:
        address = spec.split("://", 1)[1] if "://" in spec else spec
        host, _, rest = address.partition("/")
        if host.lower().removeprefix("www.") not in _HUB_HOSTS:
            return None
    found = _HUB_FILE_URL.fullmatch(rest.split("?", 1)[0])
    if found is None:
        raise ModelNameError(f"{spec} is not a Hub file URL: copy a .gguf file's link (huggingface.co/ORG/REPO/blob/main/FILE.gguf)")
    return HubSource(found["repo"], found["revision"], found["file"])


def _on_endpoint(spec: str, endpoint: str) -> str | None:
    """What follows the endpoint (its origin and any path of it) in a URL on it; None for a URL
    of another origin (scheme, host and port), or no URL."""
    if "://" not in spec:
        return None
    try:
        url, base = urlsplit(spec), urlsplit(endpoint.rstrip("/"))
        same_origin = _origin(url) == _origin(base)
    except ValueError:
        return None  # a malformed URL (a port that is no number, an unclosed [): no endpoint's
    prefix = f"{base.path}/"
    return url.path.removeprefix(prefix) if same_origin and url.path.startswith(prefix) else None


def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, (url.hostname or "").lower(), url.port or _DEFAULT_PORTS.get(scheme)


def _hub_path(spec: str) -> ModelSource:
    """ORG/REPO:QUANT or ORG/REPO/PATH.gguf; any other relative path is left to the runner."""
    path, _, quant = spec.partition(":")
    if quant and _REPO.fullmatch(path):
        return HubSource(path, quant=quant.upper())
    parts = path.split("/")
    if not quant and len(parts) >= 3 and path.lower().endswith(".gguf") and _REPO.fullmatch("/".join(parts[:2])):
        return HubSource("/".join(parts[:2]), file="/".join(parts[2:]))
    if not quant and _REPO.fullmatch(path) and not path.lower().endswith(".gguf"):
        raise ModelNameError(f"{spec} is no file here, and as a Hub repository it names no file: add :QUANT ({spec}:Q4_K_M) or /FILE.gguf")
    return LocalSource(spec)


def _catalog_match(name: str, names: tuple[str, ...], aliases: Mapping[str, str]) -> str:
    found = match_name(name, names, aliases)
    if isinstance(found, str):
        return found
    if found:
        raise ModelNameError(f"model {name!r} could mean {', '.join(found)}: give more of the name")
    raise ModelNameError(
        f"model {name!r} not found: not a catalog name (`mesh-llm download` lists them), nor a file here or in the models folder; give {FORMS}"
    )


def match_name(requested: str, names: Sequence[str], aliases: Mapping[str, str] = ALIASES, substring: bool = True) -> str | tuple[str, ...]:
    """The one name of `names` that `requested` means: exact in any case, then a catalog alias,
    then (with `substring`) the only name that contains it; else the names containing it (empty: none)."""
    wanted = requested.lower()
    for name in names:
        if name.lower() == wanted:
            return name
    alias = aliases.get(wanted)
    if alias is not None and alias in names:
        return alias
    containing = tuple(name for name in names if wanted in name.lower()) if substring else ()
    return containing[0] if len(containing) == 1 else containing


def split_parts(file: str) -> tuple[str, int, int]:
    """(the file name's stem without its part suffix, part, count): `x-00002-of-00003.gguf` is
    ("x", 2, 3); an unsplit `x.gguf` is ("x", 1, 1). Folders are dropped."""
    name = PurePosixPath(file).name
    found = _SPLIT_PART.fullmatch(name)
    if found is None:
        return name.removesuffix(".gguf"), 1, 1
    return found["stem"], int(found["part"]), int(found["count"])


def part_names(file: str) -> tuple[str, ...]:
    """The file names of every part of the model `file` belongs to, first first (one for an unsplit file)."""
    stem, _, count = split_parts(file)
    if count == 1:
        return (PurePosixPath(file).name,)
    return tuple(f"{stem}-{part:05d}-of-{count:05d}.gguf" for part in range(1, count + 1))


def model_id_of_file(file: str, entries: Sequence[CatalogEntry] = ENTRIES) -> str:
    """The name clients use for a GGUF file: the catalog name whose file it is, else its stem
    without folder, .gguf or part suffix (every part of a split model gives one id)."""
    stem = split_parts(file)[0]
    return next((entry.name for entry in entries if split_parts(entry.file)[0] == stem), stem)


def quants_in(files: Sequence[str]) -> tuple[str, ...]:
    """The quants the GGUF files of a repository come in, upper case, sorted, once."""
    return tuple(sorted({quant for file in _model_files(files) if (quant := _quant_of(file))}))


def pick_quant_file(files: Sequence[str], quant: str) -> QuantChoice:
    """The file of `quant` (any case) among a repository's files: the quant in the file name
    (`-Q4_K_M.gguf`, `.Q4_K_M.gguf`) or in a folder (`Q4_K_M/…`); a split GGUF by its first part;
    of several, the unsplit then the shortest path, saying so."""
    wanted = quant.upper()
    candidates = sorted((file for file in _model_files(files) if wanted in _quants_of(file)), key=lambda file: (split_parts(file)[2] > 1, len(file), file))
    if not candidates:
        present = ", ".join(quants_in(files)) or "none"
        raise ModelNameError(f"no {wanted} GGUF among the repository's files (its quants: {present})")
    chosen, others = candidates[0], candidates[1:]
    note = f"several {wanted} files: chose {chosen} over {', '.join(others)}" if others else ""
    return QuantChoice(chosen, note)


def _model_files(files: Sequence[str]) -> list[str]:
    """The GGUFs that are models, a split one by its first part: not the vision projectors (mmproj)."""
    return [
        file for file in files if file.lower().endswith(".gguf") and split_parts(file)[1] == 1 and not PurePosixPath(file).name.lower().startswith("mmproj")
    ]


def _quants_of(file: str) -> set[str]:
    """Every quant spelled in the file's path (its folders and its name), upper case; unsloth's
    dynamic quants (UD-Q4_K_XL) also answer to their plain name."""
    found = {quant.upper() for quant in _QUANT.findall(file[: -len(".gguf")])}
    return found | {quant.removeprefix("UD-") for quant in found}


def _quant_of(file: str) -> str:
    """The quant of a file: the last one its path spells (the file name's over a folder's), or ""."""
    found = _QUANT.findall(file[: -len(".gguf")])
    return found[-1].upper() if found else ""
