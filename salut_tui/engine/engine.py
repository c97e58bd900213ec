"""The engine as the asyncio side sees it: an async facade over the MLX thread.

`generate` turns a request into an async stream of chunks; `load`/`unload` manage models and
publish their events on the node's EventBus. All MLX work happens in `Worker`'s thread; this module
only keeps the bookkeeping the loop needs (which streams are queued or in flight, which models are
loaded) and moves values between the two sides.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar

from salut_tui.config import Settings
from salut_tui.engine import errors
from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.loader import LoadedModelInfo
from salut_tui.engine.memory import (
    MemoryStatus,
    MetalMemory,
    estimate_model_bytes,
    memory_status,
    read_metal_memory,
    within_limit,
    within_metal,
)
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.structured import Constraints
from salut_tui.engine.tokenize import tokenize_prompt
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, ModelError
from salut_tui.engine.worker import STARTED, Worker
from salut_tui.events import (
    CONVERTING,
    MEMORY_CHECK,
    EventBus,
    ModelLoaded,
    ModelLoadFailed,
    ModelLoadProgressed,
    ModelLoadStarted,
    ModelUnloaded,
)

__all__ = ["Engine", "LoadedModelInfo"]

log = logging.getLogger(__name__)
T = TypeVar("T")

GIB = 1024**3
RATE_WINDOW_S = 3.0  # tokens_per_second averages over this many seconds
METAL_REFRESH_S = 1.0  # how stale the MLX thread's memory figures may get


class _Stream:
    """One generation as the loop tracks it, from submit until the thread's last word on it."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.started = False  # decoding began (else it waits in the queue)
        self.closed = False  # the consumer left; the thread has been told to cancel

    def __call__(self, item: Any) -> None:
        if item is STARTED:
            self.started = True
        if not self.closed:
            self.queue.put_nowait(item)


