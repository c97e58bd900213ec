"""`salut models`, `salut pull MODEL [--from PEER]`, `salut load MODEL [--on PEER | --shard]`,
`salut unload MODEL [--on PEER]`: models across the cluster, driven through a running node's
control routes (`cluster/model_routes.py`), with progress bars drawn here.

`--shard` (and an unload of a sharded model) goes to the shard commands (`cli/shard.py`). A whole
load this node refuses for memory asks the node for a sharded plan and proposes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from salut_tui.cli import shard
from salut_tui.cli.cluster import _call, _run, _target_options
from salut_tui.cluster.control import (
    CONTROL_TOKEN_FILE,
    CommandError,
    call_control,
    stream_control,
)
from salut_tui.config import Settings
from salut_tui.events import MEMORY_CHECK
from salut_tui.keepalive import describe
from salut_tui.transfer.progress import RateMeter, Snapshot, bar_line, human_bytes


def add_model_subcommands(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models", help="list the cluster's models: where each lives and where it is loaded"
    )
    _target_options(models)
    models.set_defaults(func=cmd_models)
    pull = subparsers.add_parser(
        "pull", help="copy a model from a paired peer into this node's models dir (resumable)"
    )
    _target_options(pull)
    pull.add_argument("model", metavar="ORG/NAME")
    pull.add_argument(
        "--from", dest="peer", default=None, help="the peer to copy from (default: one that has it)"
    )
    pull.set_defaults(func=cmd_pull)
    for verb, helptext in (
        ("load", "load a model on this node or on a paired peer (--on PEER)"),
        ("unload", "unload a model on this node or on a paired peer (--on PEER)"),
    ):
        sub = subparsers.add_parser(verb, help=helptext)
        _target_options(sub)
        sub.add_argument("model", metavar="MODEL")
        sub.add_argument("--on", default=None, metavar="PEER", help="a paired peer (name or id)")
        if verb == "load":
            sub.add_argument(
                "--keep-alive", default=None, help="idle time before unload: 5m, 1h, -1 (kept)"
            )
            sub.add_argument("--force", action="store_true", help="load past the memory check")
            sub.add_argument(
                "--shard", action="store_true",
                help="split it over this node and paired peers (prints the plan first)",
            )  # fmt: skip
            shard.add_split_options(sub)
            sub.set_defaults(func=cmd_load)
        else:
            sub.set_defaults(func=cmd_unload)


def _stream(args: argparse.Namespace, settings: Settings, path: str, body: dict) -> Iterator[dict]:
    return stream_control(settings.data_path(), "POST", path, body, host=args.host, port=args.port)


def _draw(line: str, end: str = "") -> None:
    width = 100
    print(f"\r{line[:width]:<{width}}", end=end, file=sys.stderr, flush=True)


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        last: dict[str, Any] = {}
        for view in _stream(
            args, settings, "/models/pull", {"model": args.model, "from": args.peer}
        ):
            last = view
            snap = Snapshot(view["done"], view["total"], view["rate"], view["eta"])
            label = f"{args.model} <- {view['source'] or 'peer'}"
            _draw(bar_line(label, snap) if view["total"] else f"{label}: {view['stage']}")
        print(file=sys.stderr)
        if last.get("state") != "done":
            raise CommandError(f"pull failed: {last.get('message') or 'no answer'}")
        print(
            f"{args.model} is in {last['message']} ({human_bytes(last['received'])} copied, "
            f"{human_bytes(last['total'])} in all)"
        )

    return _run(go)


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    if args.shard:
        if args.on:
            print("salut load: --shard and --on do not go together", file=sys.stderr)
            return 2
        return shard.cmd_load(args, settings)
    if args.nodes or args.copy:
        flag = "--nodes" if args.nodes else "--copy"
        print(f"salut load: {flag} goes with --shard", file=sys.stderr)
        return 2
    refused = [False]  # refused for memory, with a sharded plan proposed instead

    def go() -> None:
        body = {"model": args.model, "on": args.on, "keep_alive": args.keep_alive,
                "force": args.force}  # fmt: skip
        started = time.monotonic()
        result: dict[str, Any] = {}
        for answer in _stream(args, settings, "/models/load", body):
            stage = str(answer.get("stage", ""))
            if stage.startswith(MEMORY_CHECK):  # the (peer's) check, kept above the bar
                _draw(f"{args.on or 'this node'}: {stage}", end="\n")
            elif "progress" in answer:
                snap = Snapshot(int(answer["progress"] * 1000), 1000, 0.0, None)
                filled = int(snap.fraction * 30)
                _draw(
                    f"loading {args.model} [{'#' * filled}{'.' * (30 - filled)}] "
                    f"{snap.fraction * 100:3.0f}% {answer.get('stage', '')} "
                    f"({time.monotonic() - started:.0f} s)"
                )
            else:
                result = answer
        print(file=sys.stderr)
        message = result.get("message") or "the load failed"
        if not result.get("ok") and result.get("code") == "insufficient_memory" and not args.on:
            plan = _sharded_plan(args, settings)
            if plan is not None:  # the refusal first, then the plan that would fit
                print(f"salut: {message}", file=sys.stderr, flush=True)
                whole = sum(n["memory_bytes"] for n in plan["nodes"])
                alone = [n["name"] for n in plan["nodes"][1:] if n["usable_bytes"] >= whole]
                if alone:
                    print(f"it fits whole on {alone[0]}: salut load {args.model} --on {alone[0]}")
                print(f"{args.model} does not fit on this node, but it fits split:")
                shard.print_plan(plan)
                copy = " --copy" if plan.get("copies") else ""
                print(
                    f"run again with --shard{copy} to load it split: "
                    f"salut load {args.model} --shard{copy}"
                )
                refused[0] = True
                return
        if not result.get("ok"):
            raise CommandError(message)
        print(result["message"])

    code = _run(go)
    return 1 if refused[0] else code


def _sharded_plan(args: argparse.Namespace, settings: Settings) -> dict | None:
    """The whole model does not fit here: the sharded plan over two or more nodes that fits
    (the node's own placement answers), or None (no plan fits, or it would be this node alone)."""
    try:
        plan = _call(args, settings, "POST", "/shard/plan", {"model": args.model})
    except CommandError:
        return None  # no plan fits either (or no peers): the refusal alone says it
    return plan if len(plan.get("nodes", [])) >= 2 else None


def _is_sharded(args: argparse.Namespace, settings: Settings) -> bool:
    """This node knows `args.model` as a sharded instance (coordinator or participant)."""
    body = call_control(settings.data_path(), "GET", "/models", host=args.host, port=args.port)
    return any(m["id"] == args.model and m.get("shard") for m in body["models"])


def cmd_unload(args: argparse.Namespace, settings: Settings) -> int:
    if not args.on:
        sharded = [False]

        def look() -> None:
            sharded[0] = _is_sharded(args, settings)

        if _run(look) != 0:
            return 1
        if sharded[0]:  # end it on every node, from whichever node is asked
            return shard.cmd_unload(args, settings)

    def go() -> None:
        result = call_control(
            settings.data_path(), "POST", "/models/unload", {"model": args.model, "on": args.on},
            host=args.host, port=args.port,
        )  # fmt: skip
        if not result.get("ok"):
            raise CommandError(result.get("message") or "the unload failed")
        print(result["message"])

    return _run(go)


def model_lines(models: list[dict], me: str, partials: Sequence[dict] = ()) -> list[str]:
    """`salut models` as text, from the control route's model rows (`me`: this node's name):
    where each model's files are, where it is loaded, the idle unload of a model loaded here,
    for a sharded instance every participant's rank and layers (the same parts /v1/models
    lists as `shard` and the Models screen shows), and under a model this node holds a partial
    copy of (`partials`, which no row lists as files here), that copy on a line of its own."""
    lines = [f"{'MODEL':<44} {'FILES ON':<24} {'LOADED ON':<20} {'IDLE UNLOAD':<12}"]
    copies = {p["model"]: p for p in partials}
    for m in models:
        holders = (["this node"] if m["here"] else []) + list(m["peers_with_files"])
        parts = sorted(m.get("shard") or (), key=lambda p: p["rank"])
        loaded_here = m["here"] and me in m["nodes"] and not parts
        left = describe(m["keep_alive_left"]) if loaded_here else "-"
        if loaded_here and m["keep_alive_left"] is not None:
            left = f"in {left}"
        loaded_on = ", ".join(m["nodes"]) or "-"
        if parts:
            state = "sharded" if m["loaded"] else "starting"
            loaded_on = f"{state}: {', '.join(p['name'] for p in parts)}"
        lines.append(
            f"{m['id']:<44} {', '.join(holders) or '-':<24} {loaded_on:<20} {left:<12}".rstrip()
        )
        for p in parts:  # layers [start, end), as the shard plan prints them
            start, end = p["layers"]
            lines.append(f"  rank {p['rank']}  {p['name']:<16} layers {start:>3}-{end}")
        if m["id"] in copies:
            lines.append(partial_line(copies.pop(m["id"])))
    for copy in copies.values():  # no node lists the model now: the copy alone
        lines += [f"{copy['model']:<44} {'-':<24} {'-':<20} -".rstrip(), partial_line(copy)]
    return lines


SHOWN_FILES = 3  # weight files named on a partial copy's line; the others are counted


def partial_line(copy: dict) -> str:
    """A partial copy on this node: the weight files it holds and its size."""
    names = list(copy["weights"])
    shown = ", ".join(names[:SHOWN_FILES])
    if len(names) > SHOWN_FILES:
        shown += f" and {len(names) - SHOWN_FILES} more"
    return f"  partial copy here for sharding: files {shown}, {human_bytes(copy['bytes'])}"


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    def go() -> None:
        body = call_control(settings.data_path(), "GET", "/models", host=args.host, port=args.port)
        for line in model_lines(body["models"], body.get("node", ""), body.get("partials", [])):
            print(line)
        running = [t for t in body["transfers"] if t["state"] == "running"]
        for t in running:
            snap = Snapshot(t["done"], t["total"], t["rate"], t["eta"])
            print(bar_line(f"{t['kind']} {t['model']}", snap))

    return _run(go)


def cmd_download(args: argparse.Namespace, settings: Settings) -> int:
    """`salut download`: through the running node of this data dir when there is one (its UI
    shows the download), else in this process; a progress bar with rate and ETA either way.
    Files already in the cache are not fetched again (a killed download goes on from them)."""
    token = settings.data_path() / CONTROL_TOKEN_FILE
    if not args.here and token.is_file():
        return _run(lambda: _download_via_node(args, settings))
    return _download_here(args)


def _download_via_node(args: argparse.Namespace, settings: Settings) -> None:
    body = {"model": args.model_id, "revision": args.revision, "endpoint": args.endpoint}
    last: dict[str, Any] = {}
    for view in _stream(args, settings, "/models/download", body):
        last = view
        snap = Snapshot(view["done"], view["total"], view["rate"], view["eta"])
        _draw(bar_line(args.model_id, snap) if view["total"] else f"{args.model_id}: starting")
    print(file=sys.stderr)
    if last.get("state") != "done":
        raise CommandError(f"download failed: {last.get('message') or 'no answer'}")
    print(f"{args.model_id} is in {last['message']}")


def _download_here(args: argparse.Namespace) -> int:
    from salut_tui.engine.hub import DownloadError, download_model
    from salut_tui.engine.registry import hf_cache_dir

    meter = RateMeter(0, 0, time.monotonic())
    shown = [0.0]

    def on_bytes(done: int, total: int, received: int) -> None:
        meter.total = total
        now = time.monotonic()
        snap = meter.update(received, now)
        left = max(0, total - done)
        eta = left / snap.rate if snap.rate > 0 else None
        if now - shown[0] > 0.1 or done >= total:
            shown[0] = now
            _draw(bar_line(args.model_id, Snapshot(done, total, snap.rate, eta)))

    try:
        path = download_model(
            args.model_id,
            revision=args.revision,
            endpoint=args.endpoint,
            cache_dir=hf_cache_dir(),  # the cache the registry reads, whatever the env says now
            on_bytes=on_bytes,
        )
    except DownloadError as exc:
        print(f"\nsalut download: {exc}", file=sys.stderr)
        return 2
    print(
        f"\n{args.model_id} is in {path}; serve it with: salut serve --model {args.model_id}",
        file=sys.stderr,
    )
    return 0
