"""Typed settings, where they are found, and how they are written back.

Search order for `salut.toml` (the first that exists wins; none is fine, defaults apply):
  1. the `--config FILE` option (it must exist),
  2. the `$SALUT_CONFIG` environment variable (it must exist),
  3. `<platform config dir>/salut.toml` (`~/.config/salut/salut.toml` on Linux,
     `~/Library/Application Support/salut/salut.toml` on macOS).
Command-line options override what the file says. Saving (`save_changes`) writes only the keys
that changed, through tomlkit, so the user's comments, order and layout stay as they were; the
whole result is validated before anything is written, and the file is replaced atomically (a
temporary file beside it, fsync, rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tomlkit.exceptions import ParseError

from salut_tui.keepalive import DEFAULT_KEEP_ALIVE, parse_keep_alive

APP_NAME = "salut"
DEFAULT_PORT = 7258
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_host(text: str) -> bool:
    """An IP address or a DNS host name (RFC 1123 labels); "" means every interface."""
    if text == "":
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split("."))


def is_host_port(text: str) -> bool:
    """`host:port` (an IPv6 host in brackets: `[::1]:7258`)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host != "" and is_host(host)


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


class ShardSetting(BaseModel):
    """One `[[shard]]` table: a model this node loads split over paired nodes when it starts."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """The model id (this node needs its files, and so does every participant)."""
    nodes: list[str] = Field(default_factory=list)
    """Names (or ids) of the peers that take part; empty: the fewest nodes it fits on."""
    mode: Literal["pipeline", "tensor"] = "pipeline"
    """pipeline: a range of layers per node; tensor: every layer split (fast links only)."""


class Settings(BaseModel):
    """Everything a node reads from salut.toml. Every field has a default."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, validate_assignment=True
    )

    host: str = "0.0.0.0"
    """Address the API server listens on (0.0.0.0: every interface)."""
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """Port of the OpenAI-compatible API (and of the peer link endpoint)."""
    api_key: str = ""
    """When not empty, every /v1 route needs `Authorization: Bearer <api_key>`."""
    node_name: str = ""
    """Name shown to people and peers; empty means the machine's host name."""
    data_dir: str = ""
    """Where identity keys, the trust store, converted models and state live; empty means the
    platform data dir (`~/.local/share/salut` on Linux)."""
    models_dir: str = ""
    """A directory of models: `<models_dir>/<org>/<name>/` (or `<org>--<name>`) holding config.json
    and safetensors. Empty means `<data_dir>/models`."""
    default_model: str = DEFAULT_MODEL
    """Model the UI's chat offers first, loaded at start when neither --model nor preload names
    one. API requests always name their model (a request without one is a 400)."""
    preload: list[str] = Field(default_factory=list)
    """Model ids loaded when the node starts."""
    models: dict[str, str] = Field(default_factory=dict)
    """Explicit model id to local path table; checked before models_dir and the HF cache."""
    max_batch_size: int = Field(16, ge=1, le=256)
    """How many requests the engine decodes together in one batch."""
    max_queue: int = Field(64, ge=1)
    """Requests waiting beyond this get 503 with Retry-After."""
    default_max_tokens: int = Field(2048, ge=1)
    """Completion length when a request gives no max_tokens."""
    memory_headroom_gb: float = Field(1.0, ge=0)
    """Memory kept free when deciding whether a model fits; a load that would eat into it is
    refused unless forced."""
    memory_limit_gb: float = Field(0.0, ge=0)
    """The most memory this node lets its models take (0: all the machine has); what it
    counts as free is capped by it less what its loaded models hold. For a node that shares the
    machine, and for tests that need a small node."""
    theme: str = "textual-dark"
    """UI theme: a built-in Textual theme name or the name of a file in themes/."""
    mode: Literal["cluster", "client-only", "solo"] = "cluster"
    """cluster: discover and pair; client-only: no engine, forward everything to peers;
    solo: no discovery and no peers."""
    peers: list[str] = Field(default_factory=list)
    """Peers listed by address (`host:port`), for networks that block multicast."""
    log_level: str = "INFO"
    """Log level for stderr (headless) and the Logs screen: DEBUG, INFO, WARNING or ERROR."""
    shutdown_grace: float = Field(10.0, ge=0)
    """Seconds a node stopping on SIGTERM/SIGINT lets in-flight requests finish (new ones get
    503 meanwhile); what is still running then ends with an error, never a normal finish."""
    keep_alive: str | int = DEFAULT_KEEP_ALIVE
    """How long a loaded model stays loaded with nobody using it before it is unloaded (and
    loaded again by the next request): a duration such as "30s", "5m", "1h", seconds, or -1 to
    keep models loaded until unloaded by hand. A load or a request may give its own."""

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str | int) -> str | int:
        parse_keep_alive(value)  # raises ValueError with the reason
        return value

    shard: list[ShardSetting] = Field(default_factory=list)
    """`[[shard]]` tables: models loaded split over paired nodes at start, this node
    coordinating (it waits up to a minute for the peers named to be linked)."""

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not is_host(value):
            raise ValueError(f"{value!r} is not an IP address or a host name")
        return value

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not is_host_port(p)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: a peer is written host:port")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    # ---- derived locations -------------------------------------------------------------
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def models_path(self) -> Path:
        return (
            Path(self.models_dir).expanduser() if self.models_dir else self.data_path() / "models"
        )

    def display_name(self) -> str:
        import socket

        return self.node_name or socket.gethostname()


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "salut.toml"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Apply the search order. Returns the file to read, or None when defaults apply."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file given with --config does not exist")
        return path
    env = os.environ.get("SALUT_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file named by $SALUT_CONFIG does not exist")
        return path
    path = default_config_path()
    return path if path.is_file() else None


def parse_settings(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: key '{key}': {message}")
        raise ConfigError("\n".join(problems)) from None


def load_settings(path: Path | None) -> Settings:
    """Read and validate a config file (None: all defaults)."""
    if path is None:
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_settings(data, str(path))


def save_changes(path: Path, changes: Mapping[str, Any]) -> Settings:
    """Write `changes` (key -> new value) into the file at `path`, keeping every other key, the
    comments and the layout; returns the settings the file now holds.

    The file as it will be is validated first: a bad value raises ConfigError (naming the file and
    the key) and nothing is written.
    """
    doc = _read_document(path)
    for key, value in changes.items():
        doc[key] = value
    settings = parse_settings(doc.unwrap(), str(path))
    _write_atomically(path, tomlkit.dumps(doc))
    return settings


def save_settings(settings: Settings, path: Path) -> None:
    """Write the keys where `settings` differs from what the file holds (see `save_changes`)."""
    on_disk = load_settings(path if path.is_file() else None).model_dump(mode="json")
    wanted = settings.model_dump(mode="json")
    save_changes(path, {k: v for k, v in wanted.items() if v != on_disk.get(k)})


def _read_document(path: Path) -> tomlkit.TOMLDocument:
    if not path.is_file():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename over the target (then fsync the dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".salut-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)  # keep a 0600 file (it may hold a key)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
