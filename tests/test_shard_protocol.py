"""The typed contracts between a node and its runners: the spec file, the JSON-lines protocol,
and the per-step orders rank 0 broadcasts (all pure: no MLX, no process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token, Usage
from salut_tui.shard.orders import (
    IDLE_FAST_S,
    IDLE_SLOW_S,
    Insert,
    Remove,
    ShareSchedule,
    Stop,
    decode_orders,
    encode_orders,
    every_for,
)
from salut_tui.shard.protocol import (
    Cancel,
    ChunkOut,
    Fatal,
    Generate,
    ProtocolError,
    Ready,
    Shutdown,
    Stats,
    decode,
    encode,
    encode_line,
)
from salut_tui.shard.spec import RunnerSpec, write_ring_hostfile

REQUEST = GenerationRequest(
    "org/model",
    messages=({"role": "user", "content": "héllo\nworld"},),
    sampling=SamplingParams(temperature=0.5, top_p=0.9, max_tokens=12, stop=("x", "y"), seed=3),
    request_id="r1",
    client="10.0.0.2",
)

MESSAGES = [
    Ready(0, 123456, (0, 12)),
    ChunkOut("r1", Token("hé\n", 42)),
    ChunkOut("r1", Token("", None)),
    ChunkOut("r1", Finish("length", Usage(5, 12))),
    ChunkOut("r1", Error("gone", code="shard_failed", status=503)),
    Stats(12.5, 3),
    Fatal("RuntimeError: [ring] connection to a peer was lost"),
    Generate(REQUEST),
    Generate(GenerationRequest("m", prompt="plain", request_id="r2")),
    Cancel("r1"),
    Shutdown(),
    Shutdown("unload"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_on_one_line(message) -> None:
    line = encode_line(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message
    assert decode(line.decode()) == message


def test_the_wire_shapes_are_the_documented_ones() -> None:
    assert json.loads(encode(Ready(1, 9, (3, 7)))) == {
        "type": "ready",
        "rank": 1,
        "memory_bytes": 9,
        "layers": [3, 7],
    }
    assert json.loads(encode(ChunkOut("r", Token("a", 1)))) == {
        "type": "chunk",
        "request_id": "r",
        "chunk": {"t": "a", "i": 1},
    }
    assert json.loads(encode(Stats(1.0, 2))) == {
        "type": "stats",
        "tokens_per_second": 1.0,
        "in_flight": 2,
    }
    body = json.loads(encode(Generate(REQUEST)))
    assert body["type"] == "generate" and body["request"]["request_id"] == "r1"
    assert json.loads(encode(Cancel("r"))) == {"type": "cancel", "request_id": "r"}
    assert json.loads(encode(Shutdown()))["type"] == "shutdown"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"type": "nope"}',
        b'{"type": "ready", "rank": 0}',
        b'{"type": "chunk", "request_id": "r"}',
        b'{"type": "generate", "request": {"prompt": "no model"}}',
        b'{"no": "type"}',
    ],
)
def test_anything_else_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


def spec(**changes) -> RunnerSpec:
    fields = dict(
        instance_id="i1",
        model_path="/models/m",
        model_id="org/m",
        rank=1,
        world_size=2,
        layer_start=15,
        layer_end=30,
        num_layers=30,
        mode="pipeline",
        backend="ring",
        hostfile="/tmp/h.json",
        max_tokens_default=256,
    )
    fields.update(changes)
    return RunnerSpec(**fields)  # type: ignore[arg-type]


def test_spec_round_trips_through_its_file(tmp_path: Path) -> None:
    original = spec()
    path = tmp_path / "spec.json"
    original.write(path)
    assert RunnerSpec.read(path) == original
    assert set(json.loads(path.read_text())) == {
        "instance_id",
        "model_path",
        "model_id",
        "rank",
        "world_size",
        "layer_start",
        "layer_end",
        "num_layers",
        "mode",
        "backend",
        "hostfile",
        "max_tokens_default",
    }
    assert not original.is_coordinator and spec(rank=0, layer_start=0).is_coordinator


@pytest.mark.parametrize(
    "changes",
    [
        {"rank": 2},
        {"rank": -1},
        {"world_size": 0, "rank": 0},
        {"layer_start": 30},
        {"layer_end": 31},
        {"layer_start": 20, "layer_end": 10},
        {"mode": "diagonal"},
        {"backend": "mpi"},
        {"mode": "tensor"},  # tensor ranks hold every layer
        {"max_tokens_default": 0},
    ],
)
def test_a_spec_that_makes_no_sense_is_refused(changes: dict) -> None:
    with pytest.raises(ValueError):
        spec(**changes)


def test_tensor_spec_holds_every_layer() -> None:
    assert spec(mode="tensor", layer_start=0, layer_end=30).mode == "tensor"


def test_ring_hostfile_is_a_list_of_address_lists(tmp_path: Path) -> None:
    path = tmp_path / "hostfile.json"
    write_ring_hostfile(path, [["127.0.0.1:5000"], ["127.0.0.1:5001", "127.0.0.1:5002"]])
    assert json.loads(path.read_text()) == [
        ["127.0.0.1:5000"],
        ["127.0.0.1:5001", "127.0.0.1:5002"],
    ]


def test_orders_round_trip() -> None:
    orders = [
        Insert("a", (1, 2, 3), 10),
        Insert("b", (7,), 1, 0.7, 0.9, 1.1, 2**62),
        Remove("a"),
        Stop(),
    ]
    assert decode_orders(encode_orders(orders)) == orders
    assert decode_orders(encode_orders([])) == []
    sampling = orders[1].sampling()  # type: ignore[union-attr]
    assert (sampling.temperature, sampling.top_p, sampling.seed) == (0.7, 0.9, 2**62)


def test_the_node_side_contracts_do_not_load_mlx() -> None:
    # The node imports spec, protocol and placement; MLX belongs to the runner process only.
    code = (
        "import sys\n"
        "import salut_tui.shard.spec, salut_tui.shard.protocol, salut_tui.shard.placement\n"
        "import salut_tui.shard.shape\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'textual')]\n"
        "bad += [m for m in sys.modules if m in ('salut_tui.node', 'salut_tui.cli')]\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_orders_are_shared_about_every_share_period_while_busy() -> None:
    assert every_for(0.0) == 1
    assert every_for(0.2) == 1  # a slow model shares on every step
    assert every_for(0.01) == 5
    assert every_for(1e-6) == 32  # capped
    schedule = ShareSchedule()
    assert schedule.due(busy=True)  # the first exchange is immediate
    schedule.shared(3, idle=False)
    schedule.stepped()  # the step that follows every exchange
    due = []
    for _ in range(6):
        due.append(schedule.due(busy=True))
        if due[-1]:
            schedule.shared(3, idle=False)
        schedule.stepped()
    assert due == [False, False, True, False, False, True]  # every third step
    assert schedule.due(busy=False)  # idle: every loop turn exchanges (and waits)


def test_idle_exchanges_slow_down_after_a_second() -> None:
    schedule = ShareSchedule()
    assert schedule.idle_period() == IDLE_FAST_S
    for _ in range(int(1.0 / IDLE_FAST_S)):
        schedule.shared(1, idle=True)
    assert schedule.idle_period() == IDLE_SLOW_S
    schedule.shared(1, idle=False)  # work arrived: fast again
    assert schedule.idle_period() == IDLE_FAST_S
