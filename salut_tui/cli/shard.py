"""`salut load MODEL --shard [--nodes A,B] [--split tensor]` and `salut shard unload MODEL`
against a running node (`salut load/unload` in `cli/models.py` come here for sharded models;
`salut shard load/unload` stay as aliases).

The plan comes first (which layers on which node, memory on each), then the load; the node that
is asked becomes the coordinator. `unload` ends the sharded instance on every node, from any node.
"""

from __future__ import annotations

import argparse

from salut_tui.cli.cluster import _call, _run, _target_options
from salut_tui.config import Settings

GIB = 1024**3
LOAD_TIMEOUT = 900.0  # a big model's layers can take minutes to load on every node


def add_shard_subcommands(subparsers: argparse._SubParsersAction) -> None:
    shard = subparsers.add_parser("shard", help="split a model over this node and paired peers")
    shard_sub = shard.add_subparsers(dest="shard_command", metavar="{load,unload}", required=True)
    load = shard_sub.add_parser("load", help="load a model split over paired nodes")
    _target_options(load)
    load.add_argument("model", metavar="ORG/NAME")
    load.set_defaults(shard=True)
    add_split_options(load)
    load.set_defaults(func=cmd_load)
    unload = shard_sub.add_parser("unload", help="end a sharded model on every node")
    _target_options(unload)
    unload.add_argument("model", metavar="ORG/NAME")
    unload.set_defaults(func=cmd_unload)


def add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", default=None, metavar="NAME,NAME",
        help="with --shard: exactly these peers (default: the fewest nodes it fits on)",
    )  # fmt: skip
    parser.add_argument(
        "--split", choices=["pipeline", "tensor"], default="pipeline",
        help="with --shard: layer ranges per node (default), or tensor parallel",
    )  # fmt: skip


def print_plan(plan: dict) -> None:
    print(f"{plan['model']}: {plan['num_layers']} layers")
    for node in plan["nodes"]:
        start, end = node["layers"]
        print(
            f"  rank {node['rank']}  {node['name']:<16} layers {start:>3}-{end:<3} "
            f"{node['memory_bytes'] / GIB:7.2f} GiB of {node['usable_bytes'] / GIB:.2f} GiB usable"
        )


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None

    def go() -> None:
        body = {"model": args.model, "shard": args.shard, "nodes": nodes, "mode": args.split}
        if args.shard:
            print_plan(_call(args, settings, "POST", "/shard/plan", body))
            print("Loading...", flush=True)
        done = _call(args, settings, "POST", "/load", body, timeout=LOAD_TIMEOUT)
        plan = done.get("plan")
        if plan and len(plan["nodes"]) > 1:
            names = ", ".join(n["name"] for n in plan["nodes"])
            print(f"Loaded {done['loaded']} sharded over {names}")
        else:
            print(f"Loaded {done['loaded']}")

    return _run(go)


def cmd_unload(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        done = _call(args, settings, "POST", "/unload", {"model": args.model})
        where = " (sharded: every node)" if done["instances"] else ""
        print(f"Unloaded {done['unloaded']}{where}")

    return _run(go)
