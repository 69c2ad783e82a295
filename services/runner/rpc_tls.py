"""TLS 1.3 in llama.cpp's RPC transport (our patch 0004): whether this machine can have it, and the
environment that turns it on for a split's llama-server and rpc-servers.

The patch loads libssl 3 with dlopen() when GGML_RPC_TLS_PSK is set, and a process asked for TLS
without a loadable libssl refuses to run (never clear text); so a node says it can speak TLS only
when the same library loads here, by the same names the patch tries (or GGML_RPC_TLS_LIBSSL).
Both ends of a split hold the same pre-shared key (placement derives it per split and gossip
carries it to the workers, members only); the identity only names the key.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping

IDENTITY = "mesh-llm-split"
# The patch's defaults, in its order (transport.cpp, rpc_tls_load).
if sys.platform == "darwin":
    LIBSSL_NAMES: tuple[str, ...] = ("libssl.3.dylib", "/opt/homebrew/opt/openssl@3/lib/libssl.3.dylib", "/usr/local/opt/openssl@3/lib/libssl.3.dylib")
else:
    LIBSSL_NAMES = ("libssl.so.3",)


def available(environ: Mapping[str, str]) -> bool:
    """Whether llama.cpp's processes started with `environ` could load libssl 3 for TLS."""
    chosen = environ.get("GGML_RPC_TLS_LIBSSL", "")
    for name in (chosen,) if chosen else LIBSSL_NAMES:
        try:
            ctypes.CDLL(name, mode=getattr(ctypes, "RTLD_LOCAL", 0))
        except OSError:
            continue
        return True
    return False


def environment(key: str) -> dict[str, str]:
    """The variables that make a llama.cpp process speak TLS with `key` (64 hex digits); none for ""."""
    return {"GGML_RPC_TLS_PSK": key, "GGML_RPC_TLS_IDENTITY": IDENTITY} if key else {}


def dial_host(host: str) -> str:
    """Where this machine connects to a server listening on `host` (a wildcard: loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host
