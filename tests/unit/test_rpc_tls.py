"""TLS in llama.cpp's RPC, the runner's side: whether libssl 3 loads here (by the patch's names or
GGML_RPC_TLS_LIBSSL), the variables that turn it on, and where a TLS rpc-server listens."""

from __future__ import annotations

from pathlib import Path

from services.cli.main import rpc_host
from services.placement.processes import direct_host
from services.runner import rpc_tls
from services.runner.command import rpc_server_argv


def test_libssl_is_found_by_the_patchs_names_or_the_one_named() -> None:
    assert rpc_tls.available({}) == any(_loads(name) for name in rpc_tls.LIBSSL_NAMES)
    assert rpc_tls.available({"GGML_RPC_TLS_LIBSSL": "/nowhere/libssl.so.3"}) is False


def _loads(name: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def test_the_environment_of_a_tls_process_and_of_a_plain_one() -> None:
    assert rpc_tls.environment("ab" * 32) == {"GGML_RPC_TLS_PSK": "ab" * 32, "GGML_RPC_TLS_IDENTITY": "mesh-llm-split"}
    assert rpc_tls.environment("") == {}


def test_an_rpc_server_listens_on_loopback_unless_told_where() -> None:
    plain = rpc_server_argv(Path("rpc-server"), 5000, threads=2, cache=True)
    assert plain[plain.index("--host") + 1] == "127.0.0.1"
    tls = rpc_server_argv(Path("rpc-server"), 5000, threads=2, cache=True, host="10.0.0.2")
    assert tls[tls.index("--host") + 1] == "10.0.0.2"


def test_tls_rpc_servers_listen_where_the_quic_endpoint_does_over_ipv4() -> None:
    assert [rpc_host(h) for h in ("0.0.0.0", "", "::", "127.0.0.3", "192.168.1.5", "fe80::1")] == [
        "0.0.0.0",
        "0.0.0.0",
        "0.0.0.0",
        "127.0.0.3",
        "192.168.1.5",
        "127.0.0.1",
    ]


def test_a_host_dials_a_tls_rpc_server_where_its_peers_can_reach_it() -> None:
    assert direct_host("0.0.0.0", "10.0.0.2:7447") == "10.0.0.2"  # every interface: the QUIC address's
    assert direct_host("10.0.0.2", "10.0.0.2:7447") == "10.0.0.2"
    assert direct_host("127.0.0.3", "127.0.0.3:7447") == "127.0.0.3"  # a test mesh on one machine
    assert direct_host("127.0.0.1", "10.0.0.2:7447") == ""  # the worker's loopback: through the tunnel
    assert direct_host("", "10.0.0.2:7447") == ""  # a plain rpc-server: through the tunnel
    assert direct_host("0.0.0.0", "[fe80::2]:7447") == "fe80::2"
