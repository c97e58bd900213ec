"""`salut pair code`, `salut pair join ADDRESS CODE`, `salut peers`, `salut unpair PEER`.

Each talks to a running node's control routes on --host/--port, with the token that node wrote
into its data dir (so only someone who can read that directory can drive pairing). The token
file also holds the node's address, so `--data-dir` alone is usually enough.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from salut_tui.cluster.routes import CONTROL_HEADER, CONTROL_PREFIX, CONTROL_TOKEN_FILE


class CommandError(Exception):
    pass


def add_cluster_subcommands(subparsers: argparse._SubParsersAction) -> None:
    pair = subparsers.add_parser("pair", help="pair a running node with another one")
    pair_sub = pair.add_subparsers(dest="pair_command", metavar="{code,join}", required=True)
    code = pair_sub.add_parser(
        "code", help="show a pairing code on this node (valid a few minutes, one try)"
    )
    _target_options(code)
    code.add_argument(
        "--ttl", type=float, default=300.0, help="seconds the code stays valid (default 300)"
    )
    code.add_argument(
        "--wait", action="store_true", help="wait until someone uses the code and print the result"
    )
    code.set_defaults(func=cmd_pair_code)
    join = pair_sub.add_parser("join", help="pair with the node at ADDRESS that shows CODE")
    _target_options(join)
    join.add_argument(
        "address", help="host:port of the node showing the code, or its name/id if discovered"
    )
    join.add_argument("code", nargs="+", help="the code, e.g. 42-maple-rocket (spaces work too)")
    join.set_defaults(func=cmd_pair_join)
    peers = subparsers.add_parser(
        "peers", help="list discovered and paired peers of a running node"
    )
    _target_options(peers)
    peers.add_argument("--json", action="store_true", help="print the raw JSON")
    peers.set_defaults(func=cmd_peers)
    unpair = subparsers.add_parser(
        "unpair", help="remove trust in PEER (on both sides when it is online)"
    )
    _target_options(unpair)
    unpair.add_argument("peer", help="the peer's id, a unique id prefix, or its name")
    unpair.set_defaults(func=cmd_unpair)


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=None, help="address of the running node (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="its API port (default: from its data dir)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", default=None, help="its data dir (holds the control token)"
    )
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="salut.toml to read defaults from"
    )


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict | None = None,
    timeout: float = 30.0,
) -> Any:
    from salut_tui.cli import settings_from_args

    settings, _ = settings_from_args(args)
    token_file = settings.data_path() / CONTROL_TOKEN_FILE
    try:
        host_text, port_text, token = token_file.read_text().split()
    except (OSError, ValueError):
        raise CommandError(
            f"no running node found with data dir {settings.data_path()} ({token_file} missing)"
        ) from None
    port = args.port or int(port_text)
    host = args.host or host_text
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{host}:{port}{CONTROL_PREFIX}{path}", data=data, method=method,
        headers={CONTROL_HEADER: token, "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise CommandError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"cannot reach the node at {host}:{port}: {exc}") from None


def _run(fn) -> int:  # type: ignore[no-untyped-def]
    try:
        fn()
    except CommandError as exc:
        print(f"salut: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_pair_code(args: argparse.Namespace) -> int:
    def go() -> None:
        status = _call(args, "POST", "/pair/code", {"ttl": args.ttl})
        print(f"Pairing code: {status['code']}  (valid {status['expires_in']:.0f} s, one attempt)")
        print(
            f"On the other node: salut pair join <this node's host:port> {status['code']}",
            flush=True,
        )
        if args.wait:
            while status["state"] == "waiting" or status["state"] == "exchanging":
                time.sleep(0.5)
                status = _call(args, "GET", "/pair")
            if status["state"] != "paired":
                raise CommandError(f"pairing {status['state']}: {status['detail'] or 'no detail'}")
            print(f"Paired with {status['peer']}")

    return _run(go)


def cmd_pair_join(args: argparse.Namespace) -> int:
    def go() -> None:
        peer = _call(
            args, "POST", "/pair/join", {"address": args.address, "code": " ".join(args.code)}
        )
        print(f"Paired with {peer['name']} ({peer['id']}) at {peer['address']}")

    return _run(go)


def cmd_peers(args: argparse.Namespace) -> int:
    def go() -> None:
        body = _call(args, "GET", "/peers")
        if args.json:
            print(json.dumps(body, indent=2))
            return
        me = body["node"]
        print(f"This node: {me['name']}  {me['id']}  {me['address']}")
        if not body["peers"]:
            print("No peers yet. Pair with: salut pair code (here), then salut pair join (there).")
        for p in body["peers"]:
            latency = f"{p['latency_ms']:.1f} ms" if p["latency_ms"] is not None else "-"
            models = ", ".join(p["loaded_models"]) or "-"
            state = "paired" if p["paired"] else "not paired"
            print(
                f"  {p['name']:<16} {p['id']}  {p['address']:<21} {state:<10} {p['health']:<11} {latency:>9}  {models}"
            )

    return _run(go)


def cmd_unpair(args: argparse.Namespace) -> int:
    def go() -> None:
        body = _call(args, "DELETE", f"/peers/{urllib.parse.quote(args.peer, safe='')}")
        print(f"Unpaired {body['name']} ({body['id']})")

    return _run(go)
