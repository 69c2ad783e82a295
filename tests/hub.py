"""A local stand-in for the Hugging Face Hub, for the real huggingface_hub client (HF_ENDPOINT).

It answers what a download asks, the way the Hub does for an LFS file:
- HEAD/GET {endpoint}/{org}/{repo}/resolve/{revision}/{path}: 302 to the file's storage URL on
  another origin (the Hub sends its CDN; here a second port, so the client stops at the redirect
  and reads the metadata from it), with X-Repo-Commit, ETag, X-Linked-Etag (the file's sha256) and
  X-Linked-Size; 404 with X-Error-Code RepoNotFound or EntryNotFound, as the Hub;
- HEAD/GET {storage}/{sha256}: the bytes, with Content-Length, Accept-Ranges and Range requests
  (206 with Content-Range).
It counts the bytes of each file it sends, and can stall a file's body at a given offset (holding
the connection open) so a test can kill the downloading process half-way.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
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
            else:
                self._resolve()

        def _resolve(self) -> None:
            match = _RESOLVE.match(self.path.split("?")[0])
            if match is None:
                return self._empty(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            repo, path = match["repo"], match["path"]
            if not any(key[0] == repo for key in hub.files):
                return self._empty(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
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
