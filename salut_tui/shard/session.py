"""The generation loop one rank runs for a sharded instance (SPMD, as mlx-lm's server does).

Every rank holds a BatchGenerator over its own part of the model and, step after step, applies
the orders rank 0 broadcast (`orders`) and advances its generator once; the sampled token is
the same on every rank (`pipeline.TokenBroadcast`), so the generators stay identical: the same
sequences in the same rows, finishing at the same step. Concurrent requests batch as on one
node. Only rank 0 turns tokens into text (the engine's TextStream: detokenizer, stop strings)
and emits chunks; a request its stop strings end is removed on every rank by the next orders.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlx_lm.generate import BatchGenerator
from mlx_lm.sample_utils import greedy_sampler

from salut_tui.engine import errors
from salut_tui.engine.loader import context_length
from salut_tui.engine.output import OutputStream, request_output
from salut_tui.engine.sampling import build_logits_processors, build_sampler
from salut_tui.engine.text_stream import TextStream, continuation_detokenizer
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest
from salut_tui.shard.orders import (
    Insert,
    Order,
    OrderBroadcast,
    Remove,
    ShareSchedule,
    Stop,
    every_for,
)
from salut_tui.shard.pipeline import LoadedShard

RATE_WINDOW_S = 3.0
COMPLETION_BATCH = 32
PREFILL_BATCH = 8

Emit = Callable[[str, Chunk], None]  # (request_id, chunk), rank 0 only


@dataclass
class _Text:
    """Rank 0's view of one request: its output so far (text, and tool calls when it offers
    tools: the engine's OutputStream)."""

    request: GenerationRequest
    text: OutputStream


