"""Rank 0's commands from the node, with each request's prompt tokenized off the SPMD loop.

Every rank waits on rank 0 at each step, so rank 0's loop must never stop to tokenize a long
prompt. A thread takes the node's messages in order, tokenizes each request exactly as the
single-node engine does (`engine.tokenize.tokenize_prompt`: refused on length first, then the
chat template), and hands the loop the message with its token ids or the error that refuses it.
Cancels and shutdowns pass through in order, so a cancel never overtakes its request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

from salut_tui.engine import errors
from salut_tui.engine.tokenize import tokenize_prompt
from salut_tui.engine.types import Error
from salut_tui.shard.protocol import Generate, NodeMessage


@dataclass(frozen=True, slots=True)
class Admitted:
    message: NodeMessage
    prompt: list[int] | Error | None = None  # for a Generate: its tokens, or why not


class Admission:
    def __init__(
        self, inbox: queue.SimpleQueue[NodeMessage], tokenizer: Any, context: int, model_id: str
    ) -> None:
        self.ready: queue.SimpleQueue[Admitted] = queue.SimpleQueue()
        self._inbox = inbox
        self._tokenizer = tokenizer
        self._context = context
        self._model_id = model_id
        self._thread = threading.Thread(target=self._run, name="runner-admission", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            message = self._inbox.get()
            if isinstance(message, Generate):
                self.ready.put(Admitted(message, self._tokenize(message)))
            else:
                self.ready.put(Admitted(message))

    def _tokenize(self, message: Generate) -> list[int] | Error:
        request = message.request
        if request.model != self._model_id:
            return errors.model_not_loaded(request.model)
        try:
            return asyncio.run(tokenize_prompt(self._tokenizer, request, self._context))
        except Exception as exc:  # a tokenizer bug refuses this request, not the instance
            return Error(f"could not tokenize the prompt: {exc}", code="internal_error")
