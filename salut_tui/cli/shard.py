"""`salut load MODEL --shard [--nodes A,B] [--split tensor]` and `salut shard unload MODEL`
against a running node (`salut load/unload` in `cli/models.py` come here for sharded models;
`salut shard load/unload` stay as aliases).

The plan comes first (which layers on which node, memory on each), then the load; the node that
is asked becomes the coordinator. `unload` ends the sharded instance on every node, from any node.
"""

from __future__ import annotations

import argparse
import sys

from salut_tui.cli.cluster import _call, _run, _target_options
from salut_tui.cluster.control import CommandError, stream_control
from salut_tui.config import Settings
from salut_tui.transfer.progress import Snapshot, bar_line, human_bytes

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
    parser.add_argument(
        "--copy", action="store_true",
        help="with --shard: first copy the model's files (only its layers' files where the "
        "model's index allows) to a chosen node that lacks them",
    )  # fmt: skip


def print_plan(plan: dict) -> None:
    print(f"{plan['model']}: {plan['num_layers']} layers")
    for node in plan["nodes"]:
        start, end = node["layers"]
        files = "" if node.get("has_files", True) else "  (lacks the files)"
        print(
            f"  rank {node['rank']}  {node['name']:<16} layers {start:>3}-{end:<3} "
            f"{node['memory_bytes'] / GIB:7.2f} GiB of {node['usable_bytes'] / GIB:.2f} GiB usable"
            f"{files}"
        )
    for offer in plan.get("copies", ()):
        print(f"  {offer['name']} lacks the files: --copy would copy {copy_text(offer)} to it")


def copy_text(offer: dict) -> str:
    """`model-00002-of-00003.safetensors (120.0 MB)`, or `the whole model (...)`."""
    what = "the whole model" if offer["whole"] else "only " + ", ".join(offer["files"])
    return f"{what} ({human_bytes(offer['bytes'])} with config and tokenizer)"


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None
    lacking = [False]

    def go() -> None:
        body = {"model": args.model, "shard": args.shard, "nodes": nodes, "mode": args.split,
                "copy": args.copy}  # fmt: skip
        if args.shard:
            plan = _call(args, settings, "POST", "/shard/plan", body)
            print_plan(plan)
            if plan.get("copies") and not args.copy:
                print(f"run again with --copy to copy them first: salut load {args.model} "
                      f"--shard --copy")  # fmt: skip
                lacking[0] = True
                return
            if plan.get("copies"):
                _copy(args, settings, body, plan["copies"])
            print("Loading...", flush=True)
        done = _call(args, settings, "POST", "/load", body, timeout=LOAD_TIMEOUT)
        plan = done.get("plan")
        if plan and len(plan["nodes"]) > 1:
            names = ", ".join(n["name"] for n in plan["nodes"])
            print(f"Loaded {done['loaded']} sharded over {names}")
        else:
            print(f"Loaded {done['loaded']}")

    code = _run(go)
    return 1 if lacking[0] else code


def _copy(args: argparse.Namespace, settings: Settings, body: dict, offers: list[dict]) -> None:
    """The copies the plan offers, a progress bar per node while they go."""
    bars: dict[str, str] = {}
    last: dict = {}
    for line in stream_control(
        settings.data_path(), "POST", "/shard/copy", body, host=args.host, port=args.port
    ):
        last = line
        if "kind" in line:
            snap = Snapshot(line["done"], line["total"], line["rate"], line["eta"])
            label = f"{args.model} -> {line['source']}"
            bars[line["id"]] = bar_line(label, snap) if line["total"] else f"{label}: starting"
            text = "  |  ".join(bars.values()) if len(bars) > 1 else bars[line["id"]]
            print(f"\r{text[:160]:<100}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if "copied" not in last:
        message = (last.get("error") or {}).get("message") or "the copy did not finish"
        raise CommandError(message)
    for offer in offers:
        print(f"copied {copy_text(offer)} to {offer['name']}")


def cmd_unload(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        done = _call(args, settings, "POST", "/unload", {"model": args.model})
        where = " (sharded: every node)" if done["instances"] else ""
        print(f"Unloaded {done['unloaded']}{where}")

    return _run(go)
