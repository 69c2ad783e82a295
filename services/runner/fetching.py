"""Models the runner fetches from the Hub in the background, and how far each has come.

Placement asks (Fetch) for a model named by --model that is not on disk; the download runs in a
thread of its own (huggingface_hub's transfer is blocking) while the node serves the console and
whatever else it has. Progress is published through the runner's Changes (its Watch stream), at
most every PROGRESS_SECONDS. A failed attempt is retried with a doubling delay: the Hub may be
back, the disk freed; the record shows the error and the next attempt meanwhile. Starting an
attempt anew resumes the partial file (downloads.py), so a retry fetches only the rest.

Owns the download tasks and their states; the bytes on disk are downloads.py's. Must not start processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import constants

from services.common import clock
from services.common.logs import event
from services.common.model_names import CatalogSource, HubSource, ModelNameError, parse_model
from services.common.records import Download, DownloadState
from services.runner.downloads import download, download_source
from services.runner.hub_files import DownloadError
from services.runner.models import catalog_of, model_id_of

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5  # the console redraws about this often; more would only churn gossip


class NotAHubModel(ValueError):
    """A spec that names nothing on the Hub (a local path, an unknown name); one line for the user."""


@dataclass(frozen=True)
class Retry:
    initial: float = 5.0  # seconds before the first new attempt
    most: float = 300.0  # the delay never grows past this: a Hub back up is used within minutes


class Fetches:
    def __init__(self, publish: Callable[[], Coroutine[None, None, None]], retry: Retry = Retry()) -> None:
        self.publish = publish  # tells Watch followers the states changed
        self.retry = retry
        self._states: dict[str, Download] = {}  # spec -> its download's state
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._published = 0.0  # monotonic time progress was last published
        self._pending: asyncio.TimerHandle | None = None  # a publish of progress held back by the interval
        self._publishing: set[asyncio.Task[None]] = set()  # publishes in flight (the loop keeps only weak references)

    def states(self) -> tuple[Download, ...]:
        return tuple(self._states[spec] for spec in sorted(self._states))

    def start(self, spec: str, models_dir: Path) -> Download:
        """Fetch the model `spec` names into models_dir unless that already runs; its state now.
        NotAHubModel when the spec names no Hub model."""
        source = hub_source(spec, models_dir)
        running = self._tasks.get(spec)
        if running is None or running.done():
            name = source.entry.name if isinstance(source, CatalogSource) else (model_id_of(Path(source.file)) if source.file else spec)
            self._states[spec] = Download(name, DownloadState.FETCHING)
            self._tasks[spec] = asyncio.get_running_loop().create_task(self._fetch(spec, source, models_dir))
        return self._states[spec]

    async def _fetch(self, spec: str, source: CatalogSource | HubSource, models_dir: Path) -> None:
        delay = self.retry.initial
        while True:
            try:
                path = await self._attempt(spec, source, models_dir)
            except DownloadError as failure:
                failed = replace(self._states[spec], state=DownloadState.FAILED, error=str(failure), retry_at=clock.now() + delay)
                self._states[spec] = failed
                event(log, "download failed", logging.WARNING, model=failed.model_id, error=str(failure), retry_seconds=delay)
                await self.publish()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.most)
                self._states[spec] = replace(failed, state=DownloadState.FETCHING, error="", retry_at=0.0)
                continue
            # A catalog model is served by its catalog name; a Hub file by its file's.
            name = self._states[spec].model_id if isinstance(source, CatalogSource) and not source.quant else model_id_of(path)
            done = replace(self._states[spec], model_id=name, state=DownloadState.DONE, error="")
            self._states[spec] = replace(done, done_bytes=done.total_bytes)
            event(log, "downloaded", model=done.model_id, path=str(path), bytes=done.total_bytes)
            await self.publish()
            return

    async def _attempt(self, spec: str, source: CatalogSource | HubSource, models_dir: Path) -> Path:
        """One download in a daemon thread (a node stopping mid-download exits at once; the partial
        file stays for the next start), its progress published from the event loop."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Path] = loop.create_future()

        def progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(self._progress, spec, done, total)

        def run() -> None:
            try:
                path = fetch(source, models_dir, progress)
            except BaseException as failure:  # noqa: BLE001 - handed to the awaiting task, which knows what to do with it
                loop.call_soon_threadsafe(_settle, finished, None, failure)
            else:
                loop.call_soon_threadsafe(_settle, finished, path, None)

        threading.Thread(target=run, name=f"download {spec}", daemon=True).start()
        return await finished

    def _progress(self, spec: str, done: int, total: int) -> None:
        """A download's new count, published at most every PROGRESS_SECONDS: the latest count always
        goes out (a count held back is published when the interval ends, even if none follows it)."""
        self._states[spec] = replace(self._states[spec], done_bytes=done, total_bytes=total)
        if self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._published + PROGRESS_SECONDS - time.monotonic())
        self._pending = loop.call_later(wait, self._publish_progress)

    def _publish_progress(self) -> None:
        self._pending = None
        self._published = time.monotonic()
        task = asyncio.get_running_loop().create_task(self.publish())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)


def _settle(finished: asyncio.Future[Path], path: Path | None, failure: BaseException | None) -> None:
    if finished.done():
        return
    if failure is not None:
        finished.set_exception(failure)
    elif path is not None:
        finished.set_result(path)


def fetch(source: CatalogSource | HubSource, models_dir: Path, progress: Callable[[int, int], None]) -> Path:
    """Download the model (blocking); the path llama.cpp opens."""
    if isinstance(source, CatalogSource) and not source.quant:
        return download(source.entry, models_dir, progress=False, on_progress=progress)
    return download_source(as_hub(source), models_dir, progress=False, on_progress=progress)


def hub_source(spec: str, models_dir: Path) -> CatalogSource | HubSource:
    """Where on the Hub the model `spec` names comes from; NotAHubModel for a local file or a
    catalog model shipped in a package."""
    catalog = catalog_of(models_dir)
    try:
        source = parse_model(spec, on_disk=False, entries=tuple(catalog.values()), endpoint=constants.ENDPOINT)
    except ModelNameError as bad:
        raise NotAHubModel(str(bad)) from None
    if isinstance(source, HubSource) or (isinstance(source, CatalogSource) and source.entry.repo):
        return source
    raise NotAHubModel(f"{spec} is not a model on the Hub: nothing to fetch")


def as_hub(source: CatalogSource | HubSource) -> HubSource:
    """A catalog entry's other quant as the Hub form it is (its repository, that quant)."""
    return source if isinstance(source, HubSource) else HubSource(source.entry.repo, quant=source.quant)
