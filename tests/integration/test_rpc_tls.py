"""TLS 1.3 with a pre-shared key in llama.cpp's RPC transport (llama.cpp/patches/0004-rpc-tls.patch).

With GGML_RPC_TLS_PSK on both ends, a host's llama-server talks to a worker's rpc-server directly
(no relay) and answers as the model alone does; nothing without the key gets a single RPC command
executed: not a stock RPC client in clear text, not TLS 1.2, not TLS 1.3 without the key, not our own
client with a wrong key or identity. The rpc-server runs with GGML_RPC_DEBUG, which logs each
command it executes ("[hello] version: ..." for the first), and prints "Accepted client connection"
only after a handshake. Real binaries, SmolLM2, one machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from services.runner.models import resolve
from tests.conftest import SMOLLM2
from tests.nodes import free_port

pytestmark = pytest.mark.integration

KEY = os.urandom(32).hex()
TLS = {"GGML_RPC_TLS_PSK": KEY, "GGML_RPC_TLS_IDENTITY": "split-test"}
# RPC_CMD_HELLO (14), its request size (8 bytes, little-endian) and the request: 24 bytes of
# connection capabilities, none asked for. What any stock llama.cpp RPC client sends first.
HELLO = bytes([14]) + struct.pack("<Q", 24) + bytes(24)
EXECUTED = "[hello] version"  # GGML_RPC_DEBUG's line for the first command an rpc-server runs
PROMPT = "The capital of France is"


def environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any RPC TLS setting of the caller's, plus `extra`."""
    return {name: value for name, value in os.environ.items() if not name.startswith("GGML_RPC_TLS")} | extra


def no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a client that aborts (wrong key) leaves no core


@contextlib.contextmanager
def rpc_server(bin_dir: Path, log: Path, extra: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen]]:
    """(port, process) of a ggml-rpc-server on 127.0.0.1 logging every command into `log`."""
    port = free_port()
    argv = [str(bin_dir / "ggml-rpc-server"), "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environment({"GGML_RPC_DEBUG": "1"} | extra))
    try:
        # Watched from outside: a probe connection would itself be a client (a failed handshake).
        deadline = time.monotonic() + 30
        while not any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.Process(process.pid).net_connections("tcp")):
            assert process.poll() is None, f"rpc-server exited with {process.returncode}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"rpc-server not listening after 30 s: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def llama_server(bin_dir: Path, model: Path, log: Path, rpc_port: int | None = None, extra: dict[str, str] | None = None) -> Iterator[str]:
    """The base URL of a llama-server for `model`, alone or with every layer on the rpc-server at `rpc_port`."""
    port = free_port()
    argv = [str(bin_dir / "llama-server"), "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--ctx-size", "512", "--threads", "1", "--no-webui"]
    if rpc_port is not None:
        argv += ["--rpc", f"127.0.0.1:{rpc_port}", "--device", "RPC0", "--n-gpu-layers", "99"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environment(extra or {}), preexec_fn=no_core_dump)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"llama-server exited with {process.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"llama-server not ready after 60 s: {log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def greedy(base: str) -> str:
    body = {"prompt": PROMPT, "n_predict": 16, "temperature": 0, "seed": 1, "cache_prompt": False}
    response = httpx.post(f"{base}/completion", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["content"]


def plain_hello(port: int) -> tuple[bytes, bool]:
    """(what came back, whether the server closed the connection) for a stock RPC HELLO in clear text."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HELLO)
        sock.settimeout(3)
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
    return received, True


def tls_without_key(port: int, version: ssl.TLSVersion) -> None:
    """A TLS handshake that offers no pre-shared key; the rpc-server must refuse it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, pytest.raises((ssl.SSLError, ConnectionResetError)):
        context.wrap_socket(sock).close()


def list_rpc_devices(bin_dir: Path, port: int, extra: dict[str, str]) -> subprocess.CompletedProcess:
    """Our own RPC client (llama-server asking the rpc-server for its devices) with `extra`'s settings."""
    argv = [str(bin_dir / "llama-server"), "--rpc", f"127.0.0.1:{port}", "--list-devices"]
    env = environment({"GGML_NO_BACKTRACE": "1"} | extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, preexec_fn=no_core_dump)


def test_stock_rpc_server_executes_a_plain_hello(llama_bin_dir: Path, tmp_path: Path) -> None:
    """The control: without a key the rpc-server is upstream's, and the probe below is executed."""
    with rpc_server(llama_bin_dir, tmp_path / "rpc.log", {}) as (port, _):
        answer, closed = plain_hello(port)
    assert not closed and len(answer) > 8 and struct.unpack("<Q", answer[:8])[0] == len(answer) - 8, answer  # HELLO's answer: its size, then it
    assert EXECUTED in (tmp_path / "rpc.log").read_text()


def test_tls_split_serves_and_nothing_without_the_key_runs_a_command(llama_bin_dir: Path, tmp_path: Path) -> None:
    model = resolve(SMOLLM2, tmp_path).path
    log = tmp_path / "rpc.log"
    with rpc_server(llama_bin_dir, log, TLS) as (port, process):
        answer, closed = plain_hello(port)
        assert closed and (not answer or answer[0] == 0x15), answer  # nothing, or a TLS alert record: never an RPC answer
        tls_without_key(port, ssl.TLSVersion.TLSv1_2)
        tls_without_key(port, ssl.TLSVersion.TLSv1_3)
        wrong_key = list_rpc_devices(llama_bin_dir, port, TLS | {"GGML_RPC_TLS_PSK": os.urandom(32).hex()})
        wrong_identity = list_rpc_devices(llama_bin_dir, port, TLS | {"GGML_RPC_TLS_IDENTITY": "someone-else"})
        # Refused: the client gives up (its own "handshake with" line is best effort: llama's logger is
        # asynchronous and the abort can come first, seen on a loaded CI machine); the server's log
        # below says it refused each handshake.
        for refused in (wrong_key, wrong_identity):
            assert refused.returncode != 0, refused.stderr[-2000:]
        time.sleep(0.5)  # the last refusal's line
        before = log.read_text()
        assert process.poll() is None, before
        assert EXECUTED not in before and "Accepted client connection" not in before, before
        assert before.count("RPC TLS: handshake from 127.0.0.1") == 5, before

        # As the runner starts a split host: our write coalescing (patch 0002) on, through TLS.
        with llama_server(llama_bin_dir, model, tmp_path / "host.log", port, TLS | {"GGML_RPC_COALESCE": "1"}) as base:
            split = greedy(base)
        after = log.read_text()
        assert "Accepted client connection" in after and EXECUTED in after, after[-3000:]
        # The weights really are on the rpc-server: its largest buffer holds nearly the whole file.
        buffers = [int(size) for size in re.findall(r"\[alloc_buffer\] device: 0, size: (\d+)", after)]
        assert max(buffers, default=0) > 0.9 * model.stat().st_size, buffers
    with llama_server(llama_bin_dir, model, tmp_path / "solo.log") as base:
        assert split == greedy(base)
    assert split.strip()


def test_tls_asked_for_without_libssl_refuses_to_start(llama_bin_dir: Path, tmp_path: Path) -> None:
    """No libssl to be had: the rpc-server exits with the reason; it never serves in clear text."""
    argv = [str(llama_bin_dir / "ggml-rpc-server"), "--host", "127.0.0.1", "--port", str(free_port()), "--threads", "1"]
    env = environment(TLS | {"GGML_RPC_TLS_LIBSSL": str(tmp_path / "libssl.so.3")})
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "RPC TLS: cannot load OpenSSL 3" in done.stderr, done.stderr
