"""Failures as one line of words for the screens (never an exception class name)."""

from __future__ import annotations

from salut_tui.engine.types import ModelError


def describe_error(exc: BaseException) -> str:
    """One line in words for people; the traceback goes to the log, never onto the screen."""
    if isinstance(exc, ModelError):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip()
    return text or "it failed for a reason it did not give (the Logs screen has the details)"
