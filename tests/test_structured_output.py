"""response_format through the real `openai` client: the random tiny model writes garbage, and
with a constraint that garbage must still be JSON matching the schema, streamed or not."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from salut_tui.cluster.wire import request_from_json, request_to_json
from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.types import GenerationRequest
from salut_tui.node import Node
from tests.helpers import openai_client
from tests.test_openai_client import live_node

HELLO = [{"role": "user", "content": "Describe a person as JSON."}]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "tags", "active"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}


class Pet(BaseModel):
    name: str = Field(max_length=10)
    legs: int = Field(ge=0, le=8)
    kind: str = Field(pattern="^(cat|dog|bird)$")


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    yield node
    await node.stop()


@pytest.fixture
async def client(node: Node):
    async with openai_client(node.port) as client:
        yield client


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_json_schema_answer_validates(client: AsyncOpenAI, tiny_model_id, seed) -> None:
    response = await client.chat.completions.create(
        model=tiny_model_id,
        messages=HELLO,
        max_tokens=200,
        temperature=1.0,
        seed=seed,
        response_format=PERSON_FORMAT,  # type: ignore[arg-type]
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"  # the grammar ended it, not the token budget
    jsonschema.validate(json.loads(choice.message.content or ""), PERSON)


async def test_json_schema_streamed(client: AsyncOpenAI, tiny_model_id: str) -> None:
    stream = await client.chat.completions.create(
        model=tiny_model_id,
        messages=HELLO,
        max_tokens=200,
        temperature=0.8,
        seed=7,
        stream=True,
        response_format=PERSON_FORMAT,  # type: ignore[arg-type]
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    jsonschema.validate(json.loads(text), PERSON)


async def test_unconstrained_garbage_is_not_json(client: AsyncOpenAI, tiny_model_id: str) -> None:
    # The control: the same request without response_format is not JSON at all, so the
    # tests above prove the constraint, not a lucky model.
    response = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=40, temperature=1.0, seed=0
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.choices[0].message.content or "")


async def test_parse_with_a_pydantic_model(client: AsyncOpenAI, tiny_model_id: str) -> None:
    completion = await client.beta.chat.completions.parse(
        model=tiny_model_id,
        messages=[{"role": "user", "content": "A pet, please."}],
        max_tokens=120,
        temperature=1.0,
        seed=3,
        response_format=Pet,
    )
    pet = completion.choices[0].message.parsed
    assert isinstance(pet, Pet)
    assert pet.kind in ("cat", "dog", "bird")
    assert 0 <= pet.legs <= 8


async def test_json_object_mode(client: AsyncOpenAI, tiny_model_id: str) -> None:
    """Any JSON object: strings are unbounded there, so a run the token budget cuts short ends
    "length" (as OpenAI's do); every run the model ends itself is a JSON object."""
    finished = 0
    for seed in range(6):
        response = await client.chat.completions.create(
            model=tiny_model_id,
            messages=HELLO,
            max_tokens=120,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_object"},
        )
        choice = response.choices[0]
        text = choice.message.content or ""
        assert text.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
            finished += 1
    assert finished >= 1


async def test_text_completions_take_a_schema(client: AsyncOpenAI, tiny_model_id: str) -> None:
    response = await client.completions.create(
        model=tiny_model_id,
        prompt="Person:",
        max_tokens=200,
        temperature=1.0,
        seed=5,
        extra_body={"response_format": PERSON_FORMAT},
    )
    assert response.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(response.choices[0].text), PERSON)


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
            "response_format.json_schema.schema",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}},
            },
            "response_format.json_schema.schema",
        ),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "yaml"}, "response_format.type"),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema.schema",
        ),
    ],
)
async def test_invalid_response_format_is_400(
    client: AsyncOpenAI, tiny_model_id: str, response_format: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=tiny_model_id,
            messages=HELLO,
            max_tokens=5,
            response_format=response_format,  # type: ignore[arg-type]
        )
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_the_constraint_survives_the_peer_wire() -> None:
    request = GenerationRequest(
        model="m",
        messages=({"role": "user", "content": "hi"},),
        constraint=JsonConstraint.for_schema(PERSON, "person"),
    )
    back = request_from_json(json.loads(json.dumps(request_to_json(request))))
    assert back.constraint == request.constraint
    assert json.loads(back.constraint.schema) == PERSON
    plain = request_from_json(json.loads(json.dumps(request_to_json(GenerationRequest("m")))))
    assert plain.constraint is None
    body = request_to_json(request)
    body["constraint"] = {"schema": "[1, 2]"}
    with pytest.raises(ValueError):
        request_from_json(body)


