"""One sampling contract, three users: the API schema, the chat screen's sampling bar and the peer
wire decoder accept and refuse exactly the same values, walked field by field from the contract
itself (so a field added to the contract is checked everywhere without touching this file)."""

from __future__ import annotations

import json

import pytest
from textual.app import App, ComposeResult

from salut_tui.api.schemas import ChatCompletionBody, RequestInvalid, parse_body
from salut_tui.cluster.wire import request_from_json, request_to_json, sampling_from_json
from salut_tui.engine.sampling_contract import (
    MAX_STOP_SEQUENCES,
    NUMBER_FIELDS,
    NumberField,
    SamplingInvalid,
)
from salut_tui.engine.types import GenerationRequest, SamplingParams
from salut_tui.ui.widgets.sampling import SamplingBar, sampling_from_text

HELLO = [{"role": "user", "content": "Hello!"}]


def probes(field: NumberField) -> list[float | int]:
    """Values on, just inside and just outside each bound, plus ordinary and extreme ones."""
    values: set[float | int] = {0, 1, -1, 3, 10**6}
    step = 1 if field.kind == "int" else 0.01
    for bound in (field.ge, field.gt, field.le):
        if bound is not None:
            values |= {bound, bound - step, bound + step}
    if field.default is not None:
        values.add(field.default)
    cast = int if field.kind == "int" else float
    return sorted({cast(v) for v in values})


def api_accepts(name: str, value: object) -> bool:
    try:
        body = parse_body(
            ChatCompletionBody, json.dumps({"model": "m", "messages": HELLO, name: value}).encode()
        )
    except RequestInvalid as exc:
        assert exc.param == name  # the refusal names the field, as OpenAI's param
        return False
    assert getattr(body.sampling(), name) == value
    return True


def ui_accepts(name: str, text: str) -> bool:
    try:
        params = sampling_from_text({name: text})
    except SamplingInvalid as exc:
        assert exc.field == name and name in str(exc)
        return False
    assert getattr(params, name) == (float(text) if "." in text else int(text))
    return True


def wire_accepts(name: str, value: object) -> bool:
    try:
        params = sampling_from_json({name: value})
    except SamplingInvalid as exc:
        assert exc.field == name
        return False
    assert getattr(params, name) == value
    return True


CASES = [(f, v) for f in NUMBER_FIELDS for v in probes(f)]


@pytest.mark.parametrize("field,value", CASES, ids=[f"{f.name}={v}" for f, v in CASES])
def test_api_ui_and_wire_agree_on_every_value(field: NumberField, value: float | int) -> None:
    expected = field.within(value)
    assert api_accepts(field.name, value) is expected
    assert ui_accepts(field.name, repr(value)) is expected
    assert wire_accepts(field.name, value) is expected


@pytest.mark.parametrize("field", NUMBER_FIELDS, ids=lambda f: f.name)
def test_wrong_types_are_refused_by_all_three(field: NumberField) -> None:
    wrong: list[object] = ["1", True, [1]]
    if field.kind == "int":
        wrong.append(2.0)  # a float where a whole number belongs is not silently truncated
    for value in wrong:
        assert not api_accepts(field.name, value), value
        assert not wire_accepts(field.name, value), value
    assert not ui_accepts(field.name, "one")
    if field.kind == "int":
        assert not ui_accepts(field.name, "2.5")


def test_the_drift_cases_found_in_0_1() -> None:
    # top_p=0 (greedy, as OpenAI) was refused by the chat screen only.
    assert api_accepts("top_p", 0.0) and ui_accepts("top_p", "0") and wire_accepts("top_p", 0.0)
    # repetition_penalty=0 was accepted by the chat screen only.
    assert not api_accepts("repetition_penalty", 0.0)
    assert not ui_accepts("repetition_penalty", "0")
    assert not wire_accepts("repetition_penalty", 0.0)
    # A peer rebuilt SamplingParams(**dict) and took anything, e.g. a negative max_tokens.
    with pytest.raises(SamplingInvalid, match="max_tokens"):
        request_from_json(
            {"model": "m", "request_id": "r", "prompt": "x", "sampling": {"max_tokens": -5}}
        )


def test_defaults_are_the_same_everywhere() -> None:
    api = parse_body(
        ChatCompletionBody, json.dumps({"model": "m", "messages": HELLO}).encode()
    ).sampling()
    # The chat screen used to claim 256 was the API's max_tokens default; it is unset (the
    # node's default_max_tokens) in all three.
    assert api == sampling_from_text({}) == sampling_from_json({}) == SamplingParams()
    assert api.max_tokens is None
    for field in NUMBER_FIELDS:
        assert getattr(SamplingParams(), field.name) == field.default


async def test_the_sampling_bar_shows_the_contracts_defaults() -> None:
    class Bar(App):
        def compose(self) -> ComposeResult:
            yield SamplingBar()

    app = Bar()
    async with app.run_test() as pilot:
        await pilot.pause()
        bar = app.query_one(SamplingBar)
        assert bar.params() == SamplingParams()
        bar.set_value("top_p", "0")
        assert bar.params().top_p == 0.0
        bar.set_value("repetition_penalty", "0")
        with pytest.raises(ValueError, match="repetition_penalty must be above 0"):
            bar.params()


def test_wire_refuses_bad_stops_and_unknown_fields() -> None:
    assert sampling_from_json({"stop": ["a", "b"]}).stop == ("a", "b")
    assert not api_accepts("stop", ["a"] * (MAX_STOP_SEQUENCES + 1))  # the same limit
    with pytest.raises(SamplingInvalid, match=f"at most {MAX_STOP_SEQUENCES}"):
        sampling_from_json({"stop": ["a"] * (MAX_STOP_SEQUENCES + 1)})
    with pytest.raises(SamplingInvalid, match="list of strings"):
        sampling_from_json({"stop": [1]})
    with pytest.raises(SamplingInvalid, match="unknown sampling field 'min_p'"):
        sampling_from_json({"min_p": 0.1})
    with pytest.raises(SamplingInvalid):
        sampling_from_json([1, 2])


def test_every_valid_request_survives_the_wire() -> None:
    sampling = SamplingParams(
        temperature=0.0, top_p=0.0, repetition_penalty=0.5, max_tokens=1, stop=("\n",), seed=-3
    )
    request = GenerationRequest(model="m", prompt="p", sampling=sampling)
    assert request_from_json(json.loads(json.dumps(request_to_json(request)))) == request
