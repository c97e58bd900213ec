"""Three real `salut serve` processes, A, B and C, on a private LAN the test builds.

As root: a network namespace per node plus one holding a bridge, joined by veth pairs, so
discovery runs over real multicast between separate network stacks (the test process reaches
the nodes over one more veth). Without root or namespaces: the nodes listen on 127.0.0.2-4 and
also list each other as manual peers (force this with SALUT_TEST_LOOPBACK=1). B holds the model `tiny-b`, C holds `tiny-c`, A holds
nothing; A and B get paired with the real protocol through the CLI, C never is.

The tests run in file order against the same three processes (a scenario, step by step).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from openai import OpenAI

from salut_tui.cluster.link_handshake import NotPaired, dial
from salut_tui.pairing.exchange import Party, start_pake
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.machine import Role
from salut_tui.pairing.trust import TrustedPeer
from tests.helpers import eventually, wait_healthy

REPO = Path(__file__).resolve().parent.parent
PORT = 17258
pytestmark = pytest.mark.timeout(180)


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


@dataclass
class NodeProc:
    name: str
    ip: str
    root: Path
    netns: str | None
    models: dict[str, str]
    peers: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{PORT}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "salut.toml"
        models = ", ".join(f'"{k}" = "{v}"' for k, v in self.models.items())
        peers = ", ".join(f'"{p}"' for p in self.peers)
        # default_model names nothing, so a node without models does not load the bundled one.
        config.write_text(
            f"models = {{ {models} }}\npreload = {json.dumps(list(self.models))}\n"
            f'peers = [{peers}]\ndefault_model = "salut-test/none"\n'
        )
        cmd = [*self._prefix(), sys.executable, "-m", "salut_tui", "serve", "--config", str(config),
               "--host", self.ip, "--port", str(PORT), "--data-dir", str(self.data_dir), "--name", self.name]  # fmt: skip
        log = open(self.root / "node.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready is what `/health` says (with this node's preloaded models loaded), not a
        non-empty /v1/models, which needs a bundled model to hold for a node without models."""
        wait_healthy(
            f"http://{self.address}", self.proc, models=self.models, timeout=timeout,
            log=lambda: f"{self.name} never became ready\n{self.log_tail()}",
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def peer(self, other: NodeProc) -> dict | None:
        other_id = other.identity().node_id
        return next((p for p in self.get("/v1/cluster")["peers"] if p["id"] == other_id), None)

    def identity(self) -> Identity:
        return Identity.load_or_create(self.data_dir)

    def control(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """The control route the CLI uses, called directly (saves a process start per step)."""
        _, _, token = (self.data_dir / "control.token").read_text().split()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://{self.address}/salut/control{path}", data=data, method=method
        )
        request.add_header("X-Salut-Control", token)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def _cli_command(self, *args: str) -> list[str]:
        """`salut ARGS --data-dir <this node's>`, run inside this node's namespace."""
        return [
            *self._prefix(),
            sys.executable,
            "-m",
            "salut_tui",
            *args,
            "--data-dir",
            str(self.data_dir),
        ]

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cli_command(*args), cwd=REPO, capture_output=True, text=True, timeout=60
        )

    def cli_background(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self._cli_command(*args), cwd=REPO, stdout=subprocess.PIPE, text=True
        )

    def log_tail(self) -> str:
        path = self.root / "node.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class Lan:
    """Builds and removes the namespaces and bridge (or falls back to loopback addresses)."""

    def __init__(self) -> None:
        tag = f"sl{os.getpid() % 10000}"
        self.tag, self.subnet = tag, f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
        self.namespaces: list[str] = []
        # SALUT_TEST_LOOPBACK=1 forces the loopback variant (what runs without root).
        wanted = os.geteuid() == 0 and not os.environ.get("SALUT_TEST_LOOPBACK")
        self.netns = wanted and self._try_build()

    def _try_build(self) -> bool:
        try:
            br = f"{self.tag}br"
            _sh("ip", "netns", "add", br)
            self.namespaces.append(br)
            _sh("ip", "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            _sh("ip", "-n", br, "link", "set", "br0", "up")
            self._plug(None, f"{self.subnet}.1")  # the test process's own leg
            return True
        except (subprocess.SubprocessError, OSError):
            self.remove()
            return False

    def _plug(self, ns: str | None, ip: str) -> None:
        outer, inner = f"{self.tag}{len(self.namespaces)}o", f"{self.tag}{len(self.namespaces)}i"
        _sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _sh("ip", "link", "set", outer, "netns", f"{self.tag}br")
        _sh("ip", "-n", f"{self.tag}br", "link", "set", outer, "master", "br0", "up")
        where = ["-n", ns] if ns else []
        if ns:
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", *where, "link", "set", "lo", "up")
        _sh("ip", *where, "addr", "add", f"{ip}/24", "dev", inner)
        _sh("ip", *where, "link", "set", inner, "up")
        if ns:
            _sh("ip", *where, "route", "add", "224.0.0.0/4", "dev", inner)

    def add_node(self, index: int) -> tuple[str, str | None]:
        if not self.netns:
            return f"127.0.0.{index + 2}", None
        ns = f"{self.tag}n{index}"
        _sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        ip = f"{self.subnet}.{index + 2}"
        self._plug(ns, ip)
        return ip, ns

    def remove(self) -> None:
        for ns in reversed(self.namespaces):  # deleting a namespace deletes its veth pairs too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.namespaces.clear()


@pytest.fixture(scope="module")
def lan(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[dict[str, NodeProc]]:
    net = Lan()
    root = tmp_path_factory.mktemp("lan")
    nodes: dict[str, NodeProc] = {}
    try:
        for i, (name, models) in enumerate(
            [
                ("A", {}),
                ("B", {"tiny-b": str(tiny_model_path)}),
                ("C", {"tiny-c": str(tiny_model_path)}),
            ]
        ):
            ip, ns = net.add_node(i)
            nodes[name] = NodeProc(name, ip, root / name, ns, models)
        if not net.netns:  # no multicast between separate stacks: list the peers as well
            for node in nodes.values():
                node.peers = [n.address for n in nodes.values() if n is not node]
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            node.wait_ready()
        nodes["A"].netns_mode = net.netns  # type: ignore[attr-defined]
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
        net.remove()


def chat(node: NodeProc, model: str, *, stream: bool, max_tokens: int = 16) -> str:
    client = OpenAI(base_url=f"http://{node.address}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "Hello from the cluster test"}]
    if not stream:
        reply = client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0
        )  # type: ignore[arg-type]
        return reply.choices[0].message.content or ""
    chunks = client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True
    )  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def post(node: NodeProc, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{node.address}{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_nodes_discover_each_other(lan: dict[str, NodeProc]) -> None:
    a, b, c = lan["A"], lan["B"], lan["C"]
    expected = "mdns" if getattr(a, "netns_mode", False) else "manual"
    for other in (b, c):
        peer = eventually(lambda other=other: a.peer(other), 5, f"A sees {other.name}")
        assert peer["name"] == other.name and peer["address"] == other.address  # type: ignore[index]
        assert peer["paired"] is False and peer["health"] == "discovered"  # type: ignore[index]
        eventually(
            lambda other=other, expected=expected: expected in a.peer(other)["discovered_by"],
            5,
            f"{expected} finds {other.name}",
        )  # type: ignore[index]
    info = a.get("/v1/cluster")
    assert info["node"]["id"] == a.identity().node_id and info["node"]["name"] == "A"


@pytest.mark.netns
def test_discovery_crosses_network_namespaces(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    if not getattr(a, "netns_mode", False):
        pytest.skip("needs root and network namespaces (ran on loopback addresses instead)")
    assert a.netns != b.netns and a.ip != b.ip
    peer = a.peer(b)
    assert peer is not None and "mdns" in peer["discovered_by"] and peer["address"] == b.address


def _code(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    match = re.search(r"Pairing code: (\S+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def test_pairing_with_wrong_expired_reused_and_right_codes(lan: dict[str, NodeProc]) -> None:
    a, b, c = lan["A"], lan["B"], lan["C"]
    code = _code(a.cli("pair", "code"))
    number, w1, w2 = code.split("-")
    wrong = c.cli(
        "pair", "join", a.address, f"{number}-{w1}-{'zebra' if w2 != 'zebra' else 'mango'}"
    )
    assert wrong.returncode == 1 and "code was wrong" in wrong.stderr
    dead = b.cli("pair", "join", a.address, code)  # C's wrong guess burnt the code
    assert dead.returncode == 1 and "no pairing code" in dead.stderr

    status, short = a.control("POST", "/pair/code", {"ttl": 1})
    assert status == 200 and short["expires_in"] <= 1
    time.sleep(1.3)
    status, expired = b.control("POST", "/pair/join", {"address": a.address, "code": short["code"]})
    assert status == 400 and expired["error"]["code"] == "no_code"

    waiting = a.cli_background("pair", "code", "--wait")  # prints the code, then the outcome
    assert waiting.stdout is not None
    code = re.search(r"Pairing code: (\S+)", waiting.stdout.readline()).group(1)  # type: ignore[union-attr]
    joined = b.cli("pair", "join", a.address, code)
    assert joined.returncode == 0 and "Paired with A" in joined.stdout, joined.stderr
    outcome, _ = waiting.communicate(timeout=30)
    assert waiting.returncode == 0 and "Paired with B" in outcome
    status, reused = c.control("POST", "/pair/join", {"address": a.address, "code": code})
    assert status == 400 and reused["error"]["code"] == "no_code"

    peers = json.loads(a.cli("peers", "--json").stdout)["peers"]
    ours = {p["name"]: p["paired"] for p in peers if p["name"] in ("B", "C")}  # on loopback, other
    assert ours == {"B": True, "C": False}  # nodes on this machine may show up too
    assert "A" in b.cli("peers").stdout
    eventually(lambda: (a.peer(b) or {}).get("health") == "ok", 5, "A links to B")
    eventually(lambda: (b.peer(a) or {}).get("health") == "ok", 5, "B links to A")
    assert a.peer(b)["address"] == b.address and b.peer(a)["address"] == a.address  # type: ignore[index]


def test_request_to_a_for_bs_model_is_proxied(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    models = {m["id"]: m for m in a.get("/v1/models")["data"]}
    assert models["tiny-b"]["owned_by"] == "B" and "tiny-c" not in models  # C is not paired
    direct = chat(b, "tiny-b", stream=False)
    assert direct and chat(a, "tiny-b", stream=False) == direct  # greedy: the same text
    assert chat(a, "tiny-b", stream=True) == chat(b, "tiny-b", stream=True) == direct
    status, missing = post(
        a, "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 404 and missing["error"]["code"] == "model_not_found"


async def test_unpaired_c_is_refused_at_every_peer_route(lan: dict[str, NodeProc]) -> None:
    a, b, c = lan["A"], lan["B"], lan["C"]
    c_identity = c.identity()
    async with aiohttp.ClientSession() as session:
        for target in (a, b):
            claimed = TrustedPeer(
                target.identity().node_id,
                target.name,
                target.identity().public_key.hex(),
                target.address,
                0,
            )
            with pytest.raises(NotPaired, match="not_paired"):
                await dial(session, c_identity, claimed)
            async with session.ws_connect(
                f"http://{target.address}/salut/pair"
            ) as ws:  # no code waiting
                hello = Party(
                    c_identity.node_id,
                    "C",
                    c_identity.public_key,
                    start_pake(Role.JOINER, "42-maple-rocket").start(),
                )
                await ws.send_json({"type": "hello", **hello.to_json(), "port": PORT})
                assert (await ws.receive_json(timeout=5))["reason"] in ("no_code", "busy")
            for method, path in (
                ("GET", "/salut/control/peers"),
                ("POST", "/salut/control/pair/code"),
                ("DELETE", "/salut/control/peers/B"),
            ):
                async with session.request(method, f"http://{target.address}{path}") as resp:
                    assert resp.status == 403
    assert "tiny-b" not in {m["id"] for m in c.get("/v1/models")["data"]}
    status, _ = post(
        c,
        "/v1/chat/completions",
        {"model": "tiny-b", "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 404
    assert all(not p["paired"] for p in c.get("/v1/cluster")["peers"])


def test_b_killed_mid_stream_ends_the_stream_with_an_error(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    body = {
        "model": "tiny-b",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4000,
        "temperature": 0,
        "stream": True,
    }
    events: list[str] = []
    killed_at = 0.0
    request = urllib.request.Request(
        f"http://{a.address}/v1/chat/completions", data=json.dumps(body).encode()
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        for raw in resp:  # lines as they arrive
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if not killed_at and '"content"' in line:
                b.kill()
                killed_at = time.monotonic()
    ended_after = time.monotonic() - killed_at
    assert killed_at and ended_after < 5, ended_after
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "peer_unreachable" and "B" in error["message"]
    peer = eventually(
        lambda: (p := a.peer(b)) and p["health"] == "unreachable" and p, 5, "A marks B unreachable"
    )
    assert peer["paired"] is True and peer["loaded_models"] == []  # type: ignore[index]
    assert "tiny-b" not in {m["id"] for m in a.get("/v1/models")["data"]}


def test_restarted_b_comes_back_paired(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    b.start()
    b.wait_ready()
    eventually(lambda: (a.peer(b) or {}).get("health") == "ok", 10, "B is back on A")
    assert a.peer(b)["paired"] is True  # type: ignore[index]
    assert chat(a, "tiny-b", stream=True) == chat(b, "tiny-b", stream=False)


def test_silent_b_is_marked_unreachable_and_comes_back(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)  # no TCP reset this time: only silence
    try:
        eventually(
            lambda: (a.peer(b) or {}).get("health") == "unreachable", 5, "A notices B is silent"
        )
        # A knows B holds tiny-b: "unreachable, retry" (503), not "does not exist" (404).
        body = {"model": "tiny-b", "messages": [{"role": "user", "content": "hi"}]}
        status, answer = post(a, "/v1/chat/completions", body)
        assert (status, answer["error"]["code"]) == (503, "peer_unreachable")
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    eventually(
        lambda: (a.peer(b) or {}).get("health") == "ok", 10, "B comes back without re-pairing"
    )


def test_unpair_removes_trust_on_both_sides(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    result = a.cli("unpair", b.identity().node_id[:9])  # a unique id prefix works too
    assert result.returncode == 0 and "Unpaired B" in result.stdout, result.stderr
    eventually(lambda: (b.peer(a) or {}).get("paired") is False, 5, "B forgets A")
    assert (a.peer(b) or {}).get("paired") in (False, None)
    assert b.identity().node_id not in (b.data_dir / "trusted_peers.json").read_text()
    assert a.identity().node_id not in (b.data_dir / "trusted_peers.json").read_text()
    status, _ = post(
        a,
        "/v1/chat/completions",
        {"model": "tiny-b", "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 404


def test_a_node_that_leaves_disappears(lan: dict[str, NodeProc]) -> None:
    a, c = lan["A"], lan["C"]
    assert a.peer(c) is not None
    c.stop()
    eventually(lambda: a.peer(c) is None, 5, "C drops out of A's peer list")