def test_processor_masks_to_the_grammar_and_ends_a_broken_answer(tiny_model_path) -> None:
    """The processor alone, as mlx-lm calls it: after `{` only tokens that continue the object
    are allowed; after a token the grammar refuses, only end-of-sequence is."""
    import mlx.core as mx
    from mlx_lm import load

    from salut_tui.engine.structured import GrammarTokenizer

    _, tokenizer = load(str(tiny_model_path))
    grammar = GrammarTokenizer(tokenizer)
    width = grammar.vocab_size + 7  # an output layer padded past the vocabulary
    brace = tokenizer.encode("{", add_special_tokens=False)
    prompt = tokenizer.encode("Person:", add_special_tokens=False)

    processor = grammar.processor(JsonConstraint.for_schema(PERSON))
    first = processor(mx.array(prompt), mx.zeros((1, width)))
    allowed = [i for i, v in enumerate(first[0].tolist()) if v == 0]
    assert allowed == brace  # the answer must open the object
    second = processor(mx.array(prompt + brace), mx.zeros((1, width)))
    allowed = {tokenizer.decode([i]) for i, v in enumerate(second[0].tolist()) if v == 0}
    assert allowed and all('"name"'.startswith(t) for t in allowed)
    assert processor.error == ""

    broken = grammar.processor(JsonConstraint())
    broken(mx.array(prompt), mx.zeros((1, width)))
    wrong = tokenizer.encode("x", add_special_tokens=False)
    after = broken(mx.array(prompt + wrong), mx.zeros((1, width)))
    assert [i for i, v in enumerate(after[0].tolist()) if v == 0] == grammar.eos
    assert broken.error


def test_a_tokenizer_the_grammar_engine_cannot_read_is_named() -> None:
    from salut_tui.engine import errors
    from salut_tui.engine.structured import GrammarTokenizer, TokenizerUnsupported

    class SlowTokenizer:  # what a tokenizer without a Rust `tokenizers` backend looks like
        eos_token_id = 0

    with pytest.raises(TokenizerUnsupported, match="fast tokenizers"):
        GrammarTokenizer(SlowTokenizer())
    error = errors.response_format_unsupported("org/m", "ValueError: slow")
    assert error.status == 400 and error.param == "response_format" and "org/m" in error.message


async def test_a_bad_schema_that_skipped_the_api_is_refused_by_the_engine(node: Node) -> None:
    """A peer's request reaches the engine without the API's check: still a 400, before any
    token, and the engine goes on serving."""
    from salut_tui.engine.types import Error, Finish

    bad = GenerationRequest(
        model=next(iter(node.loaded_model_ids())),
        prompt="x",
        constraint=JsonConstraint('{"type":"nonsense"}'),
    )
    chunks = [c async for c in node.generate(bad)]
    assert len(chunks) == 1 and isinstance(chunks[0], Error)
    assert chunks[0].status == 400
    assert chunks[0].param == "response_format.json_schema.schema"
    good = GenerationRequest(
        model=bad.model, prompt="x", constraint=JsonConstraint.for_schema({"enum": [1, 2]})
    )
    chunks = [c async for c in node.generate(good)]
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason == "stop"
