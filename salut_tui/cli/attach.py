"""`salut attach [HOST:PORT]`, and `salut` finding the node already running for its data dir.

The node's control token (mode 0600 in its data dir) says where it listens and authenticates the
attached UI: whoever can read that directory may drive the node, as with `salut pair`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from salut_tui.cluster.control import CommandError, call_control, read_control_token
from salut_tui.config import Settings
from salut_tui.remote.client import RemoteNode


def add_attach_subcommand(subparsers: argparse._SubParsersAction) -> None:
    attach = subparsers.add_parser(
        "attach", help="show the terminal UI of the node already running (quitting leaves it up)"
    )
    attach.add_argument(
        "address", nargs="?", help="host:port of the node (default: from the data dir's token)"
    )
    attach.add_argument("--data-dir", metavar="DIR", default=None, help="the node's data dir")
    attach.add_argument("--config", metavar="FILE", default=None, help="salut.toml to read")
    attach.set_defaults(func=cmd_attach)


def running_node(data_dir: Path, address: str | None = None) -> RemoteNode | None:
    """The node that wrote `data_dir`'s control token, when it answers with that token."""
    found = read_control_token(data_dir)
    if found is None:
        return None
    host, port, token = found
    if address:
        host_text, _, port_text = address.rpartition(":")
        host, port = host_text.strip("[]") or host, int(port_text)
    try:
        call_control(None, "GET", "/ui/hello", host=host, port=port, token=token, timeout=2)
    except CommandError:
        return None  # a token left by a node that is gone, or another node at that address
    return RemoteNode(host, port, token, data_dir=data_dir)


def cmd_attach(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = settings.data_path()
    remote = running_node(data_dir, args.address)
    if remote is None:
        where = args.address or "the address in its control token"
        print(
            f"salut attach: no running node with data dir {data_dir} answers at {where}",
            file=sys.stderr,
        )
        return 2
    return attach_ui(remote)


def attach_ui(remote: RemoteNode) -> int:
    from salut_tui.ui.attach import run_attached

    return asyncio.run(run_attached(remote))
