"""One request's generated text: token ids in, text chunks out, with stop strings applied.

Pure bookkeeping around mlx-lm's streaming detokenizer (one per request) and the StopMatcher:
the MLX thread hands it each sampled token with mlx-lm's finish reason, and it says what text to
send and whether the request is over. Every generated token yields one Token chunk (its text may be
empty while a possible stop string is held back), so chunk counts match the usage.

mlx-lm's streaming detokenizers drop the leading space of the first text they produce: right for a
chat answer, which starts a message, wrong for a text completion, which continues its prompt
("The sky is" + " a canvas" must not read "The sky isa canvas"). `continuation_detokenizer` gives
one that keeps it.
"""

from __future__ import annotations

from typing import Any

from salut_tui.engine.stops import StopMatcher, normalize_stops
from salut_tui.engine.types import FinishReason, Token, Usage

# Text fed to a continuation detokenizer before the first generated token and thrown away: the
# detokenizers only trim while their text is empty. Plain ASCII, so nothing is held back.
_PRIMER = "a"


def continuation_detokenizer(tokenizer: Any) -> Any:
    """A fresh streaming detokenizer whose output continues existing text, spaces included."""
    detokenizer = tokenizer.detokenizer  # a fresh copy per call
    for token in tokenizer.encode(_PRIMER, add_special_tokens=False):
        detokenizer.add_token(token)
    _ = detokenizer.last_segment  # the primer's text, read and dropped
    return detokenizer


class TextStream:
    def __init__(self, detokenizer: Any, stop: tuple[str, ...] | str, prompt_tokens: int) -> None:
        self._detokenizer = detokenizer
        self._stops = StopMatcher(normalize_stops(stop))
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    def step(self, token: int, reason: str | None) -> tuple[Token | None, FinishReason | None]:
        """Take one sampled token; `reason` is mlx-lm's ("stop": an end-of-sequence token,
        "length": the last allowed token, None: more to come). Returns the chunk to send (if any)
        and the finish reason when the request ends here."""
        detok = self._detokenizer
        if reason == "stop":  # end of sequence: the token itself is not text
            detok.finalize()
            text = self._stops.feed(detok.last_segment).text + self._stops.flush()
            return (Token(text) if text else None), "stop"
        self.completion_tokens += 1
        detok.add_token(token)
        if reason == "length":
            detok.finalize()
        step = self._stops.feed(detok.last_segment)
        if step.stopped:
            return Token(step.text, token), "stop"
        if reason == "length":
            return Token(step.text + self._stops.flush(), token), "length"
        return Token(step.text, token), None