class Engine:
    def __init__(self, settings: Settings, registry: ModelRegistry, events: EventBus) -> None:
        self.settings = settings
        self.registry = registry
        self.events = events
        self._worker: Worker | None = None
        self._stopped = False
        self._streams: dict[int, _Stream] = {}
        self._keys = itertools.count(1)
        self._tokenizing = 0  # requests whose prompt is being tokenized
        self._models: dict[str, LoadedModelInfo] = {}
        self._constraints = Constraints()
        self._loading: dict[str, asyncio.Task[LoadedModelInfo]] = {}
        # The thread loads one model at a time anyway; holding this across the fit check and the
        # load makes each check see the memory the previous load took (two preloads at start-up
        # would otherwise both pass against the same free memory).
        self._load_lock = asyncio.Lock()
        # Metal's memory figures, read on the MLX thread (never from the loop) and cached here.
        self._metal: MetalMemory | None = None
        self._metal_at = float("-inf")
        self._metal_pending = False

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._worker is None:
            self._worker = Worker(self.settings, asyncio.get_running_loop())
            self._worker.start()
            await self._refresh_metal()

    async def stop(self) -> None:
        """End every stream with a `shutting_down` error (a truncated answer must not read as
        finished), then end and join the MLX thread."""
        if self._worker is None or self._stopped:
            return
        self._stopped = True
        final = errors.shutting_down()
        self._worker.stop(final)
        await asyncio.to_thread(self._worker.join)
        await asyncio.sleep(0)  # let the thread's last deliveries (the finishes) run
        for stream in list(self._streams.values()):
            stream(final)
        self._streams.clear()
        self._models.clear()

    # ---- generation --------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Chunks of one generation, ending with exactly one Finish or Error. Never raises.

        The prompt is tokenized here, on a worker thread (the tokenizers release the GIL), not on
        the MLX thread: a long prompt then delays only its own request. One that cannot fit the
        context is refused on its length before it is tokenized. A consumer that leaves while
        its prompt is being tokenized submits nothing.
        """
        refusal = self._refusal(request)
        processors: tuple[Any, ...] = ()
        if refusal is None and request.constraint is not None:  # response_format, off-thread
            built = await self._constrain(request, request.constraint)
            refusal, processors = (built, ()) if isinstance(built, Error) else (None, (built,))
        if refusal is None:
            prompt_or_error = await self._tokenize(request)
            if self._worker is None or self._stopped:  # stopped while tokenizing
                refusal = errors.shutting_down()
            elif isinstance(prompt_or_error, Error):
                refusal = prompt_or_error
        if refusal is not None:
            yield refusal
            return
        assert self._worker is not None and isinstance(prompt_or_error, list)
        stream = _Stream(next(self._keys))
        self._streams[stream.key] = stream
        self._worker.submit(stream.key, request, prompt_or_error, self._sink(stream), processors)
        try:
            while True:
                item = await stream.queue.get()
                if item is STARTED:
                    continue
                yield item
                if isinstance(item, Finish | Error):
                    return
        finally:
            if stream.key in self._streams:
                # The consumer left early: stop the work in the thread. The stream stays counted
                # until the thread confirms, so in_flight tells the truth about the thread.
                stream.closed = True
                self._worker.cancel(stream.key)

    async def _constrain(self, request: GenerationRequest, constraint: JsonConstraint) -> Any:
        """The response_format mask's processor, or an Error (see structured.py)."""
        self._tokenizing += 1  # queued while its grammar is built, like while it tokenizes
        try:
            tokenizer = self.tokenizer_for(request.model)
            return await self._constraints.processor(request.model, tokenizer, constraint)
        finally:
            self._tokenizing -= 1

    async def _tokenize(self, request: GenerationRequest) -> list[int] | Error:
        """The prompt's token ids, or why it cannot be served (see tokenize.py)."""
        context = self._models[request.model].context_length
        self._tokenizing += 1  # counted as queued: the queue limit holds while they tokenize
        try:
            return await tokenize_prompt(self.tokenizer_for(request.model), request, context)
        finally:
            self._tokenizing -= 1

    def _refusal(self, request: GenerationRequest) -> Error | None:
        if self._worker is None or self._stopped:
            return errors.engine_stopped().to_error()
        if not self.is_loaded(request.model):
            return errors.model_not_loaded(request.model)
        if self.queued >= self.settings.max_queue:
            return errors.queue_full(self.settings.max_queue)
        return None

    def _sink(self, stream: _Stream):
        def sink(item: Any) -> None:
            stream(item)
            if isinstance(item, Finish | Error):
                self._streams.pop(stream.key, None)

        return sink

    @property
    def queued(self) -> int:
        return self._tokenizing + sum(1 for s in self._streams.values() if not s.started)

    @property
    def in_flight(self) -> int:
        return sum(1 for s in self._streams.values() if s.started)

    @property
    def tokens_decoded(self) -> int:
        """Tokens the MLX thread has decoded since start (all requests)."""
        return self._worker.tokens_decoded if self._worker else 0

    def tokens_per_second(self) -> float:
        if self._worker is None:
            return 0.0
        now = time.perf_counter()
        with self._worker.steps_lock:
            recent = [s for s in self._worker.steps if s[0] >= now - RATE_WINDOW_S]
        if not recent:
            return 0.0
        first_began = recent[0][0] - recent[0][1]
        return sum(s[2] for s in recent) / max(now - first_began, 1e-3)

    def tokenizer_for(self, model_id: str) -> Any:
        """The loaded model's tokenizer (for counting tokens), or None."""
        return self._worker.tokenizer(model_id) if self._worker else None

    async def run_on_mlx_thread(self, fn: Callable[[], T]) -> T:
        """Run a blocking function that uses MLX on the engine's thread, between decode steps."""
        if self._worker is None or self._stopped:
            raise errors.engine_stopped()
        return await asyncio.wrap_future(self._worker.call(fn))

    async def script_next(self, model_id: str, token_ids: list[int]) -> None:
        """The next generation on `model_id` produces exactly `token_ids`, then ends (a logits
        processor masks every other token: `sampling.ForcedTokens`). Everything after sampling
        is the real path (detokenizer, stop strings, tool-call parser, API encoding), which is
        what tests of tool calling need from a random-weight model that cannot choose to call."""
        assert self._worker is not None
        worker = self._worker
        scripts = tuple(int(t) for t in token_ids)
        await self.run_on_mlx_thread(
            lambda: worker.scripts.setdefault(model_id, deque()).append(scripts)
        )

    # ---- memory ------------------------------------------------------------------------
    def memory(self) -> MemoryStatus:
        """The machine's memory, capped by Metal's figures as the MLX thread last read them
        (a refresh is asked for when they are older than METAL_REFRESH_S)."""
        if (
            self._worker is not None
            and not self._stopped
            and not self._metal_pending
            and time.monotonic() - self._metal_at > METAL_REFRESH_S
        ):
            self._metal_pending = True
            self._worker.call(read_metal_memory).add_done_callback(self._metal_read)
        return self._memory_now()

    def _memory_now(self) -> MemoryStatus:
        limit = self.settings.memory_limit_gb
        used = sum(m.memory_bytes for m in self._models.values())
        capped = within_metal(memory_status(), self._metal)
        return within_limit(capped, int(limit * GIB) if limit else None, used)

    def _metal_read(self, future: Any) -> None:  # on the MLX thread: plain assignments only
        if not future.cancelled() and future.exception() is None:
            self._metal = future.result()
        self._metal_at, self._metal_pending = time.monotonic(), False

    async def _refresh_metal(self) -> None:
        self._metal = await self.run_on_mlx_thread(read_metal_memory)
        self._metal_at = time.monotonic()

    # ---- models ------------------------------------------------------------------------
    def loaded(self) -> list[LoadedModelInfo]:
        return list(self._models.values())

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._models

    async def load(
        self, model_id: str, *, force: bool = False, source: Path | None = None
    ) -> LoadedModelInfo:
        """Load `model_id` (from `source` when the caller already found its directory)."""
        if model_id in self._models:
            return self._models[model_id]
        task = self._loading.get(model_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(model_id, force, source))
            self._loading[model_id] = task
            task.add_done_callback(lambda _: self._loading.pop(model_id, None))
        return await asyncio.shield(task)

    async def _load(self, model_id: str, force: bool, source: Path | None) -> LoadedModelInfo:
        if self._worker is None or self._stopped:
            raise errors.engine_stopped()
        self.events.publish(ModelLoadStarted(model_id))
        try:
            loop = asyncio.get_running_loop()

            def progress(fraction: float, stage: str) -> None:
                event = ModelLoadProgressed(model_id, fraction, stage)
                loop.call_soon_threadsafe(self.events.publish, event)

            def converting(fraction: float, stage: str) -> None:
                progress(fraction, f"{CONVERTING}{stage}")

            # Resolving may convert the bundled default model (seconds of MLX work): on the
            # MLX thread, which keeps the loop free and MLX on one thread. Its progress is
            # reported with a "converting: " stage (the first start shows it).
            path = source
            if path is None:
                path = await self.run_on_mlx_thread(
                    lambda: self.registry.resolve(model_id, converting)
                )

            async with self._load_lock:
                if self._stopped:  # stopped while resolving or waiting: the thread is gone
                    raise errors.engine_stopped()
                await self._refresh_metal()  # the fit check needs what MLX holds right now
                # The check's figures as the first stage: a load asked from a peer shows them.
                progress(0.0, self._check_fits(model_id, estimate_model_bytes(path), force))
                info = await asyncio.wrap_future(self._worker.load(model_id, path, progress))
        except ModelError as exc:
            self.events.publish(ModelLoadFailed(model_id, exc.message))
            raise
        except Exception as exc:
            log.exception("loading %s failed", model_id)
            self.events.publish(ModelLoadFailed(model_id, str(exc)))
            raise ModelError(
                f"could not load the model '{model_id}': {exc}",
                status=500,
                code="model_load_failed",
                type="server_error",
                param="model",
            ) from exc
        self._models[model_id] = info
        self.events.publish(ModelLoaded(model_id, info.memory_bytes))
        log.info(
            "loaded %s (%.1f MB, context %d)",
            model_id,
            info.memory_bytes / 1e6,
            info.context_length,
        )
        return info

    def _check_fits(self, model_id: str, needed: int, force: bool) -> str:
        """Refuse a model that does not fit (unless forced); else say what the check found."""
        memory = self._memory_now()
        budget = memory.available - int(self.settings.memory_headroom_gb * GIB)
        if needed > budget and not force:
            raise ModelError(
                f"the model '{model_id}' needs about {needed / GIB:.2f} GiB but only "
                f"{max(budget, 0) / GIB:.2f} GiB is free after keeping "
                f"{self.settings.memory_headroom_gb:g} GiB headroom; unload a model or force the load",
                status=507,
                code="insufficient_memory",
                type="server_error",
                param="model",
            )
        forced = " (forced past it)" if needed > budget else ""
        return (
            f"{MEMORY_CHECK}needs about {needed / GIB:.2f} GiB, "
            f"{max(budget, 0) / GIB:.2f} GiB free{forced}"
        )

    async def unload(self, model_id: str) -> None:
        if model_id not in self._models or self._worker is None:
            raise ModelError.of(errors.model_not_loaded(model_id))
        del self._models[model_id]  # new requests are refused from now on
        await asyncio.wrap_future(self._worker.unload(model_id))
        self.events.publish(ModelUnloaded(model_id))
        log.info("unloaded %s", model_id)
