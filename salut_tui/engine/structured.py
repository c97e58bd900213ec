"""Structured output: a JSON Schema compiled by llguidance into an mlx-lm logits processor.

Why llguidance (figures in bench/README.md, `bench/bench_structured.py`): on SmolLM2's 49k-token
vocabulary it compiles a schema in ~3 ms where outlines-core builds its automaton over the whole
vocabulary in ~6 s (per schema: agents send a new one with every request), and its mask costs
~30 us per token, nothing beside a decode step (>= 2.7 ms even on the tiny test model). It
supports the JSON Schema that clients send (refs, anyOf, enums, lengths, additionalProperties)
and installs without torch; xgrammar imports torch, transformers and triton, so it was out.

mlx-lm's BatchGenerator calls each row's processors once per decode step with the row's whole
token context (prompt, then every generated token) and that row's logits. The processor feeds the
tokens it has not seen to its matcher, asks for the mask of allowed next tokens, and sets every
other logit to -inf; when the object is complete the only allowed token is end-of-sequence, so
the generation stops by itself with finish_reason "stop".
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.hf
import mlx.core as mx
import numpy as np

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

from salut_tui.engine import errors
from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.types import Error

# Unsupported keywords are refused (lenient off): a 400 beats an answer that ignores the schema.
# Compact JSON with a space after separators; no free whitespace: a weak model would otherwise
# fill its token budget with newlines inside an object that never closes.
JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


class SchemaInvalid(ValueError):
    """A schema llguidance cannot compile (the API answers 400 naming response_format)."""


class TokenizerUnsupported(ValueError):
    """A model whose tokenizer llguidance cannot read (only fast Hugging Face tokenizers)."""


def grammar_for(constraint: JsonConstraint) -> str:
    """llguidance's grammar for the constraint; SchemaInvalid when it does not compile.
    Pure (no tokenizer): the API checks a schema with it before anything is queued."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            constraint.schema, defaults=JSON_OPTIONS
        )
    except ValueError as exc:
        raise SchemaInvalid(str(exc)) from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise SchemaInvalid(messages[0] if messages else "the schema does not compile")
    return grammar


def check_schema(schema: dict[str, Any]) -> None:
    grammar_for(JsonConstraint.for_schema(schema))


class GrammarTokenizer:
    """llguidance's view of one model's tokenizer (building it takes ~0.1-1 s: one per model)."""

    def __init__(self, tokenizer: Any) -> None:
        hf = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx-lm's TokenizerWrapper wraps it
        self.eos = sorted(getattr(tokenizer, "eos_token_ids", None) or [hf.eos_token_id])
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(hf, eos_token=self.eos)
        except Exception as exc:  # a slow tokenizer, or one llguidance cannot parse
            raise TokenizerUnsupported(f"{type(exc).__name__}: {exc}") from exc
        self.vocab_size = self.tokenizer.vocab_size

    def processor(self, constraint: JsonConstraint) -> JsonLogitsProcessor:
        return JsonLogitsProcessor(
            llguidance.LLMatcher(self.tokenizer, grammar_for(constraint), log_level=0),
            self.vocab_size,
            self.eos,
        )


class JsonLogitsProcessor:
    """One request's constraint: `(tokens, logits) -> logits` as mlx-lm calls processors."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, eos: list[int]) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._eos = eos
        self._seen: int | None = None  # context length at the previous call

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        # Start this step's forward pass now: it runs while the host reads the last token and
        # computes the mask below (otherwise the mask would wait for nothing and then the
        # forward pass for the mask, one after the other).
        mx.async_eval(logits)
        total = tokens.size
        if self._seen is not None and total > self._seen:
            # The tokens sampled since the last call (one per step). A token the grammar did
            # not allow can only come from outside the mask (none does); the matcher then
            # enters an error state and the mask below lets only end-of-sequence through.
            new: list[int] = tokens[self._seen :].tolist()  # type: ignore[assignment]
            self._matcher.consume_tokens(new)
        self._seen = total
        allowed = self._allowed(logits.shape[-1])
        return mx.where(allowed, logits, mx.array(-mx.inf, dtype=logits.dtype))

    def _allowed(self, width: int) -> mx.array:
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(words, bitorder="little")[: self._vocab_size].astype(bool)
        if not bits.any():
            # A matcher in an error state allows nothing; ending the answer beats sampling
            # from all -inf (which picks an arbitrary token). Never seen with masked sampling.
            bits[self._eos] = True
        if bits.size < width:  # the model's output layer is padded past the tokenizer's vocab
            bits = np.concatenate([bits, np.zeros(width - bits.size, dtype=bool)])
        return mx.array(bits[:width])

    @property
    def error(self) -> str:
        return self._matcher.get_error() if self._matcher.is_error() else ""


class Constraints:
    """Builds requests' processors off the MLX thread (llguidance's view of a 49k-token
    tokenizer takes ~1.5 s, a schema a few ms: neither may stall every other decode). One
    GrammarTokenizer per model id and tokenizer object, so a reloaded model gets a fresh one."""

    def __init__(self) -> None:
        self._grammars: dict[str, tuple[Any, GrammarTokenizer]] = {}

    async def processor(
        self, model_id: str, tokenizer: Any, constraint: JsonConstraint
    ) -> JsonLogitsProcessor | Error:
        try:
            return await asyncio.to_thread(self._build, model_id, tokenizer, constraint)
        except SchemaInvalid as exc:  # a peer's request: the API checked schemas sent to it
            return errors.schema_invalid(str(exc))
        except TokenizerUnsupported as exc:
            return errors.response_format_unsupported(model_id, str(exc))

    def _build(
        self, model_id: str, tokenizer: Any, constraint: JsonConstraint
    ) -> JsonLogitsProcessor:
        known = self._grammars.get(model_id)
        if known is None or known[0] is not tokenizer:
            known = (tokenizer, GrammarTokenizer(tokenizer))
            self._grammars[model_id] = known
        return known[1].processor(constraint)
