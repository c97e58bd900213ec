"""download_model against a local stand-in for the Hugging Face Hub.

The server implements the endpoints `huggingface_hub.snapshot_download` and Salut's own LFS fetch
call (read from their source): the revision API (`/api/models/<id>/revision/<rev>`, giving the
commit sha), the tree API (`/api/models/<id>/tree/<commit>`, giving each file's size and oid, and
for LFS files their SHA-256), and `HEAD`/`GET` on `/<id>/resolve/<commit>/<file>` with the headers
the real Hub sends: ETag, X-Repo-Commit and Content-Length for a small file; for an LFS file a 302
to a CDN on another origin with X-Linked-Etag (its SHA-256) and X-Linked-Size. The CDN answers
Range requests (206), or ignores them when told to, and can stall or drop a body after N bytes.
It serves the tiny test model plus files mlx-lm does not want, so the test also proves the allow
patterns are applied.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import mlx.core as mx
import pytest
from aiohttp import web

from salut_tui.engine.hub import DownloadError, allow_patterns, download_model

REPO_ID = "salut-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Served but not matched by mlx-lm's allow patterns: must not be downloaded.
UNWANTED = {"README.md": b"# tiny\n", "pytorch_model.bin": b"\0" * 1024}
BODY_CHUNK = 64 * 1024


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(name: str) -> bool:  # what a model repo's .gitattributes sends to LFS
    return name.endswith((".safetensors", ".bin"))


def _pointer(data: bytes) -> bytes:  # the LFS pointer file git holds instead of the content
    sha = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    )


class FakeHub:
    """The few Hub routes snapshot_download uses, serving one repository at one commit, and the
    CDN its LFS files redirect to (a second app, served on another port: another origin)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        self.served = 0  # body bytes sent by GET (hub and CDN)
        self.cdn_served = 0  # of which the CDN's (LFS files)
        self.tamper = False  # the CDN flips the first byte of every body it sends
        self.refuse: set[int] = set()  # CDN GETs (1 = the first) answered 403, as an expired URL
        self.cdn_url = ""  # set once the CDN app listens
        self.ranges: list[str | None] = []  # the Range header of each CDN GET
        self.ignore_range = False  # answer 200 with the whole file, as a server without ranges
        self.stall_after: int | None = None  # bytes of a body after which the CDN stops sending
        self.release = asyncio.Event()  # ends a stalled body
        self.drop_after: int | None = None  # bytes of one body after which it drops the connection

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}/revision/{rev}", self.revision)
        app.router.add_get("/api/models/{org}/{name}/tree/{rev}", self.tree)
        # add_get also answers HEAD, which hf_hub_download sends first for the metadata.
        app.router.add_get("/{org}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        return app

    def cdn_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/lfs/{sha256}", self.cdn)
        return app

    def _check_repo(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path))
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        if repo != REPO_ID:
            raise web.HTTPNotFound(headers={"X-Error-Code": "RepoNotFound"})
        if request.match_info["rev"] not in ("main", COMMIT):
            raise web.HTTPNotFound(headers={"X-Error-Code": "RevisionNotFound"})

    async def revision(self, request: web.Request) -> web.Response:
        self._check_repo(request)
        siblings = [{"rfilename": name} for name in sorted(self.files)]
        return web.json_response(
            {"id": REPO_ID, "modelId": REPO_ID, "sha": COMMIT, "siblings": siblings}
        )

    async def tree(self, request: web.Request) -> web.Response:
        self._check_repo(request)
        entries = []
        for name, data in sorted(self.files.items()):
            entry = {"type": "file", "path": name, "size": len(data), "oid": _git_blob_oid(data)}
            if _is_lfs(name):
                pointer = _pointer(data)
                entry["oid"] = _git_blob_oid(pointer)
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                    "pointerSize": len(pointer),
                }  # fmt: skip
            entries.append(entry)
        return web.json_response(entries)

    async def resolve(self, request: web.Request) -> web.Response:
        self._check_repo(request)
        name = request.match_info["path"]
        data = self.files.get(name)
        if data is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"})
        if _is_lfs(name):  # the real Hub: a redirect to the CDN, the file's metadata on it
            sha256 = hashlib.sha256(data).hexdigest()
            raise web.HTTPFound(
                f"{self.cdn_url}/lfs/{sha256}",
                headers={
                    "X-Repo-Commit": COMMIT, "ETag": f'"{_git_blob_oid(_pointer(data))}"',
                    "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                },
            )  # fmt: skip
        headers = {
            "ETag": f'"{_git_blob_oid(data)}"',
            "X-Repo-Commit": COMMIT,
            "Accept-Ranges": "bytes",
        }
        if request.method == "GET":
            self.served += len(data)
        return web.Response(body=data, headers=headers, content_type="application/octet-stream")

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        by_sha = {hashlib.sha256(d).hexdigest(): d for n, d in self.files.items() if _is_lfs(n)}
        data = by_sha.get(request.match_info["sha256"])
        if data is None:
            raise web.HTTPNotFound()
        asked = request.headers.get("Range")
        self.ranges.append(asked)
        if len(self.ranges) in self.refuse:
            raise web.HTTPForbidden(text="Request has expired")
        start = 0
        response = web.StreamResponse(headers={"Accept-Ranges": "bytes", "ETag": '"cdn"'})
        if asked and not self.ignore_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response.content_length = len(data) - start
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if request.method != "GET":
            return response
        if self.tamper:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        sent = 0
        for offset in range(start, len(data), BODY_CHUNK):
            part = data[offset : offset + BODY_CHUNK]
            if self.stall_after is not None and sent + len(part) > self.stall_after:
                await self._send(response, part[: self.stall_after - sent])
                await self.release.wait()  # stalled: the client gets killed meanwhile
                return response
            if self.drop_after is not None and sent + len(part) > self.drop_after:
                await self._send(response, part[: self.drop_after - sent])
                self.drop_after = None  # once
                assert request.transport is not None
                request.transport.abort()  # the connection breaks mid-body
                return response
            await self._send(response, part)
            sent += len(part)
        await response.write_eof()
        return response

    async def _send(self, response: web.StreamResponse, part: bytes) -> None:
        await response.write(part)
        self.served += len(part)
        self.cdn_served += len(part)


@pytest.fixture
def repo_files(tiny_model_path: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in tiny_model_path.iterdir() if p.is_file()}
    return {**files, **UNWANTED}


@pytest.fixture
async def hub(aiohttp_server, repo_files: dict[str, bytes]) -> tuple[FakeHub, str]:
    fake = FakeHub(repo_files)
    cdn = await aiohttp_server(fake.cdn_app(), host="127.0.0.1")
    fake.cdn_url = str(cdn.make_url("")).rstrip("/")
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


def _logits(model_path: Path) -> mx.array:
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(model_path))
    tokens = mx.array([tokenizer.encode("Hello world, how are you?")])
    return model(tokens)


