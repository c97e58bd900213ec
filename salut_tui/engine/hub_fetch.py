"""Resumable fetch of a model's large (LFS) files into the Hugging Face cache.

huggingface_hub 2.4 writes each attempt at a file to its own uuid-named temporary file and deletes
it when the attempt fails, so a download killed in the middle of a 5 GB weight file starts that
file again. Salut fetches the LFS files itself before `snapshot_download` runs: HTTP Range requests
append to one stable partial file per blob (`blobs/<sha256>.salut-partial`, next to the blob it
becomes, so the final rename is atomic and the cache's own cleanup removes it with the repo), the
SHA-256 the Hub lists for the file is checked before the blob takes its place under the name
huggingface_hub gives it (`blobs/<etag>`, the SHA-256 for an LFS file), and `snapshot_download`
then finds the blob and only links it into the snapshot. Small (non-LFS) files are left to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from salut_tui.engine.hub_progress import ByteTally

if TYPE_CHECKING:
    import httpx2
    from huggingface_hub import HfApi

CHUNK = 1 << 20
PARTIAL_SUFFIX = ".salut-partial"
RETRIES = 5  # transient failures in a row, no byte between them, before giving up (as the hub's)
WORKERS = 4  # LFS files fetched at once (huggingface_hub runs 8 downloads)


class DownloadError(Exception):
    """A model that could not be downloaded; the message says why (not found, offline...)."""


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of a repository at a commit, as the Hub's tree listing gives it."""

    path: str
    size: int
    blob_id: str  # the git blob id: the cache's name for a small file's blob
    sha256: str | None = None  # an LFS file's content hash: its blob's name, and what is checked

    @property
    def blob_name(self) -> str:
        return self.sha256 or self.blob_id


@dataclass(frozen=True, slots=True)
class FetchPlan:
    fetch: tuple[HubFile, ...]  # LFS files whose blob is not in the cache yet
    partials: dict[str, int]  # bytes already in each one's partial file (by path)
    on_disk: int  # bytes of the model already on disk: whole files and usable partials
    total: int  # bytes of the model in all


def plan_fetch(files: Iterable[HubFile], present: set[str], partials: dict[str, int]) -> FetchPlan:
    """Which LFS files to fetch and how much of the model is on disk (`present`: paths whose
    blob is in the cache; `partials`: partial file sizes by path). A partial longer than its file
    is worth nothing: it is started again."""
    files = list(files)
    fetch = tuple(f for f in files if f.sha256 is not None and f.path not in present)
    usable = {f.path: n for f in fetch if (n := partials.get(f.path, 0)) <= f.size}
    on_disk = sum(f.size for f in files if f.path in present) + sum(usable.values())
    return FetchPlan(fetch, usable, on_disk, sum(f.size for f in files))


def list_files(api: HfApi, repo_id: str, commit: str, patterns: list[str]) -> list[HubFile]:
    """The files of `repo_id` at `commit` that match `patterns` (one tree listing call)."""
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    entries = [
        f
        for f in api.list_repo_tree(repo_id, recursive=True, revision=commit)
        if isinstance(f, RepoFile)
    ]
    wanted = set(filter_repo_objects([f.path for f in entries], allow_patterns=patterns))
    return [
        HubFile(f.path, f.lfs.size, f.blob_id, f.lfs.sha256)
        if f.lfs is not None
        else HubFile(f.path, f.size, f.blob_id)
        for f in entries
        if f.path in wanted
    ]


@dataclass(frozen=True, slots=True)
class RepoCache:
    """Where huggingface_hub's cache keeps one repository (`<cache>/models--org--name`)."""

    cache_dir: Path
    folder: str

    @classmethod
    def of(cls, cache_dir: Path, repo_id: str) -> RepoCache:
        return cls(cache_dir, "models--" + repo_id.replace("/", "--"))

    @property
    def blobs(self) -> Path:
        return self.cache_dir / self.folder / "blobs"

    def blob(self, name: str) -> Path:
        return self.blobs / name

    def partial(self, name: str) -> Path:
        return self.blob(name + PARTIAL_SUFFIX)

    def lock(self, name: str) -> Path:  # the lock huggingface_hub takes for the same blob
        return self.cache_dir / ".locks" / self.folder / f"{name}.lock"

    def pointer(self, commit: str, path: str) -> Path:
        return self.cache_dir / self.folder / "snapshots" / commit / path

    def has(self, commit: str, f: HubFile) -> bool:
        return self.blob(f.blob_name).is_file() or (
            f.sha256 is None and self.pointer(commit, f.path).exists()
        )

    def partial_size(self, f: HubFile) -> int:
        try:
            return self.partial(f.blob_name).stat().st_size
        except FileNotFoundError:
            return 0


def check_space(cache: RepoCache, plan: FetchPlan) -> None:
    left = sum(f.size - plan.partials.get(f.path, 0) for f in plan.fetch)
    where = cache.blobs
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if left > free:
        raise DownloadError(
            f"not enough disk space in {where}: {left / 1e9:.1f} GB more needed, "
            f"{free / 1e9:.1f} GB free"
        )


