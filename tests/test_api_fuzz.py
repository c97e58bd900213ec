"""Fuzzing the generation endpoints of a live node with malformed bodies.

Several hundred bodies, generated from a fixed seed (the same ones every run): JSON values of
every type where an object belongs, fields of the wrong type, huge and negative numbers, unicode,
truncated JSON, invalid UTF-8, wrong content types. Every answer must be a 4xx with an
OpenAI-shaped error body, or a valid 200 when the body happened to be valid; never a 5xx. The
node must be healthy afterwards. `default_max_tokens` is tiny so that valid bodies cost little.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from salut_tui.config import Settings
from salut_tui.node import Node
from tests.test_adapters import parse_sse

SEED = 20261130
CASES = 400
PATHS = ("/v1/chat/completions", "/v1/completions")
MODEL = "salut-test/tiny-llama"

WEIRD_STRINGS = [
    "",
    " ",
    "\x00",
    "é\u200b\U0001f600",
    "\ud800",  # a lone surrogate: json.dumps writes it, it is not valid UTF-16
    "<|im_end|>",
    "a" * 5000,
    "null",
    "0",
    "../../etc/passwd",
    MODEL,
]
WEIRD_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2,
    0.5,
    -0.0,
    1e308,
    -1e308,
    2**63,
    2**64 + 1,
    10**30,
    -(2**70),
    3.14159,
    float("inf"),
    float("nan"),
]


def weird_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice(WEIRD_NUMBERS)
    if kind == 3:
        return rng.choice(WEIRD_STRINGS)
    if kind == 4:
        return rng.randint(-5, 5)
    if kind == 5:
        return [weird_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 6:
        return {rng.choice(WEIRD_STRINGS[:6]): weird_value(rng, depth + 1) for _ in range(2)}
    return {"role": rng.choice(["user", "system", "bot", 3]), "content": weird_value(rng, 2)}


def plausible_body(rng: random.Random, path: str) -> dict:
    """A valid body, then a few of its fields replaced, removed or added."""
    body: dict[str, Any] = {"model": MODEL, "max_tokens": rng.randint(1, 3)}
    if path.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": "Hello"}]
    else:
        body["prompt"] = "The sky is"
    if rng.random() < 0.3:
        body["stream"] = True
    fields = [
        "model",
        "messages",
        "prompt",
        "temperature",
        "top_p",
        "repetition_penalty",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stop",
        "seed",
        "stream_options",
        "n",
        "logit_bias",
        "user",
    ]
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(fields)
        if rng.random() < 0.15:
            body.pop(field, None)
        else:
            body[field] = weird_value(rng)
    return body


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def fuzz_cases(seed: int = SEED, count: int = CASES) -> list[tuple[str, bytes, str]]:
    """(path, raw body, content type), the same list for the same seed."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        path = rng.choice(PATHS)
        content_type = "application/json"
        kind = rng.random()
        if kind < 0.55:
            raw = encoded(plausible_body(rng, path))
        elif kind < 0.7:
            raw = encoded(weird_value(rng))
        elif kind < 0.82:
            whole = encoded(plausible_body(rng, path))
            raw = whole[: rng.randrange(len(whole))]
        elif kind < 0.9:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:
            raw = encoded(plausible_body(rng, path))
            content_type = rng.choice(
                ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
            )
        cases.append((path, raw, content_type))
    return cases


def test_the_cases_are_deterministic() -> None:
    assert fuzz_cases(count=50) == fuzz_cases(count=50)
    assert fuzz_cases(seed=1, count=50) != fuzz_cases(count=50)


def check_error_body(status: int, data: bytes, case: tuple) -> None:
    assert 400 <= status < 500, (status, data[:300], case)
    error = json.loads(data)["error"]
    assert isinstance(error["message"], str) and error["message"], case
    assert isinstance(error["type"], str), case
    assert "param" in error and "code" in error, case


def check_success(data: bytes, content_type: str, case: tuple) -> None:
    if content_type.startswith("text/event-stream"):
        events = parse_sse(data)
        assert events[-1] == "[DONE]", case
        assert all("error" not in e for e in events[:-1]), (events, case)
    else:
        body = json.loads(data)
        assert body["choices"][0]["finish_reason"] in ("stop", "length"), case


@pytest.fixture
async def node(tmp_path, tiny_model_path):
    settings = Settings(
        models={MODEL: str(tiny_model_path)},
        host="127.0.0.1",
        port=0,
        data_dir=str(tmp_path),
        mode="solo",
        default_max_tokens=3,  # valid bodies without max_tokens stay cheap
    )
    node = Node(settings)
    await node.start(preload=[MODEL])
    await node.load_model(MODEL)
    yield node
    await node.stop()


async def test_malformed_bodies_get_openai_shaped_4xx(node: Node) -> None:
    base = f"http://127.0.0.1:{node.port}"
    statuses: Counter[int] = Counter()
    began = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for case in fuzz_cases():
            path, raw, content_type = case
            headers = {"Content-Type": content_type} if content_type else {}
            async with session.post(base + path, data=raw, headers=headers) as response:
                data = await response.read()
                statuses[response.status] += 1
                if response.status == 200:
                    check_success(data, response.headers.get("Content-Type", ""), case)
                else:
                    check_error_body(response.status, data, case)
        assert time.monotonic() - began < 240  # bounded: a few hundred small requests
        # Healthy afterwards: nothing left running, and a normal request is served.
        async with session.get(base + "/health") as health:
            assert (await health.json())["status"] == "ok"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        async with session.post(base + PATHS[0], json=body) as ok:
            assert ok.status == 200
    assert node.engine is not None
    assert node.engine.in_flight == 0 and node.engine.queued == 0
    assert node.stats().in_flight == 0
    assert statuses[400] > CASES // 2 and statuses[200] > 0, statuses  # both paths exercised
