"""Names other machines chose (mDNS, the pairing hello, the listed-peer hello) are data: they
are cleaned once where they enter, so no terminal escape, bell or bidi override ever reaches
`owned_by`, `salut peers`, a log line or the UI."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 64
# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte ones.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI, e.g. ESC[31m
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, e.g. a window title or a hyperlink
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
    r"|\x1b[@-_]?"  # any other ESC (and a lone one)
)


def clean_name(text: object, limit: int = MAX_NAME) -> str:
    """`text` without escape sequences or control/format characters, trimmed to `limit`."""
    raw = _ESCAPES.sub("", str(text))
    kept = "".join(" " if ch in "\t\n\r" else ch for ch in raw if ch in "\t\n\r" or _printable(ch))
    return " ".join(kept.split())[:limit]


def _printable(ch: str) -> bool:
    # Category C*: controls (C0, C1), format (bidi overrides, zero-width), surrogates, private
    # use, unassigned.
    return not unicodedata.category(ch).startswith("C")
