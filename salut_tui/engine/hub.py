"""Download models from the Hugging Face Hub into the local Hugging Face cache.

`download_model` asks only for the files mlx-lm needs (mlx-lm's own allow patterns). It fetches
the large (LFS) files itself, resumably (`hub_fetch.py`: a download killed mid-file goes on from
where it stopped), then lets `huggingface_hub.snapshot_download` fetch the small files and link
everything into the snapshot, which the model registry then finds in the Hugging Face cache like
any other cached model. Progress goes to `progress(fraction, message)` and, in bytes, to
`on_bytes` (`hub_progress.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from salut_tui.engine.hub_fetch import (
    DownloadError,
    HubFile,
    RepoCache,
    fetch_all,
    list_files,
    plan_fetch,
    strip_auth_off_hub,
)
from salut_tui.engine.hub_progress import ByteProgress, ByteTally, Progress, hub_bar_class

__all__ = ["ByteProgress", "DownloadError", "Progress", "allow_patterns", "download_model"]

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


def allow_patterns() -> list[str]:
    """The file patterns mlx-lm itself downloads for a model."""
    from mlx_lm import utils

    return list(getattr(utils, "DEFAULT_ALLOW_PATTERNS", _FALLBACK_ALLOW_PATTERNS))


def _fetch_large_files(
    model_id: str, revision: str | None, cache_dir: Path, endpoint: str | None,
    token: str | bool | None, tally_for: Callable[[int, int], ByteTally],
) -> ByteTally:  # fmt: skip
    """Fetch the model's LFS files into the cache (resumably) and return the tally the rest of
    the download goes on counting in. Offline or with the Hub down, nothing is fetched here:
    `snapshot_download` then finds the cached snapshot or says why not."""
    import httpx2
    from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import build_hf_headers

    if constants.is_offline_mode():
        return tally_for(0, 0)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        commit = api.repo_info(model_id, revision=revision or constants.DEFAULT_REVISION).sha
        assert commit is not None, "the Hub names the commit of a revision"
        files = list_files(api, model_id, commit, allow_patterns())
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise
    except (httpx2.TransportError, OfflineModeIsEnabled, HfHubHTTPError):
        return tally_for(0, 0)
    repo = RepoCache.of(cache_dir, model_id)
    present = {f.path for f in files if repo.has(commit, f)}
    partials = {f.path: repo.partial_size(f) for f in files if f.sha256 is not None}
    plan = plan_fetch(files, present, partials)
    tally = tally_for(plan.total, plan.on_disk)
    tally.adjust(0)  # the first report: what is on disk already

    def url_of(f: HubFile) -> tuple[str, dict[str, str]] | None:
        url = hf_hub_url(model_id, f.path, revision=commit, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
        if meta.etag != f.sha256:  # the cache would name its blob otherwise: leave it to the hub
            return None
        return meta.location, strip_auth_off_hub(url, meta.location, build_hf_headers(token=token))

    fetch_all(plan, repo, url_of, tally)
    return tally


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
    import httpx2
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    report = progress or (lambda _fraction, _message: None)
    report(0.0, f"downloading {model_id}")
    cache = Path(cache_dir or constants.HF_HUB_CACHE).expanduser().resolve()
    try:
        tally = _fetch_large_files(
            model_id, revision, cache, endpoint, token,
            lambda total, on_disk: ByteTally(total, on_disk, on_bytes, report),
        )  # fmt: skip
        path = snapshot_download(
            model_id,
            revision=revision,
            cache_dir=cache,
            allow_patterns=allow_patterns(),
            endpoint=endpoint,
            token=token,
            tqdm_class=hub_bar_class(tally),
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
    except httpx2.TransportError as exc:  # the connection kept failing: what arrived is kept
        raise DownloadError(
            f"{model_id}: download interrupted ({exc}); run it again to go on from there"
        ) from exc
    except OSError as exc:
        raise DownloadError(f"{model_id}: cannot write to {cache}: {exc}") from exc
    tally.finish()
    snapshot = Path(path)
    if not (snapshot / "config.json").is_file():
        raise DownloadError(
            f"{model_id}: downloaded, but it has no config.json (not an mlx-lm model)"
        )
    report(1.0, f"downloaded {model_id}")
    return snapshot
