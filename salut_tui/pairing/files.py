"""Private files in the node's data dir (identity key, trust store, control token).

Written so that a crash never leaves half a file and another local user cannot read or redirect
them: a fresh temp name created with O_EXCL|O_NOFOLLOW (a planted file or symlink makes the
write fail instead of following it), fsync, atomic rename, then an fsync of the directory so the
rename itself survives a power cut. The data dir is 0700.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class DataFileError(Exception):
    """A file in the data dir cannot be used; the message names it and says what to do."""


def ensure_private_dir(path: Path) -> None:
    """Create `path` (mode 0700), or tighten an existing one that group/others can enter."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("data dir %s had mode %o; set it to 0700", path, mode)
        path.chmod(PRIVATE_DIR_MODE)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, readable by the owner only."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_private_file(path: Path) -> bytes:
    """Read a private file without following a symlink; fix (and say so) a mode that lets
    group or others read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as fh:
        mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        if mode & 0o077:
            os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)
            log.warning(
                "%s was readable by group or others (mode %o): changed it to 0600. If someone "
                "else could read it, consider it leaked",
                path,
                mode,
            )
        return fh.read()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # some systems cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
