from pathlib import Path

from services.runner.command import child_environment, llama_server_argv


def test_llama_server_binds_loopback_and_names_the_model() -> None:
    argv = llama_server_argv(Path("/bin/llama-server"), Path("/m/x.gguf"), "x", 4321, ctx_size=2048, threads=3, device="")
    pairs = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "/bin/llama-server"
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "4321"
    assert pairs["--alias"] == "x" and pairs["--model"] == "/m/x.gguf"
    assert pairs["--ctx-size"] == "2048" and pairs["--threads"] == "3"
    assert "--device" not in argv


def test_device_is_passed_when_given() -> None:
    argv = llama_server_argv(Path("s"), Path("m"), "m", 1, ctx_size=1, threads=1, device="CUDA0")
    assert argv[argv.index("--device") + 1] == "CUDA0"


def test_child_environment_keeps_only_what_children_need() -> None:
    env = child_environment({"PATH": "/bin", "MESH_GATEWAY_API_KEY": "secret", "HOME": "/root"})
    assert env == {"PATH": "/bin", "HOME": "/root"}
