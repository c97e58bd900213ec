"""The loggers that say what a node does, and a level set on them for a while.

The terminal UI's Logs screen asks for DEBUG by setting it here: in-process on the loggers it
shares with the node, attached over a control route on the node's own. Whoever sets a level
puts the old ones back when done (the UI when it exits, the node when the last attached UI
detaches), so the node returns to its configured level.
"""

from __future__ import annotations

import logging

# Salut's own loggers and the API access log (one line per request); the root logger is left
# alone, so libraries' chatter stays where the configuration put it.
NODE_LOGGERS = ("salut_tui", "salut", "aiohttp.access")

LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


def level_number(name: str) -> int:
    """A level's number from its name (any case); ValueError for one that is not in LEVELS."""
    try:
        return LEVELS[name.upper()]
    except KeyError:
        raise ValueError(f"not a log level: {name!r} (one of {', '.join(LEVELS)})") from None


class LoggerLevels:
    """Sets one level on `names`; the first `set` keeps the levels they had, `restore` puts
    them back (and a later `set` keeps them again)."""

    def __init__(self, names: tuple[str, ...] = NODE_LOGGERS) -> None:
        self.names = names
        self._saved: dict[str, int] | None = None

    @property
    def overridden(self) -> bool:
        return self._saved is not None

    def set(self, level: int) -> None:
        """Records below `level` are not even created from now on."""
        if self._saved is None:
            self._saved = {name: logging.getLogger(name).level for name in self.names}
        for name in self.names:
            logging.getLogger(name).setLevel(level)

    def restore(self) -> None:
        if self._saved is None:
            return
        for name, level in self._saved.items():
            logging.getLogger(name).setLevel(level)
        self._saved = None

    def effective(self) -> str:
        """The level Salut's records are created at now, by name ("INFO")."""
        return logging.getLevelName(logging.getLogger(self.names[0]).getEffectiveLevel())
