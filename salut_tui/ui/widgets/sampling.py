"""The playground's sampling fields, read into the same `SamplingParams` the API builds."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from salut_tui.engine.types import SamplingParams

# (field id, label, default text, width): the API's fields with the API's defaults.
FIELDS = (
    ("temperature", "temp", "1.0", 6),
    ("top_p", "top_p", "1.0", 6),
    ("repetition_penalty", "rep", "1.0", 6),
    ("max_tokens", "max", "256", 7),
    ("seed", "seed", "", 7),
)


class SamplingBar(Horizontal):
    """One line of small inputs: temperature, top_p, repetition penalty, max tokens, seed."""

    def compose(self) -> ComposeResult:
        for field_id, label, default, width in FIELDS:
            yield Label(f"{label} ", classes="sampling-label")
            field = Input(
                default, id=f"sampling-{field_id}", compact=True, classes="sampling-input"
            )
            field.styles.width = width
            yield field

    def value(self, field_id: str) -> str:
        return self.query_one(f"#sampling-{field_id}", Input).value.strip()

    def set_value(self, field_id: str, text: str) -> None:
        self.query_one(f"#sampling-{field_id}", Input).value = text

    def params(self) -> SamplingParams:
        """The fields as SamplingParams; ValueError names the field that is wrong."""
        temperature = _number(self.value("temperature"), "temperature", 0.0, 2.0)
        top_p = _number(self.value("top_p"), "top_p", 0.0, 1.0)
        if top_p == 0.0:
            raise ValueError("top_p must be above 0")
        penalty = _number(self.value("repetition_penalty"), "repetition penalty", 0.0, 10.0)
        max_tokens = _whole(self.value("max_tokens"), "max tokens", minimum=1)
        seed = _whole(self.value("seed"), "seed", minimum=0)
        return SamplingParams(
            temperature=temperature,
            top_p=top_p,
            repetition_penalty=penalty,
            max_tokens=max_tokens,
            seed=seed,
        )


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def _whole(text: str, name: str, *, minimum: int) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value
