"""Theme files: Textual themes written as TOML, found by name in the `themes/` directories.

A file `themes/<name>.toml` holds the fields of `textual.theme.Theme` (name, primary, secondary,
accent, background, surface, panel, foreground, warning, error, success, dark, variables).
Directories searched, first hit wins: `themes/` beside the config file, `<data_dir>/themes`, the
`themes/` directory of a source checkout, and `<prefix>/share/salut/themes` where pip installs the
repository's themes with the wheel.
"""

from __future__ import annotations

import logging
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

from textual.theme import Theme

import salut_tui
from salut_tui.config import Settings

log = logging.getLogger(__name__)

_THEME_FIELDS = {f.name for f in fields(Theme)}


def theme_dirs(settings: Settings, config_path: Path | None) -> list[Path]:
    dirs = []
    if config_path is not None:
        dirs.append(config_path.parent / "themes")
    dirs.append(settings.data_path() / "themes")
    dirs.append(Path(salut_tui.__file__).resolve().parent.parent / "themes")
    dirs.append(Path(sys.prefix) / "share" / "salut" / "themes")
    return dirs


def read_theme(path: Path) -> Theme:
    """Parse one theme file; raises ValueError with the file name on a bad file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = set(data) - _THEME_FIELDS
    if unknown:
        raise ValueError(f"{path}: unknown theme keys {sorted(unknown)}")
    data.setdefault("name", path.stem)
    if "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least 'primary'")
    return Theme(**data)


def load_theme_files(dirs: list[Path]) -> list[Theme]:
    """Every readable theme in the directories; a bad file is logged and skipped."""
    seen: dict[str, Theme] = {}
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = read_theme(path)
            except (ValueError, TypeError) as exc:
                log.warning("skipping theme file %s", exc)
                continue
            seen.setdefault(theme.name, theme)
    return list(seen.values())