async def test_download_fetches_the_model_files_and_they_load(hub, tiny_model_path, tmp_path):
    fake, endpoint = hub
    reports: list[tuple[float, str]] = []
    snapshot = await asyncio.to_thread(
        download_model,
        REPO_ID,
        cache_dir=tmp_path / "hf-cache",
        endpoint=endpoint,
        progress=lambda fraction, message: reports.append((fraction, message)),
    )

    assert snapshot.is_relative_to(tmp_path / "hf-cache")
    assert snapshot.name == COMMIT
    downloaded = {p.name for p in snapshot.iterdir()}
    assert downloaded == {p.name for p in tiny_model_path.iterdir() if p.is_file()}
    assert not downloaded & set(UNWANTED)
    for name in downloaded:
        assert (snapshot / name).read_bytes() == (tiny_model_path / name).read_bytes()
    fetched = [path for method, path in fake.requests if method == "GET" and "/api/" not in path]
    sha256 = hashlib.sha256((tiny_model_path / "model.safetensors").read_bytes()).hexdigest()
    small = {f"/{REPO_ID}/resolve/{COMMIT}/{name}" for name in downloaded - {"model.safetensors"}}
    assert sorted(fetched) == sorted([*small, f"/lfs/{sha256}"])  # each file once, LFS from the CDN

    assert mx.allclose(_logits(snapshot), _logits(tiny_model_path)).item()
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert len(fractions) > 2  # byte progress arrived between the start and the end


async def test_second_download_reads_the_cache(hub, tmp_path):
    fake, endpoint = hub
    first = await asyncio.to_thread(download_model, REPO_ID, cache_dir=tmp_path, endpoint=endpoint)
    gets_before = sum(
        1 for method, path in fake.requests if method == "GET" and "/api/" not in path
    )
    second = await asyncio.to_thread(download_model, REPO_ID, cache_dir=tmp_path, endpoint=endpoint)
    gets_after = sum(1 for method, path in fake.requests if method == "GET" and "/api/" not in path)
    assert second == first
    assert gets_after == gets_before  # nothing fetched again


async def test_unknown_model_and_revision_are_clear_errors(hub, tmp_path):
    _, endpoint = hub
    with pytest.raises(DownloadError, match="no such model"):
        await asyncio.to_thread(
            download_model, "nobody/nothing", cache_dir=tmp_path, endpoint=endpoint
        )
    with pytest.raises(DownloadError, match="no revision 'v9'"):
        await asyncio.to_thread(
            download_model, REPO_ID, revision="v9", cache_dir=tmp_path, endpoint=endpoint
        )


