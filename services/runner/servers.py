"""The processes this node runs for models: llama-servers (one per model) and rpc-servers
(a split's workers), each a supervised child.

Owns starting and stopping per-model supervisors and reporting their states; argv comes from
command.py, process handling from supervisor.py.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common import cpus
from services.common.changes import Changes
from services.common.logs import event
from services.common.records import ProcessKind, ServedModel
from services.runner import binaries, layer_fetch, moe, priming, rpc_tls, sizing
from services.runner.command import llama_server_argv, rpc_server_argv
from services.runner.hashing import NativeBuildError
from services.runner.hub_files import DownloadError
from services.runner.models import ModelError
from services.runner.settings import RunnerSettings
from services.runner.supervisor import Supervisor

LLAMA_SERVER, RPC_SERVER = ProcessKind.LLAMA_SERVER, ProcessKind.RPC_SERVER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """How a host's llama-server reaches its workers."""

    rpc_endpoints: tuple[str, ...] = ()
    worker_layers: int = 0
    tensor_split: tuple[float, ...] = ()
    rpc_key: str = field(default="", repr=False)  # TLS with the workers' rpc-servers (rpc_tls.py); "": plain
    host_last: bool = False  # the host runs the last blocks on its GPU, the workers the first (priming.worker_layers)
    hashes: str = ""  # the workers' tensors' hashes (priming.hash_list), which llama-server then need not compute
    draft_device: str = ""  # a GPU host's own devices, where its draft model runs (not on the workers')
    host_weights: tuple[int, ...] = ()  # a GPU host's devices' memory, over which its blocks are dealt


@dataclass(frozen=True)
class HubLayers:
    """A model a split's worker does not hold: its file on the Hub, whose layers it fetches."""

    source: str  # org/repo/path.gguf
    models_dir: Path  # where the partial file is kept (layer_fetch.layers_path)
    fingerprint: str  # of the host's file: the Hub's must be the same model


@dataclass
class _Served:
    model_id: str
    kind: ProcessKind
    path: Path
    supervisor: Supervisor
    task: asyncio.Task[None]
    split: Split
    draft: Path | None = None
    slots: int = 0  # llama-server's --parallel


