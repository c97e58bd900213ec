"""How long a model stays loaded with nobody using it (pure: durations and deadlines).

A keep-alive is given as Ollama gives it: a duration string ("30s", "5m", "1h30m"), a number of
seconds, or a negative number ("-1") to keep the model loaded until it is unloaded by hand. It
applies from the end of the model's last request; a model busy with a request never expires.
In seconds inside: `FOREVER` (None) for "keep it", 0 for "unload as soon as it is idle".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FOREVER: float | None = None
DEFAULT_KEEP_ALIVE = "30m"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_keep_alive(value: str | int | float) -> float | None:
    """Seconds, or FOREVER for a negative value; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration such as '5m', or seconds")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else float(value)
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return FOREVER if number < 0 else number
    if text.startswith("-"):
        return FOREVER
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"keep_alive {value!r} is not a duration: use e.g. '30s', '5m', '1h', seconds, or -1"
        )
    return total


def describe(seconds: float | None) -> str:
    if seconds is None:
        return "kept loaded"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class _Model:
    keep_alive: float | None
    last_used: float
    busy: int = 0


@dataclass
class KeepAlive:
    """Per-model deadlines. Times are passed in (monotonic seconds), so this is testable."""

    default: float | None
    _models: dict[str, _Model] = field(default_factory=dict)

    def loaded(self, model_id: str, now: float, keep_alive: float | str | None = "default") -> None:
        """A model was loaded; `keep_alive` "default" means the configured one."""
        chosen = self.default if keep_alive == "default" else keep_alive
        assert not isinstance(chosen, str)
        self._models[model_id] = _Model(chosen, now)

    def unloaded(self, model_id: str) -> None:
        self._models.pop(model_id, None)

    def began(self, model_id: str, now: float, keep_alive: float | str | None = "unset") -> None:
        """A request started on the model; one that names a keep-alive sets the model's."""
        model = self._models.get(model_id)
        if model is None:
            return
        model.busy += 1
        model.last_used = now
        if keep_alive != "unset":
            assert not isinstance(keep_alive, str)
            model.keep_alive = keep_alive

    def ended(self, model_id: str, now: float) -> None:
        model = self._models.get(model_id)
        if model is not None:
            model.busy = max(0, model.busy - 1)
            model.last_used = now

    def time_left(self, model_id: str, now: float) -> float | None:
        """Seconds until it is unloaded; FOREVER when kept or busy (or unknown)."""
        model = self._models.get(model_id)
        if model is None or model.keep_alive is None or model.busy:
            return FOREVER
        return max(0.0, model.last_used + model.keep_alive - now)

    def expired(self, now: float) -> list[str]:
        return [m for m in self._models if self.time_left(m, now) == 0.0]