async def test_unreachable_hub_is_a_clear_error(unused_tcp_port, tmp_path):
    with pytest.raises(DownloadError, match="unreachable"):
        await asyncio.to_thread(
            download_model,
            REPO_ID,
            cache_dir=tmp_path,
            endpoint=f"http://127.0.0.1:{unused_tcp_port}",
        )


def test_allow_patterns_are_mlx_lms():
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    assert allow_patterns() == list(DEFAULT_ALLOW_PATTERNS)


async def test_an_interrupted_download_resumes_and_reports_bytes(hub, repo_files, tmp_path):
    """A download killed after some files leaves them in the cache: the next one fetches only
    the missing files, and byte progress counts the others as on disk, not as fetched."""
    fake, endpoint = hub
    first = await asyncio.to_thread(download_model, REPO_ID, cache_dir=tmp_path, endpoint=endpoint)
    weights = first / "model.safetensors"
    weights.resolve().unlink()  # the blob, as if the kill came before this file was done
    weights.unlink()
    served_before = fake.served
    seen: list[tuple[int, int, int]] = []
    snapshot = await asyncio.to_thread(
        download_model, REPO_ID, cache_dir=tmp_path, endpoint=endpoint,
        on_bytes=lambda done, total, received: seen.append((done, total, received)),
    )  # fmt: skip
    assert (snapshot / "model.safetensors").read_bytes() == repo_files["model.safetensors"]
    size = len(repo_files["model.safetensors"])
    assert fake.served - served_before == size  # only the missing file travelled
    done, total, received = seen[-1]
    assert done == total == sum(len(repo_files[p.name]) for p in snapshot.iterdir())
    assert received == size
    assert seen[0][0] == total - size  # the first report: all but the weights already on disk
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


WEIGHTS = "model.safetensors"


def _weights_blob(cache: Path, repo_files: dict[str, bytes]) -> Path:
    sha256 = hashlib.sha256(repo_files[WEIGHTS]).hexdigest()
    return cache / "models--salut-test--tiny-llama" / "blobs" / sha256


def _partial(cache: Path, repo_files: dict[str, bytes]) -> Path:
    blob = _weights_blob(cache, repo_files)
    return blob.with_name(blob.name + ".salut-partial")


async def _download(cache: Path, endpoint: str, seen: list | None = None) -> Path:
    def on_bytes(done: int, total: int, received: int) -> None:
        if seen is not None:
            seen.append((done, total, received))

    return await asyncio.to_thread(
        download_model, REPO_ID, cache_dir=cache, endpoint=endpoint, on_bytes=on_bytes
    )


async def test_a_download_killed_mid_file_goes_on_from_where_it_stopped(
    hub, repo_files, tiny_model_path, tmp_path
):
    """kill -9 of the process downloading the weights half-way: the next download asks only for
    the rest (a Range request from the partial file's end) and the model is byte-identical."""
    import signal
    import sys

    fake, endpoint = hub
    size = len(repo_files[WEIGHTS])
    cut = size // 2 + 12345  # not on a chunk boundary
    fake.stall_after = cut
    cache = tmp_path / "hf"
    code = (
        "import sys; from salut_tui.engine.hub import download_model; "
        "download_model(sys.argv[1], cache_dir=sys.argv[2], endpoint=sys.argv[3])"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, REPO_ID, str(cache), endpoint
    )
    partial = _partial(cache, repo_files)
    try:
        for _ in range(1200):  # the subprocess imports mlx-lm first: allow for a slow machine
            if partial.is_file() and partial.stat().st_size == cut:
                break
            await asyncio.sleep(0.05)
        assert partial.stat().st_size == cut  # what arrived is on disk, before any kill
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        fake.release.set()
    assert not _weights_blob(cache, repo_files).exists()  # nothing half-done is visible
    fake.stall_after = None
    cdn_before, seen = fake.cdn_served, []
    snapshot = await _download(cache, endpoint, seen)

    assert fake.cdn_served - cdn_before == size - cut  # only the rest travelled
    assert fake.ranges[-1] == f"bytes={cut}-"
    assert (snapshot / WEIGHTS).read_bytes() == repo_files[WEIGHTS]
    assert not partial.exists()
    assert mx.allclose(_logits(snapshot), _logits(tiny_model_path)).item()
    done, total, received = seen[-1]
    assert done == total == sum(len(repo_files[p.name]) for p in snapshot.iterdir())
    assert received == total - cut  # the resumed bytes count as on disk, not as fetched
    assert seen[0] == (cut, total, 0)  # the first report: the partial is on disk already


