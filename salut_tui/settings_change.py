"""Changing a running node's settings (the Settings screen, in-process or attached): write only
the changed keys into the node's own config file (comments kept: `config.save_changes`), then
apply at once what can be, and say what waits for a restart.

The node does this on its side for an attached UI too, so an attached Settings screen edits the
file of the node it shows, never the attaching process's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salut_tui.config import Settings, save_changes

# The server, the cluster and the peer list are set up with these at start; `preload` is read
# at start only. Everything else applies at once.
RESTART_KEYS = ("host", "port", "mode", "peers")
NEXT_START_KEYS = ("preload",)


@dataclass(frozen=True, slots=True)
class SavedSettings:
    """What a save did: the file written, the settings it now holds, the keys applied at once,
    and those that take effect at the next start."""

    path: Path
    settings: Settings
    live: tuple[str, ...]
    restart: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "settings": self.settings.model_dump(mode="json"),
            "live": list(self.live),
            "restart": list(self.restart),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SavedSettings:
        return cls(
            Path(str(data["path"])),
            Settings.model_validate(data["settings"]),
            tuple(str(k) for k in data["live"]),
            tuple(str(k) for k in data["restart"]),
        )


def change_settings(current: Settings, path: Path, changes: Mapping[str, Any]) -> SavedSettings:
    """Save `changes` into `path` (ConfigError, nothing written, when the result is not valid;
    OSError when it cannot be written), then set the live keys on `current` in place."""
    updated = save_changes(path, changes)
    live = tuple(k for k in changes if k not in RESTART_KEYS and k not in NEXT_START_KEYS)
    for key in live:
        setattr(current, key, getattr(updated, key))
    restart = tuple(k for k in changes if k in RESTART_KEYS or k in NEXT_START_KEYS)
    return SavedSettings(path, updated, live, restart)