def fetch_all(
    plan: FetchPlan, cache: RepoCache,
    url_of: Callable[[HubFile], tuple[str, dict[str, str]] | None], tally: ByteTally,
) -> None:  # fmt: skip
    """Fetch every file of the plan (several at once); `url_of` gives where a file's bytes are
    and the headers to send there, or None to leave the file to huggingface_hub."""
    if not plan.fetch:
        return
    check_space(cache, plan)

    def one(f: HubFile) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        counted = plan.partials.get(f.path, 0)
        for attempt in range(2):
            where = url_of(f)
            if where is None:
                return
            try:
                fetch_blob(f, *where, cache, tally, counted)
                return
            except HfHubHTTPError as exc:
                # A signed CDN address that expired during a long download: ask for a new one.
                if attempt or exc.response is None or exc.response.status_code not in (403, 410):
                    raise
                counted = cache.partial_size(f)  # what the tally now counts for this file

    with ThreadPoolExecutor(max_workers=min(WORKERS, len(plan.fetch))) as pool:
        for _ in pool.map(one, plan.fetch):  # the first failure raises here
            pass


def strip_auth_off_hub(url: str, location: str, headers: dict[str, str]) -> dict[str, str]:
    """The token goes to the Hub's own host only, never to a CDN it redirects to."""
    if urlsplit(url)[:2] == urlsplit(location)[:2]:
        return headers
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def fetch_blob(
    f: HubFile, url: str, headers: dict[str, str], cache: RepoCache, tally: ByteTally,
    counted: int = 0,
) -> None:  # fmt: skip
    """Fetch `f` into its blob, going on from its partial file (`counted`: the partial's bytes
    the tally already has as on disk). The blob appears only with the right SHA-256."""
    from huggingface_hub.utils import WeakFileLock

    assert f.sha256 is not None
    blob, path = cache.blob(f.sha256), cache.partial(f.sha256)
    cache.lock(f.sha256).parent.mkdir(parents=True, exist_ok=True)
    cache.blobs.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(cache.lock(f.sha256))):
        if blob.is_file():  # another download finished it meanwhile
            tally.adjust(f.size - counted)
            return
        for _ in range(2):  # bad bytes once: start the file again, once
            with path.open("ab") as out:
                partial = _Partial(out, path, f.size, tally, counted)
                _fill(partial, url, headers)
                good = partial.digest.hexdigest() == f.sha256 and partial.have == f.size
            if good:
                os.replace(path, blob)
                return
            tally.adjust(-partial.have)
            path.unlink()
            counted = 0
        raise DownloadError(f"{f.path}: the bytes received twice do not match the Hub's SHA-256")


class _Partial:
    """A blob's partial file open for appending, its length and the SHA-256 of its bytes."""

    def __init__(self, out: BinaryIO, path: Path, size: int, tally: ByteTally, counted: int):
        self.out, self.size, self.tally = out, size, tally
        self.digest = hashlib.sha256()
        self.have = out.tell()
        if self.have > size:  # longer than the file: worth nothing
            self.restart(counted)
        else:
            tally.adjust(self.have - counted)  # it changed since the plan looked (another run)
            with path.open("rb") as existing:
                while block := existing.read(CHUNK):
                    self.digest.update(block)

    def append(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.out.flush()  # each chunk reaches the OS as it comes: a killed process loses none
        self.digest.update(chunk)
        self.have += len(chunk)
        self.tally.fetched(len(chunk))

    def restart(self, counted: int | None = None) -> None:
        self.out.truncate(0)
        self.tally.adjust(-(self.have if counted is None else counted))
        self.have, self.digest = 0, hashlib.sha256()


def _fill(partial: _Partial, url: str, headers: dict[str, str]) -> None:
    """GET the rest of the file into `partial`, going on after transient failures."""
    import httpx2

    failures = 0
    while partial.have < partial.size:
        before = partial.have
        try:
            _get_rest(partial, url, headers)
        except httpx2.TransportError:  # dropped, reset, timed out: go on from what arrived
            failures = 0 if partial.have > before else failures + 1
            if failures >= RETRIES:
                raise
            time.sleep(min(2.0, 0.25 * (failures + 1)))
            continue
        if partial.have == before:
            break  # an empty answer: the size check after this says what is wrong


def _get_rest(partial: _Partial, url: str, headers: dict[str, str]) -> None:
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, hf_raise_for_status

    asked = {**headers, "Accept-Encoding": "identity"}  # the bytes as stored: offsets hold
    if partial.have:
        asked["Range"] = f"bytes={partial.have}-"
    session: httpx2.Client = get_session()
    with session.stream(
        "GET", url, headers=asked, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
    ) as response:
        hf_raise_for_status(response)
        if partial.have and not _continues(response, partial.have):
            partial.restart()  # the server sent the whole file (it ignored Range): from 0
        for chunk in response.iter_bytes():  # as they arrive: a kill loses none written
            partial.append(chunk)
            if partial.have > partial.size:
                return  # more than the file holds: the check fails, it starts again


def _continues(response: httpx2.Response, offset: int) -> bool:
    """The answer is the rest of the file from `offset` (206 with a matching Content-Range)."""
    if response.status_code != 206:
        return False
    unit, _, spec = response.headers.get("Content-Range", "").partition(" ")
    return unit == "bytes" and spec.split("-", 1)[0] == str(offset)
