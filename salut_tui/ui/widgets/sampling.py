"""The playground's sampling fields, read into the same `SamplingParams` the API builds.

Labels, defaults, bounds and error messages all come from the sampling contract
(`salut_tui/engine/sampling_contract.py`), the one the API schema and the peer wire use.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from salut_tui.engine.sampling_contract import (
    MAX_TOKENS,
    NUMBER_FIELDS,
    REPETITION_PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
)
from salut_tui.engine.types import SamplingParams

# Input widths in cells; the rest of each field's look comes from the contract.
WIDTHS = {"max_tokens": 7, "seed": 7}
DEFAULT_WIDTH = 6


class SamplingBar(Horizontal):
    """One line of small inputs: temperature, top_p, repetition penalty, max tokens, seed."""

    def compose(self) -> ComposeResult:
        for spec in NUMBER_FIELDS:
            yield Label(f"{spec.label} ", classes="sampling-label")
            field = Input(
                spec.default_text(),
                placeholder=spec.unset,
                id=f"sampling-{spec.name}",
                compact=True,
                classes="sampling-input",
            )
            field.styles.width = WIDTHS.get(spec.name, DEFAULT_WIDTH)
            yield field

    def value(self, field_id: str) -> str:
        return self.query_one(f"#sampling-{field_id}", Input).value.strip()

    def set_value(self, field_id: str, text: str) -> None:
        self.query_one(f"#sampling-{field_id}", Input).value = text

    def params(self) -> SamplingParams:
        """The fields as SamplingParams; ValueError (SamplingInvalid) names the wrong field."""
        return sampling_from_text({spec.name: self.value(spec.name) for spec in NUMBER_FIELDS})


def sampling_from_text(texts: dict[str, str]) -> SamplingParams:
    """Typed-in texts (field name -> text; empty or missing means the default) as
    SamplingParams, checked against the contract. Pure, so tests compare it with the API."""

    def text(name: str) -> str:
        return texts.get(name, "")

    return SamplingParams(
        temperature=TEMPERATURE.parse_text(text(TEMPERATURE.name)),
        top_p=TOP_P.parse_text(text(TOP_P.name)),
        repetition_penalty=REPETITION_PENALTY.parse_text(text(REPETITION_PENALTY.name)),
        max_tokens=MAX_TOKENS.parse_text(text(MAX_TOKENS.name)),
        seed=SEED.parse_text(text(SEED.name)),
    )