async def test_a_connection_cut_mid_file_resumes_in_the_same_run(hub, repo_files, tmp_path):
    fake, endpoint = hub
    size = len(repo_files[WEIGHTS])
    fake.drop_after = size // 3
    snapshot = await _download(tmp_path, endpoint)
    assert (snapshot / WEIGHTS).read_bytes() == repo_files[WEIGHTS]
    assert fake.ranges == [None, f"bytes={size // 3}-"]
    assert fake.cdn_served == size  # the cut-off part was not fetched twice


async def test_an_expired_cdn_address_is_asked_for_again(hub, repo_files, tmp_path):
    """The CDN refuses the address after a cut (signed URLs expire): the Hub is asked for a new
    one and the file goes on from its partial."""
    fake, endpoint = hub
    size = len(repo_files[WEIGHTS])
    fake.drop_after, fake.refuse = size // 3, {2}
    heads_before = fake.requests.count(("HEAD", f"/{REPO_ID}/resolve/{COMMIT}/{WEIGHTS}"))
    snapshot = await _download(tmp_path, endpoint)
    assert (snapshot / WEIGHTS).read_bytes() == repo_files[WEIGHTS]
    assert fake.ranges == [None, f"bytes={size // 3}-", f"bytes={size // 3}-"]
    assert fake.cdn_served == size
    heads = fake.requests.count(("HEAD", f"/{REPO_ID}/resolve/{COMMIT}/{WEIGHTS}"))
    assert heads - heads_before == 3  # Salut twice (again for a new address), the hub's client once


async def test_a_corrupted_partial_is_caught_by_the_sha256_and_fetched_again(
    hub, repo_files, tmp_path
):
    fake, endpoint = hub
    size = len(repo_files[WEIGHTS])
    partial = _partial(tmp_path, repo_files)
    partial.parent.mkdir(parents=True)
    wrong = bytearray(repo_files[WEIGHTS][:1000])
    wrong[500] ^= 0xFF  # one flipped byte, as a crash of the machine might leave
    partial.write_bytes(bytes(wrong))
    snapshot = await _download(tmp_path, endpoint)
    assert (snapshot / WEIGHTS).read_bytes() == repo_files[WEIGHTS]
    assert fake.ranges == ["bytes=1000-", None]  # the rest, then (bad sum) the whole file again
    assert fake.cdn_served == (size - 1000) + size
    assert not partial.exists()


async def test_wrong_bytes_never_become_visible(hub, repo_files, tmp_path):
    """A source that keeps sending wrong bytes: the download fails, and no blob and no
    snapshot file holds them (a partial copy is never loadable)."""
    fake, endpoint = hub
    fake.tamper = True
    with pytest.raises(DownloadError, match="SHA-256"):
        await _download(tmp_path, endpoint)
    assert not _weights_blob(tmp_path, repo_files).exists()
    snapshots = tmp_path / "models--salut-test--tiny-llama" / "snapshots"
    assert not list(snapshots.glob(f"*/{WEIGHTS}"))
    assert len(fake.ranges) == 2  # one try, then once more from the start


async def test_a_server_that_ignores_range_still_ends_correct(hub, repo_files, tmp_path):
    fake, endpoint = hub
    fake.ignore_range = True
    size = len(repo_files[WEIGHTS])
    partial = _partial(tmp_path, repo_files)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(repo_files[WEIGHTS][:4096])
    seen: list[tuple[int, int, int]] = []
    snapshot = await _download(tmp_path, endpoint, seen)
    assert (snapshot / WEIGHTS).read_bytes() == repo_files[WEIGHTS]
    assert fake.ranges == ["bytes=4096-"]  # asked for the rest, got the whole file (200)
    assert fake.cdn_served == size
    assert seen[-1][0] == seen[-1][1]


def test_the_plan_counts_whole_files_and_usable_partials_as_on_disk():
    from salut_tui.engine.hub_fetch import HubFile, plan_fetch

    files = [
        HubFile("config.json", 100, "a"),
        HubFile("tokenizer.json", 50, "b"),
        HubFile("model-1.safetensors", 1000, "c", "s1"),
        HubFile("model-2.safetensors", 2000, "d", "s2"),
        HubFile("model-3.safetensors", 500, "e", "s3"),
    ]
    present = {"config.json", "model-1.safetensors"}
    partials = {"model-2.safetensors": 700, "model-3.safetensors": 900}  # 900 > 500: useless
    plan = plan_fetch(files, present, partials)
    assert [f.path for f in plan.fetch] == ["model-2.safetensors", "model-3.safetensors"]
    assert plan.partials == {"model-2.safetensors": 700}  # the other starts again
    assert plan.on_disk == 100 + 1000 + 700
    assert plan.total == 3650
