"""The sampling contract: each sampling field's type, bounds, default and meaning, written once.

Three places take sampling values from outside and must agree on what is valid: the API schema
(`salut_tui/api/schemas.py` builds its pydantic fields from the table), the chat screen's
sampling bar (`salut_tui/ui/widgets/sampling.py` parses its text fields with
`NumberField.parse_text`) and a peer decoding a forwarded request (`salut_tui/cluster/wire.py`
checks every value with `check_sampling`). `SamplingParams` takes its defaults from here too;
`tests/test_sampling_contract.py` walks this table and checks that the three agree.

Pure: no MLX, no pydantic, no Textual (the UI and the wire decoder import it cheaply).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypedDict, TypeVar, cast

MAX_STOP_SEQUENCES = 4

DefaultT = TypeVar("DefaultT", float, int | None)


class SamplingInvalid(ValueError):
    """A sampling value outside the contract; `field` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class NumberField(Generic[DefaultT]):
    """One numeric sampling field. `default` None means "unset": the engine decides."""

    name: str
    kind: Literal["float", "int"]
    default: DefaultT
    doc: str
    label: str  # the chat screen's short label
    unset: str = ""  # what an unset value means, in a word (the chat screen's placeholder)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @property
    def optional(self) -> bool:
        return self.default is None

    def rule(self) -> str:
        """The bounds in words, e.g. "must be between 0 and 2"."""
        if self.ge is not None and self.le is not None:
            return f"must be between {self.ge:g} and {self.le:g}"
        if self.gt is not None:
            return f"must be above {self.gt:g}"
        if self.ge is not None:
            return f"must be at least {self.ge:g}"
        if self.le is not None:
            return f"must be at most {self.le:g}"
        return ""

    def within(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
        )

    def check(self, value: object) -> DefaultT:
        """The value if it is valid for this field (ints widened to float for a float field),
        else SamplingInvalid. Booleans are not numbers here, whatever Python says."""
        if value is None:
            if self.optional:
                return cast(DefaultT, None)
            raise SamplingInvalid(self.name, f"{self.name} must be set")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SamplingInvalid(self.name, f"{self.name} must be {self._a_kind()}")
        if self.kind == "int" and not isinstance(value, int):
            raise SamplingInvalid(self.name, f"{self.name} must be {self._a_kind()}")
        if not self.within(value):
            raise SamplingInvalid(self.name, f"{self.name} {self.rule()}")
        return cast(DefaultT, float(value) if self.kind == "float" else value)

    def parse_text(self, text: str) -> DefaultT:
        """A typed-in value (the chat screen): empty means the default."""
        text = text.strip()
        if not text:
            return self.default
        try:
            value = float(text) if self.kind == "float" else int(text)
        except ValueError:
            raise SamplingInvalid(self.name, f"{self.name} must be {self._a_kind()}") from None
        return self.check(value)

    def default_text(self) -> str:
        return "" if self.default is None else repr(self.default)

    def _a_kind(self) -> str:
        return "a number" if self.kind == "float" else "a whole number"


TEMPERATURE: NumberField[float] = NumberField(
    "temperature", "float", 1.0, "Sampling temperature; 0 means greedy.", "temp", ge=0.0, le=2.0
)
TOP_P: NumberField[float] = NumberField(
    "top_p",
    "float",
    1.0,
    "Nucleus sampling threshold; 0 keeps only the most likely token (greedy), as OpenAI's does.",
    "top_p",
    ge=0.0,
    le=1.0,
)
REPETITION_PENALTY: NumberField[float] = NumberField(
    "repetition_penalty", "float", 1.0, "Repetition penalty; 1 is neutral.", "rep", gt=0.0
)
MAX_TOKENS: NumberField[int | None] = NumberField(
    "max_tokens",
    "int",
    None,
    "Most tokens to generate; unset: the node's default_max_tokens, capped by the context.",
    "max",
    unset="auto",
    ge=1,
)
SEED: NumberField[int | None] = NumberField(
    "seed", "int", None, "Seed for reproducible sampling; unset: random.", "seed", unset="random"
)

NUMBER_FIELDS: tuple[NumberField[float] | NumberField[int | None], ...] = (
    TEMPERATURE,
    TOP_P,
    REPETITION_PENALTY,
    MAX_TOKENS,
    SEED,
)
FIELDS_BY_NAME: Mapping[str, NumberField[float] | NumberField[int | None]] = {
    f.name: f for f in NUMBER_FIELDS
}
STOP_FIELD = "stop"


def check_stops(value: object) -> tuple[str, ...]:
    """Stop sequences as decoded from JSON: a list (or tuple) of at most four strings."""
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
        raise SamplingInvalid(STOP_FIELD, "stop must be a list of strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise SamplingInvalid(
            STOP_FIELD, f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed"
        )
    return tuple(value)


class SamplingValues(TypedDict):
    """Checked keyword arguments for `SamplingParams` (which this module cannot import)."""

    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int | None
    seed: int | None
    stop: tuple[str, ...]


def check_sampling(values: Mapping[str, object]) -> SamplingValues:
    """Every field of a decoded sampling object checked against the contract; missing fields
    take their defaults, unknown fields are refused (a newer peer's field must not be dropped
    silently: the request would be served with other sampling than asked)."""
    unknown = sorted(set(values) - set(FIELDS_BY_NAME) - {STOP_FIELD})
    if unknown:
        raise SamplingInvalid(unknown[0], f"unknown sampling field '{unknown[0]}'")

    def given(field: NumberField) -> object:
        return values.get(field.name, field.default)

    return SamplingValues(
        temperature=TEMPERATURE.check(given(TEMPERATURE)),
        top_p=TOP_P.check(given(TOP_P)),
        repetition_penalty=REPETITION_PENALTY.check(given(REPETITION_PENALTY)),
        max_tokens=MAX_TOKENS.check(given(MAX_TOKENS)),
        seed=SEED.check(given(SEED)),
        stop=check_stops(values.get(STOP_FIELD, [])),
    )
