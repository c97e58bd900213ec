"""Command line: `salut` (terminal UI), `salut serve` (headless), `salut import`, `salut download`,
the cluster commands (`cli/cluster.py`) and `salut service` (`cli/service.py`).

Everything here only parses arguments and builds a `Settings`; `salut_tui.run.run_node` runs the
node, with the terminal UI or headless.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from salut_tui import __version__
from salut_tui.cli.attach import add_attach_subcommand, attach_ui, running_node
from salut_tui.cli.cluster import _target_options, add_cluster_subcommands
from salut_tui.cli.models import add_model_subcommands
from salut_tui.cli.service import add_service_subcommands
from salut_tui.cli.shard import add_shard_subcommands
from salut_tui.config import ConfigError, Settings, find_config, load_settings
from salut_tui.engine.types import ModelError
from salut_tui.pairing.files import DataFileError

log = logging.getLogger("salut")


def _node_options(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    # On a sub-command, options default to SUPPRESS so they don't overwrite the same options
    # given before the sub-command (`salut --port 1 serve`).
    none: object = argparse.SUPPRESS if sub else None
    parser.add_argument(
        "--host", default=none, help="address to listen on (config: host, default 0.0.0.0)"
    )
    parser.add_argument(
        "--port", type=int, default=none, help="API port (config: port, default 7258)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=none,
        help="salut.toml to use (else $SALUT_CONFIG, else the platform config dir)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=none,
        help="identity, trust store, models and state (config: data_dir)",
    )
    parser.add_argument(
        "--name", default=none, help="node name shown to people and peers (config: node_name)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=argparse.SUPPRESS if sub else [],
        metavar="ID_OR_PATH",
        help="model to load at start (repeatable); a local model directory works too",
    )
    parser.add_argument(
        "--mode", default=none, choices=["cluster", "client-only", "solo"], help="config: mode"
    )
    parser.add_argument(
        "--api-key", default=none, help="require this bearer key on /v1 (config: api_key)"
    )
    parser.add_argument(
        "--log-level", default=none, help="DEBUG, INFO, WARNING, ERROR (config: log_level)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salut", description="A private LLM inference cluster from the machines on your LAN."
    )
    parser.add_argument("--version", action="version", version=f"salut {__version__}")
    _node_options(parser)
    parser.add_argument("--headless", action="store_true", help="same as `salut serve`")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run a headless node (API + engine, logs to stderr)")
    _node_options(serve, sub=True)
    imp = sub.add_parser("import", help="convert a llama-family GGUF file into a Salut model")
    imp.add_argument("file", type=Path, metavar="FILE.gguf")
    imp.add_argument("--id", required=True, dest="model_id", metavar="ORG/NAME")
    imp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    imp.add_argument("--config", metavar="FILE")
    imp.add_argument("--data-dir", metavar="DIR")
    dl = sub.add_parser(
        "download", help="download an mlx model from the Hugging Face Hub into its cache"
    )
    dl.add_argument("model_id", metavar="ORG/NAME")
    dl.add_argument("--revision", help="branch, tag or commit (default: main)")
    dl.add_argument("--endpoint", help="hub address (default: $HF_ENDPOINT or huggingface.co)")
    _target_options(dl)
    dl.add_argument(
        "--here", action="store_true",
        help="download in this process even when a node runs (else the node does it, and its "
        "UI shows the download)",
    )  # fmt: skip
    add_cluster_subcommands(sub)
    add_shard_subcommands(sub)
    add_model_subcommands(sub)
    add_service_subcommands(sub)
    add_attach_subcommand(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> tuple[Settings, Path | None]:
    """Config file (search order in config.py), then command-line overrides."""
    path = find_config(getattr(args, "config", None))
    settings = load_settings(path)
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": getattr(args, "data_dir", None),
        "node_name": getattr(args, "name", None),
        "mode": getattr(args, "mode", None),
        "api_key": getattr(args, "api_key", None),
        "log_level": getattr(args, "log_level", None),
    }
    for key, value in overrides.items():
        if value is not None:
            try:
                setattr(settings, key, value)  # validated on assignment (e.g. --port 70000)
            except ValidationError as exc:
                raise ConfigError(f"command line: {key}: {exc.errors()[0]['msg']}") from None
    return settings, path


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_import(args: argparse.Namespace) -> int:
    from salut_tui.engine.gguf_import import GGUFImportError, import_gguf

    settings, _ = settings_from_args(args)
    if "/" not in args.model_id:
        print("salut import: --id must look like ORG/NAME", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"salut import: {args.file}: no such file", file=sys.stderr)
        return 2
    out = settings.models_path().joinpath(*args.model_id.split("/", 1))

    def progress(fraction: float, stage: str) -> None:
        print(f"\r{fraction * 100:5.1f}% {stage:<40}", end="", file=sys.stderr, flush=True)

    try:
        path = import_gguf(
            args.file, out, model_id=args.model_id, dtype=args.dtype, progress=progress
        )
    except GGUFImportError as exc:
        print(f"\nsalut import: {exc}", file=sys.stderr)
        return 2
    print(f"\nimported {args.model_id} into {path}", file=sys.stderr)
    return 0


def run_download(args: argparse.Namespace) -> int:
    from salut_tui.cli.models import cmd_download

    settings, _ = settings_from_args(args)
    return cmd_download(args, settings)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the real entry point (never inside a test process): fast BLAS first
        from salut_tui.blas import maybe_reexec_with_fast_blas

        maybe_reexec_with_fast_blas()
        argv = sys.argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            setup_logging("INFO")
            return run_import(args)
        if args.command == "download":
            return run_download(args)
        settings, config_path = settings_from_args(args)
        if args.command not in (None, "serve"):  # a cluster or service command
            return int(args.func(args, settings))
    except ConfigError as exc:
        print(f"salut: {exc}", file=sys.stderr)
        return 2
    try:
        # Imported here, not at the top, for start-up cost only (no cycle): the BLAS re-exec
        # above must happen before MLX loads, and `salut peers` needs neither MLX nor Textual.
        from salut_tui.run import RunUI, run_node

        headless = args.command == "serve" or args.headless
        if not headless and not args.model:
            # A node already runs for this data dir (a service): show its UI, start nothing.
            remote = running_node(settings.data_path())
            if remote is not None:
                return attach_ui(remote)
        ui: RunUI | None = None
        if headless:
            setup_logging(settings.log_level)
        else:
            from salut_tui.ui.app import run_ui

            ui = run_ui
        return asyncio.run(run_node(settings, config_path=config_path, models=args.model, ui=ui))
    except ModelError as exc:  # `--model DIR` naming a directory that holds no model
        print(f"salut: {exc}", file=sys.stderr)
        return 2
    except DataFileError as exc:  # a damaged trust store or key: say which file and what to do
        print(f"salut: {exc}", file=sys.stderr)
        return 2
    finally:
        _release_mlx_streams()


def _release_mlx_streams() -> None:
    # MLX wants each thread that used it, the main one included, to free its streams before the
    # interpreter shuts down; otherwise exit can abort instead of returning our exit code.
    mx = sys.modules.get("mlx.core")
    if mx is not None and hasattr(mx, "clear_streams"):
        mx.clear_streams()
