"""The control routes' client: how `salut pair/peers/unpair` reach a running node.

Each call goes to the node's control routes on its host and port, with the token that node wrote
into its data dir (so only someone who can read that directory can drive pairing). The token file
also holds the node's address, so the data dir alone is usually enough. The argparse side of
these commands lives in the CLI (`salut_tui.cli.cluster`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from salut_tui.config import Settings
from salut_tui.pairing.files import ensure_private_dir, write_private_file

CONTROL_PREFIX = "/salut/control"
CONTROL_HEADER = "X-Salut-Control"
CONTROL_TOKEN_FILE = "control.token"


class CommandError(Exception):
    pass


def write_control_token(settings: Settings, port: int, token: str) -> None:
    """`<host> <port> <token>` into the data dir, mode 0600: where and how to reach this node's
    control routes (a node bound to every interface is reached on 127.0.0.1)."""
    bound = settings.host not in ("", "0.0.0.0", "::")
    line = f"{settings.host if bound else '127.0.0.1'} {port} {token}"
    data = settings.data_path()
    ensure_private_dir(data)
    write_private_file(data / CONTROL_TOKEN_FILE, line.encode())


def read_control_token(data_dir: Path) -> tuple[str, int, str] | None:
    """(host, port, token) of the node that last ran with this data dir, or None."""
    try:
        host, port, token = (data_dir / CONTROL_TOKEN_FILE).read_text().split()
        return host, int(port), token
    except (OSError, ValueError):
        return None


def call_control(
    data_dir: Path | None,
    method: str,
    path: str,
    body: dict | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """One control request to the node whose data dir is `data_dir` (or at host:port with the
    `token` given); its JSON answer."""
    with _open(data_dir, method, path, body, host, port, timeout, token) as response:
        return json.loads(response.read())


def stream_control(
    data_dir: Path,
    method: str,
    path: str,
    body: dict | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    timeout: float = 600.0,
) -> Iterator[dict]:
    """A control request answered with one JSON object per line (progress), as they come."""
    with _open(data_dir, method, path, body, host, port, timeout) as response:
        for line in response:
            if line.strip():
                yield json.loads(line)


def _open(
    data_dir: Path | None,
    method: str,
    path: str,
    body: dict | None,
    host: str | None,
    port: int | None,
    timeout: float,
    token: str | None = None,
) -> Any:
    if token is None or host is None or port is None:
        found = read_control_token(data_dir) if data_dir is not None else None
        if found is None:
            token_file = (data_dir or Path(".")) / CONTROL_TOKEN_FILE
            raise CommandError(
                f"no running node found with data dir {data_dir} ({token_file} missing)"
            )
        host_text, port_number, token_text = found
        port = port or port_number
        host = host or host_text
        token = token or token_text
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{host}:{port}{CONTROL_PREFIX}{path}", data=data, method=method,
        headers={CONTROL_HEADER: token, "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise CommandError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"cannot reach the node at {host}:{port}: {exc}") from None