class LlamaServers:
    def __init__(
        self,
        settings: RunnerSettings,
        cache_dir: Path,
        llama_bin: Path,
        cache_root: Path,
        cores: tuple[int, ...] | None = None,
        split_environment: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.llama_bin = llama_bin  # the folder of llama.cpp's binaries (binaries.folder_of), decided at start
        self.cache_root = cache_root  # the machine's mesh-llm cache (NodeSettings.cache), where priming's hashing function is compiled to
        self.cores = cores or cpus.node_cpus()  # what llama's thread counts are made for (cpus.math_cores)
        self.split_environment = split_environment or {}  # for a split's llama processes (cpus.split_environment)
        self.cache_dir = cache_dir  # rpc-servers' tensor cache (LLAMA_CACHE)
        self.changes = Changes()
        self._served: dict[tuple[str, ProcessKind], _Served] = {}
        self.primed_bytes = 0  # written into rpc-server caches by priming, since start
        self.fetched_bytes = 0  # of split layers fetched from the Hub, since start
        self.shards_dir = cache_dir.parent / "moe"  # MoE shards and expert rankings, reused across runs

    def serve(self, model_id: str, path: Path, split: Split = Split(), draft: Path | None = None, memory_bytes: int = 0) -> ServedModel:
        """Supervise llama-server for the model (with `draft` as its draft model), sized for a node
        offering `memory_bytes` (sizing.py); a model already served the same way is left as is, one
        served with another split or draft is restarted."""
        current = self._served.get((model_id, LLAMA_SERVER))
        if current is not None and (current.split, current.path, current.draft) == (split, path, draft):
            return self.state_of(model_id)
        if current is not None:
            current.task.cancel()
        binary = binaries.binary("llama-server", self.llama_bin)
        s = self.settings
        threads = self._threads()
        shape = self._shape(path)
        sized = sizing.size(
            shape,
            memory_bytes,
            split=bool(split.rpc_endpoints),
            ctx_size=s.ctx_size,
            kv_type=s.kv_type,
            parallel=s.parallel,
            cache_ram_mib=s.cache_ram_mib,
        )

        def argv(port: int) -> list[str]:
            return llama_server_argv(
                binary,
                path,
                model_id,
                port,
                ctx_size=s.ctx_size,
                threads=threads,
                device=s.device,
                rpc_endpoints=split.rpc_endpoints,
                worker_layers=split.worker_layers,
                tensor_split=split.tensor_split,
                host_layers=max(1, shape.layers - split.worker_layers) if split.host_last else 0,
                host_weights=split.host_weights,
                draft=draft,
                draft_device=split.draft_device,
                speculation=s.speculation,
                sizing=sized,
            )

        # Our patches of llama.cpp: weights of any size go by hash, so primed workers receive none
        # (0001); the last host block's residual add stays on the host, so a token sends the workers
        # one hidden state instead of the add's two inputs (0003); the workers' tensors' hashes come
        # from a list written once, not from hashing gigabytes on each load (0005).
        environment = {"GGML_RPC_HASH_THRESHOLD": "0", "LLAMA_PIN_LAYER_OUT": "1"} | self._rpc_environment(split.rpc_key) if split.rpc_endpoints else {}
        if split.rpc_endpoints and split.hashes:
            environment["GGML_RPC_HASHES"] = split.hashes
        supervisor = Supervisor(f"llama-server[{model_id}]", argv, "/health", s, self.changes.publish, environment)
        self._start(model_id, LLAMA_SERVER, path, supervisor, split, draft, sized.parallel)
        return self.state_of(model_id)

    def hash_list(self, path: Path, split: Split) -> str:
        """The hashes of the tensors a split's workers hold (priming.hash_list, written on the first
        load of the file and reused), for its host's llama-server; "" when the model's block count
        cannot be read (llama-server then hashes them itself)."""
        layers = self._shape(path).layers
        if not split.rpc_endpoints or not self.settings.prime_rpc_cache or layers == 0:
            return ""
        blocks = range(split.worker_layers) if split.host_last else range(layers - split.worker_layers, layers)
        started = time.monotonic()
        try:
            listed = priming.hash_list(path, blocks, self.cache_dir / "hashes", self.cache_root, self._threads())
        except (OSError, ModelError, NativeBuildError, subprocess.CalledProcessError) as failed:
            # No list (a full disk, no C compiler for the hashing function...): llama-server hashes them itself.
            event(log, "rpc hashes not listed", logging.WARNING, reason=str(failed))
            return ""
        event(log, "rpc hashes listed", blocks=f"{blocks.start}-{blocks.stop - 1}", file=listed.name, seconds=round(time.monotonic() - started, 2))
        return str(listed)

    @staticmethod
    def _shape(path: Path) -> sizing.Shape:
        """The model's shape for sizing; a header we cannot read sizes like an unknown model (the
        smallest context, f16), and llama-server, reading the file itself, says what is wrong with it."""
        try:
            return sizing.shape_of(path)
        except ModelError:
            return sizing.UNKNOWN

    async def serve_shard(
        self, model_id: str, path: Path, experts: tuple[tuple[int, ...], ...], draft: Path | None = None, memory_bytes: int = 0
    ) -> ServedModel:
        """Serve this node's shard of a Mixture-of-Experts model: the experts kept per layer are
        written into a standalone GGUF once (cached under the node's home), then served as the model."""
        target = moe.shard_path(self.shards_dir, path, experts)
        if not target.is_file():
            started = time.monotonic()
            await asyncio.to_thread(moe.write_shard, path, target, experts)
            event(log, "moe shard written", model=model_id, experts=len(experts[0]), bytes=target.stat().st_size, seconds=round(time.monotonic() - started, 2))
        return self.serve(model_id, target, draft=draft, memory_bytes=memory_bytes)

    async def inspect(self, path: Path) -> moe.ModelFacts:
        return await asyncio.to_thread(moe.model_facts, path, self.shards_dir, self.llama_bin, self._threads())

    async def serve_rpc(
        self, model_id: str, path: Path, layers: tuple[int, ...] = (), worker_index: int = 0, rpc_key: str = "", host_last: bool = False
    ) -> ServedModel:
        """Supervise an rpc-server that works for a split of the model (tensor cache on), its cache
        primed first with this worker's layers so the host sends hashes instead of weights. With
        `rpc_key` it speaks TLS only, with that key, where peers reach it (settings.rpc_host);
        without, plain RPC on 127.0.0.1. `host_last`: the split's host runs on a GPU, after the
        workers (priming.worker_layers). A new key or order restarts it (its primed cache stays)."""
        current = self._served.get((model_id, RPC_SERVER))
        if current is not None and (current.split.rpc_key, current.split.host_last) != (rpc_key, host_last):
            current.task.cancel()
            await asyncio.gather(current.task, return_exceptions=True)
            del self._served[(model_id, RPC_SERVER)]
            if current.split.host_last != host_last:
                # Other blocks now: the cache files of the old ones would be a stray copy of their weights.
                priming.unprime(self.cache_dir, self._manifest(model_id))
            current = None
        if current is None:
            if self.settings.prime_rpc_cache and layers:
                blocks = priming.worker_layers(layers, sum(layers), worker_index, host_last)
                started = time.monotonic()
                primed = await asyncio.to_thread(priming.prime, path, self.cache_dir, blocks, self._manifest(model_id), self.cache_root, self._threads())
                self.primed_bytes += primed.bytes
                event(
                    log,
                    "rpc cache primed",
                    model=model_id,
                    blocks=f"{blocks.start}-{blocks.stop - 1}",
                    files_written=primed.files,
                    bytes=primed.bytes,
                    seconds=round(time.monotonic() - started, 2),
                )
            binary = binaries.binary("ggml-rpc-server", self.llama_bin)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            threads = self._threads()
            host = self.settings.rpc_host if rpc_key else "127.0.0.1"
            supervisor = Supervisor(
                f"rpc-server[{model_id}]",
                lambda port: rpc_server_argv(binary, port, threads=threads, cache=True, host=host, device=self.settings.device),
                None,
                self.settings,
                self.changes.publish,
                {"LLAMA_CACHE": str(self.cache_dir)} | self._rpc_environment(rpc_key),
                host,
            )
            self._start(model_id, RPC_SERVER, path, supervisor, Split(rpc_key=rpc_key, host_last=host_last))
        return self.state_of(model_id, RPC_SERVER)

    async def serve_rpc_fetched(
        self, model_id: str, hub: HubLayers, layers: tuple[int, ...], worker_index: int, rpc_key: str = "", host_last: bool = False
    ) -> ServedModel:
        """serve_rpc for a worker without the model: its layers fetched from the Hub into a partial
        file first (resumed and reused across runs), which priming then reads as it reads a whole one."""
        current = self._served.get((model_id, RPC_SERVER))
        if current is None or current.split.host_last != host_last:
            repo, file = "/".join(hub.source.split("/")[:2]), "/".join(hub.source.split("/")[2:])
            fetched = await asyncio.to_thread(layer_fetch.fetch_layers, repo, file, hub.models_dir, layers, worker_index, host_last=host_last)
            self.fetched_bytes += fetched.fetched_bytes
            event(
                log,
                "layers fetched",
                model=model_id,
                source=hub.source,
                blocks=f"{fetched.blocks.start}-{fetched.blocks.stop - 1}",
                fetched_bytes=fetched.fetched_bytes,
                held_bytes=fetched.held_bytes,
                file_bytes=fetched.size_bytes,
            )
            if hub.fingerprint and fetched.fingerprint != hub.fingerprint:
                raise DownloadError(
                    f"{hub.source} on the Hub is not the host's file of {model_id} (fingerprint {fetched.fingerprint}, the host's {hub.fingerprint})"
                )
            return await self.serve_rpc(model_id, fetched.path, layers, worker_index, rpc_key, host_last)
        return await self.serve_rpc(model_id, current.path, layers, worker_index, rpc_key, host_last)

    def _threads(self) -> int:
        return self.settings.threads or cpus.math_cores(self.cores)

    def _rpc_environment(self, rpc_key: str = "") -> dict[str, str]:
        # Our patches of llama.cpp: one write per burst of RPC commands (0002); TLS with the split's
        # key (0004). A TLS split's RPC goes host to worker directly, with no gateway to make room
        # for: its llama threads keep libgomp's own spin, as stock RPC's do (measured on separate
        # 6-core nodes: 0.98x stock with it, 0.88-0.89x with the short spin; bench/split_cores.py).
        # A plain split's RPC crosses both gateways: the short spin (cpus.split_environment).
        coalesce = {"GGML_RPC_COALESCE": "1"} if self.settings.rpc_coalesce else {}
        spin = {} if rpc_key else self.split_environment
        return coalesce | spin | rpc_tls.environment(rpc_key)

    def _start(self, model_id: str, kind: ProcessKind, path: Path, supervisor: Supervisor, split: Split, draft: Path | None = None, slots: int = 0) -> None:
        task = asyncio.create_task(supervisor.run(), name=f"{kind} {model_id}")
        self._served[(model_id, kind)] = _Served(model_id, kind, path, supervisor, task, split, draft, slots)

    async def stop(self, model_id: str, kind: ProcessKind = LLAMA_SERVER) -> bool:
        served = self._served.pop((model_id, kind), None)
        if served is None:
            return False
        served.task.cancel()
        await asyncio.gather(served.task, return_exceptions=True)
        if kind == RPC_SERVER:
            # The cache is a second copy of the weights: drop it with the worker.
            priming.unprime(self.cache_dir, self._manifest(model_id))
        await self.changes.publish()
        return True

    def _manifest(self, model_id: str) -> Path:
        return self.cache_dir / "manifests" / f"{model_id}.txt"

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(model_id, kind) for model_id, kind in list(self._served)))

    def pid_of(self, model_id: str, kind: ProcessKind = LLAMA_SERVER) -> int:
        """The process id of the model's server (0 while it is not running)."""
        return self._served[(model_id, kind)].supervisor.status.pid

    def load_seconds(self, model_id: str, kind: ProcessKind = LLAMA_SERVER) -> float:
        return self._served[(model_id, kind)].supervisor.status.load_seconds

    def states(self) -> list[ServedModel]:
        return [self.state_of(model_id, kind) for model_id, kind in sorted(self._served)]

    def state_of(self, model_id: str, kind: ProcessKind = LLAMA_SERVER) -> ServedModel:
        served = self._served[(model_id, kind)]
        status = served.supervisor.status
        return ServedModel(
            model_id=model_id,
            path=str(served.path),
            state=status.state,
            port=status.port,
            restarts=status.restarts,
            last_error=status.last_error,
            retry_at=status.retry_at,
            size_bytes=served.path.stat().st_size,
            kind=kind,
            slots=served.slots,
            host=served.supervisor.host if served.split.rpc_key else "",
        )
