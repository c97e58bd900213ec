"""What a node says when it starts: the hints a person needs before the first request fails.

Two warnings are worth a line in the log (and so on the UI's Logs screen): a node with no model
to serve (it would answer every request with 404, with nothing to say why), and an API open to
the whole network without a key. `salut serve --model X` must also not run on empty when X cannot
be loaded: `require_models` loads what was asked and names what failed, and serve exits non-zero.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from salut_tui.config import Settings
from salut_tui.engine.default_model import BUNDLE_INSTALL
from salut_tui.engine.types import ModelError

log = logging.getLogger(__name__)

NO_MODEL_HINT = (
    "this node has no model to serve. Pass one with `--model ORG/NAME` or `--model DIR` (a "
    "local MLX model directory), download one with `salut download ORG/NAME`, import a GGUF "
    "file with `salut import FILE.gguf --id ORG/NAME`, or install the bundled default model "
    f"with `{BUNDLE_INSTALL}`"
)


def no_model_hint(has_engine: bool, preload: Sequence[str], available: Sequence[Any]) -> str | None:
    """The hint for a node that would serve nothing: an engine, nothing to load, nothing found."""
    if not has_engine or preload or available:
        return None
    return NO_MODEL_HINT


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may be reachable from the network


def open_api_warning(settings: Settings) -> str | None:
    """The warning for an API reachable from the network that needs no key."""
    if settings.api_key or is_loopback(settings.host):
        return None
    return (
        f"the API listens on {settings.host} without an API key: anyone who can reach this "
        "machine can use its models. Set api_key in salut.toml (or pass --api-key), or listen "
        "on 127.0.0.1 only with --host 127.0.0.1"
    )


def log_start_hints(
    settings: Settings, has_engine: bool, preload: Sequence[str], registry: Any
) -> None:
    """Log the start-up warnings that apply (called once the API listens)."""
    warning = open_api_warning(settings)
    if warning is not None:
        log.warning(warning)
    # Only scanned when nothing is to be loaded: the scan reads the model dirs and the HF cache.
    if has_engine and not preload:
        hint = no_model_hint(has_engine, preload, registry.available())
        if hint is not None:
            log.warning(hint)


async def require_models(
    load: Callable[[str], Awaitable[object]], requested: Sequence[str], given: Sequence[str]
) -> str | None:
    """Load each requested model (`given`: what the person typed, for the message); the first
    failure as a message naming the value, or None when all loaded."""
    for model_id, value in zip(requested, given, strict=True):
        try:
            await load(model_id)
        except ModelError as exc:
            detail = exc.message
            if _looks_like_path(value) and not Path(value).expanduser().exists():
                detail = f"{value} does not exist (a model directory or an ORG/NAME id is needed)"
            return f"cannot load --model {value}: {detail}"
    return None


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or value.count("/") != 1
