"""How figures are written on screen, and the switch that hides the ones that vary run to run.

Snapshot tests compare screens character by character, so an app built with
`mask_volatile=True` writes a fixed placeholder instead of uptime, memory, ports and rates.
"""

from __future__ import annotations

MASK = "··"


class Figures:
    def __init__(self, mask_volatile: bool = False) -> None:
        self.mask_volatile = mask_volatile

    def volatile(self, text: str) -> str:
        return MASK if self.mask_volatile else text

    def bytes(self, value: int | None, *, volatile: bool = False) -> str:
        if value is None:
            return "-"
        text = human_bytes(value)
        return self.volatile(text) if volatile else text

    def seconds(self, value: float | None) -> str:
        if value is None:
            return "-"
        return self.volatile(f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s")

    def rate(self, value: float | None) -> str:
        if value is None:
            return "-"
        return self.volatile(f"{value:.1f}")

    def duration(self, seconds: float) -> str:
        seconds = int(seconds)
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
        return self.volatile(text)


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Control characters (a random test model emits plenty) would move the terminal's cursor.
_CONTROL = {c: "�" for c in range(32) if chr(c) not in "\n\t"} | {127: "�"}


def printable(text: str) -> str:
    return text.translate(_CONTROL)