class ShardSession:
    def __init__(
        self, shard: LoadedShard, group: Any, model_id: str, max_tokens_default: int, emit: Emit
    ) -> None:
        self.shard = shard
        self.model_id = model_id
        self.max_tokens_default = max_tokens_default
        self.emit = emit
        self.is_root = group is None or group.rank() == 0
        tokenizer = shard.tokenizer
        self.generator = BatchGenerator(
            shard.model,
            stop_tokens=[[t] for t in tokenizer.eos_token_ids],
            sampler=shard.broadcast.wrap(greedy_sampler),
            completion_batch_size=COMPLETION_BATCH,
            prefill_batch_size=PREFILL_BATCH,
        )
        self.orders = OrderBroadcast(group, self.generator.stream)
        self.schedule = ShareSchedule()
        self._step_s = 0.0
        self.context_length = context_length(shard.config)
        self.uids: dict[str, int] = {}  # request id -> generator uid, the same on every rank
        self.request_ids: dict[int, str] = {}
        self.texts: dict[str, _Text] = {}  # rank 0 only
        self.pending: list[Order] = []  # rank 0 only: the next step's orders
        self.tokens_decoded = 0
        self.steps: deque[tuple[float, int]] = deque(maxlen=4096)

    # ---- rank 0: the node's messages become orders ---------------------------------------
    @property
    def idle(self) -> bool:
        """Nothing to do before the next exchange of orders (rank 0: nothing to say either)."""
        return not self.uids and not self.pending

    def idle_period(self) -> float:
        return self.schedule.idle_period()

    def submit(self, request: GenerationRequest, prompt: list[int] | Error) -> None:
        """Queue a request (tokenized by `admission`, or refused there) for the next orders."""
        rid = request.request_id
        if isinstance(prompt, Error):
            self.emit(rid, prompt)
            return
        if rid in self.texts:
            self.emit(rid, Error(f"request id {rid} is already in flight", code="duplicate_id"))
            return
        if request.constraint is not None:  # no grammar mask on the ranks yet: never ignore it
            self.emit(rid, errors.response_format_sharded(request.model))
            return
        if request.logprobs is not None:  # rank 0 need not hold the last layers' logits
            self.emit(
                rid,
                Error.of(
                    400,
                    f"log-probabilities are not supported on the sharded model '{self.model_id}'",
                    code="logprobs_not_supported",
                    param="logprobs",
                ),
            )
            return
        sampling = request.sampling
        wanted = sampling.max_tokens or self.max_tokens_default
        seed = sampling.seed
        if seed is None and sampling.temperature > 0:
            seed = secrets.randbits(63)  # one seed for all ranks (only the last one's counts)
        self.pending.append(
            Insert(
                rid,
                tuple(prompt),
                max(1, min(wanted, self.context_length - len(prompt))),
                sampling.temperature,
                sampling.top_p,
                sampling.repetition_penalty,
                seed,
            )
        )
        # As the engine does: a text completion continues its prompt (its first space is text),
        # a chat answer starts a message; a fresh detokenizer per request either way.
        tokenizer = self.shard.tokenizer
        if request.prompt is not None:
            detokenizer = continuation_detokenizer(tokenizer)
        else:
            detokenizer = tokenizer.detokenizer
        text = TextStream(detokenizer, sampling.stop, len(prompt))
        self.texts[rid] = _Text(request, request_output(tokenizer, request, text))

    def cancel(self, request_id: str) -> None:
        entry = self.texts.pop(request_id, None)
        if entry is None:
            return  # finished already, or never known
        self.pending.append(Remove(request_id))
        self.emit(request_id, Finish("cancelled", entry.text.usage))

    def shutdown(self) -> None:
        self.pending.append(Stop())

    # ---- every rank ----------------------------------------------------------------------
    def step(self) -> bool:
        """Share and apply this step's orders, then advance the generator once (when it has
        work). False once the instance is told to stop."""
        busy = bool(self.uids)
        if not self.schedule.due(busy):
            self._advance()
            return True
        every = every_for(self._step_s) if self.is_root else 0
        orders, every = self.orders.share(self.pending, every)
        self.pending = []
        self.schedule.shared(every, idle=not busy and not orders)
        for order in orders:
            if isinstance(order, Stop):
                self._end_all()
                return False
            if isinstance(order, Insert):
                self._insert(order)
            else:
                self._remove(order.request_id)
        if self.uids:
            self._advance()
        return True

    def _insert(self, order: Insert) -> None:
        params = order.sampling()
        sampler = build_sampler(params)
        (uid,) = self.generator.insert(
            [list(order.prompt)],
            max_tokens=[order.max_tokens],
            # None selects the generator's shared (broadcast) greedy sampler.
            samplers=[self.shard.broadcast.wrap(sampler) if sampler else None],  # type: ignore[list-item]
            logits_processors=[build_logits_processors(params)],
        )
        self.uids[order.request_id] = uid
        self.request_ids[uid] = order.request_id

    def _remove(self, request_id: str) -> None:
        uid = self.uids.pop(request_id, None)
        if uid is not None:
            self.request_ids.pop(uid, None)
            self.generator.remove([uid])

    def _advance(self) -> None:
        began = time.perf_counter()
        _, responses = self.generator.next()
        self.schedule.stepped()
        # Rank 0 times its steps to choose how often to share orders (a moving average).
        self._step_s += 0.1 * (time.perf_counter() - began - self._step_s)
        for response in responses:
            rid = self.request_ids.get(response.uid)
            if rid is None:
                continue
            if response.finish_reason is not None:
                self.uids.pop(rid, None)
                self.request_ids.pop(response.uid, None)
            if self.is_root:
                self._on_token(rid, response.token, response.finish_reason)
        if responses:
            self.tokens_decoded += len(responses)
            self.steps.append((time.perf_counter(), len(responses)))

    def _on_token(self, rid: str, token: int, reason: str | None) -> None:
        entry = self.texts.get(rid)
        if entry is None:
            return
        chunks, ended = entry.text.step(token, None, reason)
        for chunk in chunks:
            self.emit(rid, chunk)
        if ended is None:
            return
        del self.texts[rid]
        if reason is None:  # a stop string (or one tool call) ended it: every rank drops it
            self.pending.append(Remove(rid))
        self.emit(rid, Finish(ended, entry.text.usage))

    def _end_all(self) -> None:
        gone = Error(
            f"the sharded model '{self.model_id}' was unloaded", code="model_unloaded", status=503
        )
        for rid in list(self.texts):
            self.emit(rid, gone)
        self.texts.clear()
        self.generator.close()

    # ---- figures -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self.uids)

    def tokens_per_second(self) -> float:
        now = time.perf_counter()
        recent = [s for s in self.steps if s[0] >= now - RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1][0] - recent[0][0], 1e-3)
        return sum(n for _, n in recent[1:]) / span
