"""`salut pair code`, `salut pair join ADDRESS CODE`, `salut peers`, `salut unpair PEER`: their
arguments and what they print. They reach a running node through its control routes
(`salut_tui.cluster.control`), located by its data dir (`--data-dir`, or the config's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from salut_tui.cluster.control import CommandError, call_control
from salut_tui.config import Settings


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
    settings: Settings,
    method: str,
    path: str,
    body: dict | None = None,
    timeout: float = 30.0,
) -> Any:
    return call_control(
        settings.data_path(), method, path, body, host=args.host, port=args.port, timeout=timeout
    )


def _run(fn: Callable[[], None]) -> int:
    try:
        fn()
    except CommandError as exc:
        print(f"salut: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_pair_code(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        status = _call(args, settings, "POST", "/pair/code", {"ttl": args.ttl})
        print(f"Pairing code: {status['code']}  (valid {status['expires_in']:.0f} s, one attempt)")
        print(
            f"On the other node: salut pair join <this node's host:port> {status['code']}",
            flush=True,
        )
        if args.wait:
            while status["state"] == "waiting" or status["state"] == "exchanging":
                time.sleep(0.5)
                status = _call(args, settings, "GET", "/pair")
            if status["state"] != "paired":
                raise CommandError(f"pairing {status['state']}: {status['detail'] or 'no detail'}")
            print(f"Paired with {status['peer']}")

    return _run(go)


def cmd_pair_join(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        peer = _call(
            args,
            settings,
            "POST",
            "/pair/join",
            {"address": args.address, "code": " ".join(args.code)},
        )
        print(f"Paired with {peer['name']} ({peer['id']}) at {peer['address']}")

    return _run(go)


def cmd_peers(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        body = _call(args, settings, "GET", "/peers")
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


def cmd_unpair(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        body = _call(args, settings, "DELETE", f"/peers/{urllib.parse.quote(args.peer, safe='')}")
        print(f"Unpaired {body['name']} ({body['id']})")

    return _run(go)
