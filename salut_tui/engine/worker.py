"""The one thread that owns MLX: loads models, batches requests, decodes, detokenizes.

Commands (`commands.py`: Submit, Cancel, Load, Unload, Call, Stop) arrive on a thread-safe queue
and are handled with a `match` on their type. Prompts arrive tokenized: tokenizing a long prompt
is not MLX work, and here it would hold every other request's decoding (see `Engine.generate`).
Each loaded model has one mlx-lm `BatchGenerator`, so every request on a model is prefilled and
decoded in the same batch; one loop turn drains the commands and advances every busy generator by
one step. A cancel is therefore applied before the next decode step. What the thread produces
(token text, finishes, errors, progress) goes back to the asyncio loop with
`loop.call_soon_threadsafe`, batched once per step; exceptions travel as values (Error chunks,
failed futures), never across threads.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, assert_never

import mlx.core as mx
from mlx_lm.generate import BatchGenerator

from salut_tui.config import Settings
from salut_tui.engine import errors
from salut_tui.engine.commands import Call, Cancel, Command, Load, Sink, Stop, Submit, Unload
from salut_tui.engine.loader import LoadedModel, LoadedModelInfo, Progress, load_with_progress
from salut_tui.engine.output import OutputStream, request_output
from salut_tui.engine.prefix_cache import PrefixCache
from salut_tui.engine.sampling import ForcedTokens, build_logits_processors, build_sampler
from salut_tui.engine.text_stream import TextStream, continuation_detokenizer
from salut_tui.engine.types import Error, Finish, GenerationRequest

log = logging.getLogger(__name__)


class Started:
    """Sent to a sink when its prompt is processed and decoding begins (queued -> in flight)."""


STARTED = Started()


@dataclass
class _Active:
    key: int
    request: GenerationRequest
    sink: Sink
    uid: int
    output: OutputStream
    started: bool = False


@dataclass
class _Model:
    loaded: LoadedModel
    generator: BatchGenerator
    by_uid: dict[int, _Active] = field(default_factory=dict)
    prefixes: PrefixCache = field(init=False)

    def __post_init__(self) -> None:
        self.prefixes = PrefixCache(self.loaded.info.model_id)


class Worker:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self._loop = loop
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._models: dict[str, _Model] = {}
        self._by_key: dict[int, _Active] = {}
        # Scripted answers (Engine.script_next): token ids the next request on a model must
        # produce. Only this thread touches it.
        self.scripts: dict[str, deque[tuple[int, ...]]] = {}
        self._outbox: list[tuple[Sink, Any]] = []
        self._thread = threading.Thread(target=self._run, name="salut-mlx", daemon=True)
        self._running = True
        # Read from the loop thread: an int (atomic under the GIL) and a deque behind a lock.
        self.tokens_decoded = 0
        self.cached_prompt_tokens = 0  # prompt tokens served from the prefix cache
        self.steps: deque[tuple[float, float, int]] = deque(maxlen=4096)  # (end, duration, tokens)
        self.steps_lock = threading.Lock()

    # ---- called from the loop thread ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def submit(
        self,
        key: int,
        request: GenerationRequest,
        prompt: list[int],
        sink: Sink,
        processors: tuple[Any, ...] = (),
    ) -> None:
        self._commands.put(Submit(key, request, prompt, sink, processors))

    def cancel(self, key: int) -> None:
        self._commands.put(Cancel(key))

    def load(self, model_id: str, path: Path, progress: Progress) -> Future[LoadedModelInfo]:
        done: Future[LoadedModelInfo] = Future()
        self._commands.put(Load(model_id, path, progress, done))
        return done

    def unload(self, model_id: str) -> Future[None]:
        done: Future[None] = Future()
        self._commands.put(Unload(model_id, done))
        return done

    def stop(self, final: Error) -> None:
        """End the thread; requests still running end with `final`."""
        self._commands.put(Stop(final))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the MLX thread between decode steps: MLX work that is not a generation
        (converting a GGUF file) must not run on another thread beside the decoding."""
        done: Future[Any] = Future()
        self._commands.put(Call(fn, done))
        return done

    def tokenizer(self, model_id: str) -> Any:
        model = self._models.get(model_id)
        return model.loaded.tokenizer if model else None

    # ---- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        final = errors.shutting_down()
        while self._running:
            block = not self._by_key
            try:
                while self._running:
                    command = self._commands.get(block=block)
                    if isinstance(command, Stop):
                        final = command.final
                    self._handle(command)
                    block = False
            except queue.Empty:
                pass
            self._step_all()
            self._flush()
        self._refuse_leftovers(final)
        self._flush()
        # Drop the models and this thread's MLX streams now: MLX no longer cleans up streams at
        # interpreter exit, and doing it that late aborts the process ("terminate called...").
        self._models.clear()
        gc.collect()
        mx.clear_streams()

    def _handle(self, command: Command) -> None:
        try:
            match command:
                case Submit():
                    self._submit(command)
                case Cancel(key):
                    self._cancel(key)
                case Load():
                    self._load(command)
                case Unload(model_id, done):
                    self._unload(model_id, done)
                case Call(fn, done):
                    self._call(fn, done)
                case Stop(final):
                    self._stop(final)
                case _:  # mypy checks that every command type has its case
                    assert_never(command)
        except Exception as exc:  # a bug must not kill the thread that every request needs
            log.exception("engine command %s failed", type(command).__name__)
            match command:
                case Submit(sink=sink):
                    self._emit(sink, Error(f"internal error: {exc}", code="internal_error"))
                case Load(done=done) | Unload(done=done) | Call(done=done) if not done.done():
                    done.set_exception(exc)

    def _refuse_leftovers(self, final: Error) -> None:
        """Commands that arrived after stop: nothing may wait forever on them."""
        stopped = errors.engine_stopped()
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            match command:
                case Submit(sink=sink):
                    self._emit(sink, final)
                case Load(done=done) | Unload(done=done) | Call(done=done):
                    done.set_exception(stopped)

    def _step_all(self) -> None:
        # A method of its own so that no frame of the long-lived loop keeps a model referenced
        # (an unloaded model must be freed as soon as it is dropped).
        for model_id, model in list(self._models.items()):
            if model.by_uid:
                self._step(model_id, model)

    def _emit(self, sink: Sink, item: Any) -> None:
        self._outbox.append((sink, item))

    def _flush(self) -> None:
        if self._outbox:
            batch, self._outbox = self._outbox, []
            self._loop.call_soon_threadsafe(_deliver, batch)

    def _finish(self, active: _Active, final: Finish | Error) -> None:
        self._by_key.pop(active.key, None)
        model = self._models.get(active.request.model)
        if model is not None:
            model.by_uid.pop(active.uid, None)
        self._emit(active.sink, final)

    def _submit(self, command: Submit) -> None:
        key, request, prompt, sink = command.key, command.request, command.prompt, command.sink
        model = self._models.get(request.model)
        if model is None:  # unloaded while the prompt was being tokenized
            self._emit(sink, errors.model_not_loaded(request.model))
            return
        info = model.loaded.info
        wanted = request.sampling.max_tokens or self.settings.default_max_tokens
        max_tokens = max(1, min(wanted, info.context_length - len(prompt)))
        cache, rest = model.prefixes.fetch(prompt)
        (uid,) = model.generator.insert(
            [rest],
            max_tokens=[max_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[prompt[: len(prompt) - len(rest)]] if cache is not None else None,
            # None selects the generator's shared greedy sampler (one batched argmax).
            samplers=[build_sampler(request.sampling)],  # type: ignore[list-item]
            # Sampling's processors, then the response_format mask: last, so that nothing
            # after it can lift a forbidden token's -inf (a scripted answer replaces them all).
            logits_processors=[self._logits_processors(model, request, command.processors)],
        )
        self.cached_prompt_tokens += len(prompt) - len(rest)
        tokenizer = model.loaded.tokenizer
        # A text completion continues its prompt (its first space is text); a chat answer starts
        # a message. Either way a fresh detokenizer per request.
        if request.prompt is not None:
            detokenizer = continuation_detokenizer(tokenizer)
        else:
            detokenizer = tokenizer.detokenizer
        text = TextStream(detokenizer, request.sampling.stop, len(prompt))
        active = _Active(
            key, request, sink, uid, request_output(model.loaded.tokenizer, request, text)
        )
        model.by_uid[uid] = active
        self._by_key[key] = active

    def _cancel(self, key: int) -> None:
        active = self._by_key.get(key)
        if active is None:
            return  # already finished
        model = self._models.get(active.request.model)
        if model is not None:
            model.generator.remove([active.uid])
        self._finish(active, Finish("cancelled", active.output.usage))

    def _step(self, model_id: str, model: _Model) -> None:
        try:
            self._advance(model)
        except Exception as exc:  # an MLX failure ends this model's requests, not the thread
            log.exception("generation failed on %s", model_id)
            self._reset_generator(
                model, Error(f"generation failed: {exc}", code="generation_failed")
            )

    def _advance(self, model: _Model) -> None:
        began = time.perf_counter()
        prompt_responses, generation_responses = model.generator.next()
        for response in prompt_responses:
            active = model.by_uid.get(response.uid)
            if active is not None and response.end_of_prompt and not active.started:
                active.started = True
                self._emit(active.sink, STARTED)
        produced = 0
        for response in generation_responses:
            active = model.by_uid.get(response.uid)
            if active is None:
                continue
            produced += 1
            if not active.started:
                active.started = True
                self._emit(active.sink, STARTED)
            self._on_token(model, active, response.token, response.logprobs, response.finish_reason)
            if response.finish_reason is not None:
                model.prefixes.remember(response.all_tokens, response.prompt_cache)
        if produced:
            self.tokens_decoded += produced
            now = time.perf_counter()
            with self.steps_lock:
                self.steps.append((now, now - began, produced))

    def _on_token(
        self, model: _Model, active: _Active, token: int, logprobs: Any, reason: str | None
    ) -> None:
        chunks, ended = active.output.step(token, logprobs, reason)
        for chunk in chunks:
            self._emit(active.sink, chunk)
        if ended is None:
            return
        if reason is None:  # a stop string (or a single tool call) ended it before mlx-lm did
            kept = model.generator.remove([active.uid], return_prompt_caches=True)
            cache, tokens = kept.get(active.uid, (None, None))
            model.prefixes.remember(tokens, cache)
        self._finish(active, Finish(ended, active.output.usage))

    def _logits_processors(
        self, model: _Model, request: GenerationRequest, constraint: Sequence[Any]
    ) -> list:
        processors = [*build_logits_processors(request.sampling), *constraint]
        scripts = self.scripts.get(request.model)
        if scripts:
            eos = min(model.loaded.tokenizer.eos_token_ids)
            processors = [ForcedTokens((*scripts.popleft(), eos))]
        return processors

    def _reset_generator(self, model: _Model, final: Error) -> None:
        for active in list(model.by_uid.values()):
            self._finish(active, final)
        model.generator.close()
        model.generator = self._new_generator(model.loaded)

    def _new_generator(self, loaded: LoadedModel) -> BatchGenerator:
        batch = self.settings.max_batch_size
        return BatchGenerator(
            loaded.model,
            stop_tokens=[[t] for t in loaded.tokenizer.eos_token_ids],
            completion_batch_size=batch,
            prefill_batch_size=min(8, batch),
        )

    def _load(self, command: Load) -> None:
        model_id, done = command.model_id, command.done
        if model_id in self._models:
            done.set_result(self._models[model_id].loaded.info)
            return
        try:
            loaded = load_with_progress(model_id, command.path, command.progress)
            self._models[model_id] = _Model(loaded, self._new_generator(loaded))
        except Exception as exc:  # handed to the awaiting coroutine, never raised in the thread
            gc.collect()
            mx.clear_cache()
            done.set_exception(exc)
            return
        done.set_result(loaded.info)

    def _unload(self, model_id: str, done: Future) -> None:
        model = self._models.pop(model_id, None)
        if model is not None:
            gone = Error(f"the model '{model_id}' was unloaded", code="model_unloaded", status=503)
            for active in list(model.by_uid.values()):
                self._finish(active, gone)
            model.generator.close()
            del model
            gc.collect()
            mx.clear_cache()
        done.set_result(None)

    def _call(self, fn: Callable[[], Any], done: Future) -> None:
        try:
            done.set_result(fn())
        except Exception as exc:  # travels to the caller as a value, the thread goes on
            done.set_exception(exc)

    def _stop(self, final: Error) -> None:
        for active in list(self._by_key.values()):
            self._finish(active, final)
        for model in self._models.values():
            model.generator.close()
        self._models.clear()
        gc.collect()
        mx.clear_cache()
        self._running = False


def _deliver(batch: list[tuple[Sink, Any]]) -> None:
    for sink, item in batch:
        sink(item)
