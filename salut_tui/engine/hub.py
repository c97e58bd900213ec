"""Download models from the Hugging Face Hub into the local Hugging Face cache.

`download_model` is a thin layer over `huggingface_hub.snapshot_download`: it asks only for the
files mlx-lm needs (mlx-lm's own allow patterns), turns the hub's progress bars into a
`progress(fraction, message)` callback, and returns the snapshot directory, which the model
registry then finds in the Hugging Face cache like any other cached model.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.std import tqdm as std_tqdm

Progress = Callable[[float, str], None]
# (bytes of the model on disk, bytes in all so far, bytes fetched in this run): the total grows
# as the hub client starts each file; resumed bytes count as on disk, not as fetched.
ByteProgress = Callable[[int, int, int], None]

# What mlx-lm downloads for a model; used when the installed mlx-lm does not export its list.
_FALLBACK_ALLOW_PATTERNS = [
    "*.json",
    "model*.safetensors",
    "*.py",
    "tokenizer.model",
    "*.tiktoken",
    "tiktoken.model",
    "*.txt",
    "*.jsonl",
    "*.jinja",
]


class DownloadError(Exception):
    """A model that could not be downloaded; the message says why (not found, offline...)."""


def allow_patterns() -> list[str]:
    """The file patterns mlx-lm itself downloads for a model."""
    from mlx_lm import utils

    return list(getattr(utils, "DEFAULT_ALLOW_PATTERNS", _FALLBACK_ALLOW_PATTERNS))


def _progress_bar_class(progress: Progress, on_bytes: ByteProgress | None = None) -> type[std_tqdm]:
    """A tqdm class that reports byte progress to `progress` instead of drawing a bar.

    It derives from plain tqdm, not huggingface_hub's subclass, so the hub does not disable it
    (it disables its own bars when stderr is not a terminal, e.g. under the UI); the text it would
    draw goes to an in-memory sink.
    """
    state = {"best": 0.0, "done": 0.0, "total": 0.0, "received": 0.0}

    class _ReportingBar(std_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            # The snapshot's aggregate bars: bytes on disk ("Reconstructing", resumed bytes
            # included) of all the files started so far, and bytes fetched ("Downloading").
            desc = str(self.desc)
            if on_bytes is not None and self.unit == "B":
                if desc.startswith("Downloading bytes"):
                    state["received"] = float(self.n)
                elif desc.startswith("Recon"):
                    state["done"], state["total"] = float(self.n), float(self.total or 0)
                done = int(state["done"])
                on_bytes(done, max(int(state["total"]), done), int(state["received"]))
            # Byte bars carry the transfer; the file-count bar would jump in coarse steps.
            if self.unit == "B" and self.total:
                fraction = min(1.0, self.n / self.total)
                if fraction > state["best"]:  # several byte bars run at once: never go back
                    state["best"] = fraction
                    progress(
                        fraction, f"downloaded {self.n / 1e6:.1f} of {self.total / 1e6:.1f} MB"
                    )
            return shown

    return _ReportingBar


def download_model(
    model_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    on_bytes: ByteProgress | None = None,
) -> Path:
    """Download `model_id` (e.g. `mlx-community/Qwen3-8B-MLX-4bit`) and return its local directory.

    Files already in the cache are not downloaded again. `endpoint` overrides the hub address
    (default: `$HF_ENDPOINT` or huggingface.co). Raises DownloadError with a readable message
    when the model does not exist, is gated, or the hub cannot be reached.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    report = progress or (lambda _fraction, _message: None)
    report(0.0, f"downloading {model_id}")
    try:
        path = snapshot_download(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=allow_patterns(),
            endpoint=endpoint,
            token=token,
            tqdm_class=_progress_bar_class(report, on_bytes),
        )
    except GatedRepoError as exc:
        raise DownloadError(f"{model_id}: gated model; accept its terms and log in: {exc}") from exc
    except RepositoryNotFoundError as exc:
        raise DownloadError(f"{model_id}: no such model on the hub") from exc
    except RevisionNotFoundError as exc:
        raise DownloadError(f"{model_id}: no revision {revision!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise DownloadError(f"{model_id}: hub unreachable and not in the cache: {exc}") from exc
    except HfHubHTTPError as exc:
        raise DownloadError(f"{model_id}: download failed: {exc}") from exc
    snapshot = Path(path)
    if not (snapshot / "config.json").is_file():
        raise DownloadError(
            f"{model_id}: downloaded, but it has no config.json (not an mlx-lm model)"
        )
    report(1.0, f"downloaded {model_id}")
    return snapshot
