"""Typed settings, where they are found, and how they are written back.

Search order for `salut.toml` (the first that exists wins; none is fine, defaults apply):
  1. the `--config FILE` option (it must exist),
  2. the `$SALUT_CONFIG` environment variable (it must exist),
  3. `<platform config dir>/salut.toml` (`~/.config/salut/salut.toml` on Linux,
     `~/Library/Application Support/salut/salut.toml` on macOS).
Command-line options override what the file says. Saving writes the whole file with tomli-w to a
temporary file beside it and renames it over the old one, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from salut_tui.keepalive import DEFAULT_KEEP_ALIVE, parse_keep_alive

APP_NAME = "salut"
DEFAULT_PORT = 7258
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


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
    theme: str = "textual-dark"
    """UI theme: a built-in Textual theme name or the name of a file in themes/."""
    mode: Literal["cluster", "client-only", "solo"] = "cluster"
    """cluster: discover and pair; client-only: no engine, forward everything to peers;
    solo: no discovery and no peers."""
    peers: list[str] = Field(default_factory=list)
    """Peers listed by address (`host:port`), for networks that block multicast."""
    log_level: str = "INFO"
    """Log level for stderr (headless) and the Logs screen."""
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
            problems.append(f"{source}: key '{key}': {err['msg']}")
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


def settings_to_toml(settings: Settings) -> str:
    data = settings.model_dump(mode="json", exclude_defaults=False)
    return tomli_w.dumps(data)


def save_settings(settings: Settings, path: Path) -> None:
    """Write atomically: temp file in the same directory, fsync, rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = settings_to_toml(settings)
    fd, tmp = tempfile.mkstemp(prefix=".salut-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
