#!/usr/bin/env python3
"""One node on a GPU machine: does it offer the GPU's memory, place the model by it, and serve it
from the GPU? Run by bench/device/gpu_node.sh after `GPU=1 setup.sh` (MESH_LLAMA_BIN: the CUDA
build; GPU_MODEL: the 8B-shaped GGUF). Prints what llama-server lists, the memory the node offers
against the RAM, /api/status's devices and placement's reason, the layers llama.cpp offloaded, the
GPU's memory in use and one chat completion's tokens/s; files under $OUT."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import psutil

from services.runner.command import child_environment
from tests.nodes import NodeProcess

BIN = Path(os.environ.get("MESH_LLAMA_BIN", "/tmp/devbench/bin"))
MODEL = Path(os.environ.get("GPU_MODEL", "/tmp/devbench/models/Dense-8B.gguf"))
OUT = Path(os.environ.get("OUT", "/tmp/gpu_node_out"))
WORK = Path("/tmp/gpunode")
GIB = 1024**3
# llama.cpp's lines about where the weights and the cache went.
OFFLOAD = re.compile(r"offload|CUDA0|CUDA_Host|using device|model buffer|KV buffer|compute buffer|ggml_cuda_init|Device 0|fit|n_gpu_layers|flash_attn", re.I)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{argv[0]}: {e}"


def wait_ready(node: NodeProcess, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            status = node.status()
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        states = [(m.get("model_id"), m.get("kind"), m.get("state")) for m in status.get("models", [])]
        if states != last:
            print(f"  {time.monotonic() - (deadline - timeout):6.1f}s role={status.get('role')} models={states}", flush=True)
            last = states
        if any(m.get("state") == "ready" for m in status.get("models", [])):
            return status
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout}s:\n{node.log_tail(60)}")


def chat(api: str, model: str, max_tokens: int) -> tuple[dict, float]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write a long story about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,  # random weights may end early; llama-server reads it (extra field)
    }
    t0 = time.monotonic()
    reply = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=300)
    wall = time.monotonic() - t0
    reply.raise_for_status()
    return reply.json(), wall


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    env = child_environment(dict(os.environ))  # what the runner gives llama-server

    section("llama-server --list-devices (the runner's environment)")
    print(sh_env([str(BIN / "llama-server"), "--list-devices"], env))
    section("RAM (free -g) and psutil")
    print(sh(["free", "-g"]))
    ram = psutil.virtual_memory().total
    print(f"psutil RAM total: {ram} bytes = {ram / GIB:.1f} GiB")
    section("nvidia-smi before")
    print(sh(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,memory.free", "--format=csv"]))
    print(f"model: {MODEL} ({MODEL.stat().st_size / GIB:.2f} GiB)")

    # The node's llama-server logs at llama.cpp's default verbosity (3: info), which no longer prints
    # where the layers went; a wrapper adds -lv 4 (trace) so that "offloaded N/M layers to GPU" and
    # the buffer sizes reach the node's log (DEBUG). It execs the real binary: same process, same name.
    wrapped = WORK / "bin"
    wrapped.mkdir(parents=True)
    (wrapped / "llama-server").write_text(f'#!/bin/sh\nexec {BIN / "llama-server"} -lv 4 "$@"\n')
    (wrapped / "llama-server").chmod(0o755)
    (wrapped / "ggml-rpc-server").symlink_to(BIN / "ggml-rpc-server")
    # GPU_NODE_ARGS: more flags, e.g. "--max-vram 200" (above the RAM: the node must not cap itself by RAM).
    extra = os.environ.get("GPU_NODE_ARGS", "").split()
    node = NodeProcess(
        WORK, "--host", "127.0.0.1", "--model", str(MODEL), "--download", "never", "--no-announce", "--log-level", "DEBUG", "--name", "gpu-node", *extra
    )
    section(f"node: {' '.join(node.argv)}")
    t0 = time.monotonic()
    node.start({"MESH_LLAMA_BIN": str(wrapped)})
    try:
        status = wait_ready(node, float(os.environ.get("GPU_NODE_READY_S", "300")))
        print(f"ready in {time.monotonic() - t0:.1f}s")
        (OUT / "status.json").write_text(json.dumps(status, indent=1))

        section("/api/status: memory offered vs RAM")
        offered = status["memory_offered_bytes"]
        print(
            f"memory_offered_bytes: {offered} = {offered / GIB:.1f} GiB  (RAM {ram / GIB:.1f} GiB; GPU total per devices: "
            f"{sum(d['total_bytes'] for d in status['devices']) / GIB:.1f} GiB)"
        )
        gpu_total = sum(d["total_bytes"] for d in status["devices"])
        if "--max-vram" in extra:
            print(f"offered is --max-vram's {offered / GIB:.1f} GiB: {'above' if offered > ram else 'not above'} the RAM ({ram / GIB:.1f} GiB)")
        else:
            print("offered is the GPU's memory" if offered == gpu_total and offered != ram else "offered is NOT the GPU's memory")
        section("/api/status: devices")
        print(json.dumps(status["devices"], indent=1))
        section("/api/status: assignments and models")
        print(json.dumps(status["assignments"], indent=1))
        print(json.dumps(status["models"], indent=1))

        section("nvidia-smi with the model loaded")
        print(sh(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,memory.free,utilization.gpu", "--format=csv"]))
        print(sh(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"]))
        for p in node.llama_servers():
            print(f"llama-server pid {p.pid}: {' '.join(p.cmdline())}")

        model_id = next(m["model_id"] for m in status["models"] if m.get("state") == "ready")
        section(f"chat completions through the node's API ({node.api}, model {model_id})")
        chat(node.api, model_id, 8)  # warm-up
        for _ in range(2):
            reply, wall = chat(node.api, model_id, 128)
            tokens = reply.get("usage", {}).get("completion_tokens", 0)
            print(f"completion_tokens={tokens} wall={wall:.2f}s -> {tokens / wall:.1f} tok/s end to end (prompt included)")
            if "timings" in reply:
                t = reply["timings"]
                print(
                    f"llama-server timings: prompt {t.get('prompt_n')} tok at {t.get('prompt_per_second', 0):.1f} tok/s, "
                    f"decode {t.get('predicted_n')} tok at {t.get('predicted_per_second', 0):.1f} tok/s"
                )
        print("text:", repr(reply["choices"][0]["message"].get("content", "")[:200]))
        print("usage:", reply.get("usage"))

        section("nvidia-smi after the completions")
        print(sh(["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv"]))
    finally:
        try:
            print(f"\nnode exit on SIGINT: {node.interrupt(60)}")
        except Exception as e:  # noqa: BLE001
            print(f"interrupt failed: {e}")
            node.stop()
        log = node.log_path.read_text(errors="replace")
        section("llama-server's lines about devices and offloading (node log, DEBUG)")
        for line in log.splitlines():
            if "llama-server" in line and OFFLOAD.search(line) or "devices listed" in line or "decided" in line.lower():
                print(line[:400])
        lines = log.splitlines()
        (OUT / "node.log").write_text("\n".join(lines[-20000:]) + "\n")
    return 0


def sh_env(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    return f"rc={done.returncode}\n{done.stdout.strip()}\n{done.stderr.strip()[-3000:]}"


if __name__ == "__main__":
    sys.exit(main())
