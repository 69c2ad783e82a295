"""A local stand-in for the Hugging Face Hub, for the real huggingface_hub client (HF_ENDPOINT).

It answers what a download asks, the way the Hub does for an LFS file:
- HEAD/GET {endpoint}/{org}/{repo}/resolve/{revision}/{path}: 302 to the file's storage URL on
  another origin (the Hub sends its CDN; here a second port, so the client stops at the redirect
  and reads the metadata from it), with X-Repo-Commit, ETag, X-Linked-Etag (the file's sha256) and
  X-Linked-Size; 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound, as the Hub;
- HEAD/GET {storage}/{sha256}: the bytes, with Content-Length, Accept-Ranges and Range requests
  (206 with Content-Range);
- GET {endpoint}/api/models/{org}/{repo}/tree/{revision}[/{folder}]?recursive=…: the repository's
  files (and folders) as HfApi.list_repo_tree and list_repo_files read them, each file an LFS one
  (its sha256 and size), in pages of tree_page_size entries linked by a Link rel="next" header;
  404 with X-Error-Code RepoNotFound or RevisionNotFound, as the Hub.
It counts the bytes of each file it sends, and can stall a file's body at a given offset (holding
the connection open) so a test can kill the downloading process half-way.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REVISIONS = ("main", COMMIT)  # the branch and the commit it points at; any other revision is not found
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/]+)(?:/(?P<folder>.+))?$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class HubFile:
    repo: str
    path: str  # in the repository
    source: Path  # the bytes served
    sha256: str
    size_bytes: int


class LocalHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], HubFile] = {}
        self.sent: Counter[str] = Counter()  # bytes of each file's body sent, by path in its repository
        self.stall_at: dict[str, int] = {}  # path -> offset where its body stops until release()
        self.stalled = threading.Event()  # set when a body reached its stall offset
        self.tree_page_size = 1000  # entries of a tree listing's page, as the Hub's; smaller, a test sees the pages followed
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, storage=False))
        self._storage = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, storage=True))
        for server in (self._api, self._storage):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._api.server_address[1]}"

    @property
    def storage(self) -> str:
        return f"http://127.0.0.1:{self._storage.server_address[1]}"

    def add(self, repo: str, path: str, source: Path) -> HubFile:
        """Serve `source` as `path` of `repo` (on branch main and at COMMIT)."""
        digest = hashlib.sha256()
        with source.open("rb") as f:
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        served = HubFile(repo, path, source, digest.hexdigest(), source.stat().st_size)
        self.files[(repo, path)] = served
        return served

    def stall(self, path: str, at: int) -> None:
        """Stop sending `path`'s body at offset `at` (the connection stays open) until release()."""
        self.stall_at[path] = at
        self.stalled.clear()
        self._released.clear()

    def release(self) -> None:
        self.stall_at.clear()
        self._released.set()

    def close(self) -> None:
        self.release()
        for server in (self._api, self._storage):
            server.shutdown()
            server.server_close()

    def by_sha(self, sha256: str) -> HubFile | None:
        return next((served for served in self.files.values() if served.sha256 == sha256), None)

    def count(self, path: str, sent: int) -> None:
        with self._lock:
            self.sent[path] += sent

    def wait_released(self) -> None:
        self.stalled.set()
        self._released.wait(timeout=60)

    def tree(self, repo: str, folder: str, recursive: bool) -> list[dict[str, object]]:
        """The Hub's tree listing of `folder` ("" the root) in `repo`: its files, and its folders
        (every folder below it when recursive, else only those directly in it)."""
        prefix = f"{folder}/" if folder else ""
        paths = sorted(path for repo_of, path in self.files if repo_of == repo and path.startswith(prefix))
        folders = sorted({str(parent) for path in paths for parent in PurePosixPath(path).parents[:-1] if str(parent).startswith(prefix)})
        if not recursive:
            paths = [path for path in paths if "/" not in path[len(prefix) :]]
            folders = [name for name in folders if "/" not in name[len(prefix) :]]
        entries: list[dict[str, object]] = [{"type": "directory", "oid": _git_oid(name), "size": 0, "path": name} for name in folders]
        return entries + [_tree_file(self.files[(repo, path)]) for path in paths]


def _tree_file(served: HubFile) -> dict[str, object]:
    # An LFS file as the Hub lists it: the pointer's blob id, and the content's sha256 and size.
    lfs = {"oid": served.sha256, "size": served.size_bytes, "pointerSize": 134}
    return {"type": "file", "oid": _git_oid(served.sha256), "size": served.size_bytes, "path": served.path, "lfs": lfs}


def _git_oid(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _handler(hub: LocalHub, storage: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: a test's output shows the client's progress, not each request

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            if storage:
                self._storage(body)
            elif self.path.startswith("/api/"):
                self._tree(body)
            else:
                self._resolve()

        def _tree(self, body: bool) -> None:
            address = urlsplit(self.path)
            match = _TREE.match(unquote(address.path))
            if match is None or not any(key[0] == match["repo"] for key in hub.files):
                return self._empty(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            if match["revision"] not in REVISIONS:
                return self._empty(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
            query = parse_qs(address.query)
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            entries = hub.tree(match["repo"], match["folder"] or "", recursive)
            start = int(query.get("cursor", ["0"])[0])
            stop = start + hub.tree_page_size
            listing = json.dumps(entries[start:stop]).encode()
            self.send_response(200)
            if stop < len(entries):
                self.send_header("Link", f'<{hub.endpoint}{address.path}?recursive={str(recursive).lower()}&cursor={stop}>; rel="next"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(listing)))
            self.end_headers()
            if body:
                self.wfile.write(listing)

        def _resolve(self) -> None:
            match = _RESOLVE.match(self.path.split("?")[0])
            if match is None:
                return self._empty(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            repo, path = match["repo"], match["path"]
            if not any(key[0] == repo for key in hub.files):
                return self._empty(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            if match["revision"] not in REVISIONS:
                return self._empty(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
            served = hub.files.get((repo, path))
            if served is None:
                return self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": COMMIT})
            return self._empty(
                302,
                {
                    "Location": f"{hub.storage}/{served.sha256}?name={path.rsplit('/', 1)[-1]}",
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha1(served.sha256.encode()).hexdigest()}"',
                    "X-Linked-Etag": f'"{served.sha256}"',
                    "X-Linked-Size": str(served.size_bytes),
                },
            )

        def _storage(self, body: bool) -> None:
            served = hub.by_sha(self.path.split("?")[0].strip("/"))
            if served is None:
                return self._empty(404, {})
            start, end, status = 0, served.size_bytes - 1, 200
            wanted = _RANGE.match(self.headers.get("Range", ""))
            if wanted:
                start, end, status = int(wanted[1]), int(wanted[2] or end), 206
                if start > end or start >= served.size_bytes:
                    return self._empty(416, {"Content-Range": f"bytes */{served.size_bytes}"})
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{served.sha256}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{served.size_bytes}")
            self.end_headers()
            if body:
                self._send(served, start, end + 1)

        def _send(self, served: HubFile, start: int, stop: int) -> None:
            with served.source.open("rb") as f:
                f.seek(start)
                at = start
                while at < stop:
                    stall = hub.stall_at.get(served.path)
                    if stall is not None and at >= stall:
                        hub.wait_released()
                        self.close_connection = True
                        return
                    limit = min(stop, stall) if stall is not None and stall > at else stop
                    chunk = f.read(min(_CHUNK, limit - at))
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        # The client went away (killed): what it did not take was not sent.
                        self.close_connection = True
                        return
                    hub.count(served.path, len(chunk))
                    at += len(chunk)

        def _empty(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
