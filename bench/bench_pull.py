"""Model copy over the peer link vs a plain `cp`, on loopback, with two real `salut serve`
processes: B holds a model of `--size` MiB of weights, A runs `salut pull` (the control route it
uses) and the bench times it against `cp -r` of the same directory.

cp and pull runs alternate (the machine's load from other jobs changes by the second); each run
reports wall time, MB/s, the ratio (target >= 0.5) and the CPU seconds of cp, of the puller and
of the sender. Then where a pull's time goes: the manifest (the sender hashes every file once;
cached afterwards), the copy, and the final SHA-256 checks on the receiver; plus single-core
figures for what each byte pays: SHA-256, the bulk path's AES-256-GCM records, and (for
comparison) the link's 16 KiB SecretBox frames, which carried the copy before the bulk path.

    python bench/bench_pull.py [--size 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_proxy import Proc, call, free_port  # noqa: E402

MODEL = "bench/model"
MB = 1e6


def make_model(directory: Path, size_mib: int) -> None:
    from tests.model_factory import build_tiny_model

    build_tiny_model(directory)
    block = hashlib.sha256(b"bench").digest() * (1 << 15)  # 1 MiB, not compressible zeros
    with (directory / "model-big.safetensors").open("wb") as fh:
        for i in range(size_mib):
            fh.write(block[i % 32 :] + block[: i % 32])


def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def time_cp(source: Path, target: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `cp -r` of `source` (from the page cache)."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    wall = time.perf_counter() - start
    after = os.times()
    shutil.rmtree(target)
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU time of a node process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pull_once(a: Proc, b: Proc) -> dict[str, float]:
    """One pull through A's control route; the wall time of each stage as A reported it, and
    the CPU time each node spent."""
    cpu_before = cpu_seconds(a), cpu_seconds(b)
    body = json.dumps({"model": MODEL, "from": "B"}).encode()
    req = urllib.request.Request(f"{a.base}/salut/control/models/pull", data=body, method="POST")
    req.add_header("X-Salut-Control", a.token())
    req.add_header("Content-Type", "application/json")
    start = time.perf_counter()
    marks: dict[str, float] = {}
    last: dict = {}
    with urllib.request.urlopen(req, timeout=600) as resp:
        for line in resp:
            view = json.loads(line)
            last = view
            marks.setdefault(view["stage"], time.perf_counter() - start)
    if last.get("state") != "done":
        raise SystemExit(f"pull failed: {last}")
    marks["total"] = time.perf_counter() - start
    marks["bytes"] = float(last["total"])
    marks["cpu_puller"] = cpu_seconds(a) - cpu_before[0]
    marks["cpu_sender"] = cpu_seconds(b) - cpu_before[1]
    return marks


def hash_rate(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 << 20):
            digest.update(block)
    return path.stat().st_size / (time.perf_counter() - start) / MB


def seal_rate(total: int = 256 << 20) -> float:
    from salut_tui.cluster.frames import PIECE, FrameCipher

    cipher, other = FrameCipher(b"k" * 32, b"k" * 32), FrameCipher(b"k" * 32, b"k" * 32)
    frame = b"x" * PIECE
    start = time.perf_counter()
    for _ in range(total // PIECE):
        other.open(cipher.seal(frame))
    return total / (time.perf_counter() - start) / MB


def record_rate(total: int = 256 << 20) -> float:
    """Seal + open of the bulk path's records (AES-256-GCM, 4 MiB), one core."""
    from salut_tui.cluster.bulk_crypto import RECORD_SIZE, RangeSealer, ticket_keys

    ticket = b"t" * 16
    sealer = RangeSealer(ticket_keys(b"k" * 32, ticket), ticket, "x", 0, total)
    record = b"x" * RECORD_SIZE
    start = time.perf_counter()
    for index in range(total // RECORD_SIZE):
        sealer.open(index, sealer.seal(index, record))
    return total / (time.perf_counter() - start) / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="MiB of weights")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="salut-bench-pull-") as tmp_name:
        tmp = Path(tmp_name)
        b_models = tmp / "src" / "models" / MODEL
        make_model(b_models, args.size)
        size = dir_bytes(b_models)
        hash_rate(b_models / "model-big.safetensors")  # warm the page cache for both contestants
        a = Proc(tmp, "A", free_port(), {})
        b = Proc(tmp, "B", free_port(), {})
        # B's data dir must hold the model: its models dir is <data>/models.
        shutil.move(str(tmp / "src" / "models"), str(b.root / "data" / "models"))
        b_models = b.root / "data" / "models" / MODEL
        try:
            a.wait(lambda: call(f"{a.base}/health"), "A up")
            b.wait(lambda: call(f"{b.base}/health"), "B up")
            code = call(f"{b.base}/salut/control/pair/code", {"ttl": 60}, b.token())["code"]
            call(f"{a.base}/salut/control/pair/join",
                 {"address": f"127.0.0.1:{b.port}", "code": code}, a.token())  # fmt: skip

            def b_has_it() -> bool:
                peers = call(f"{a.base}/v1/cluster")["peers"]
                return any(p["health"] == "ok" and MODEL in p["available_models"] for p in peers)

            a.wait(b_has_it, "A sees B's model", 60)
            pulls, cps, loads = [], [], []
            for i in range(args.runs + 1):  # the first pull pays the sender's hashing
                if i > 0:  # cp and pull alternate, so both see the same load from other jobs
                    cps.append(time_cp(b_models, tmp / "cp"))
                pulls.append(pull_once(a, b))
                loads.append(os.getloadavg()[0])
                shutil.rmtree(a.root / "data" / "models" / MODEL)
                print(f"pull {i}: {pulls[-1]}", file=sys.stderr)
        finally:
            a.stop()
            b.stop()
        warm = pulls[1:]
        print(f"model: {size / MB:.0f} MB ({args.size} MiB of weights), runs: {args.runs}, "
              f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")  # fmt: skip
        print("run  cp s   cp MB/s  pull s  pull MB/s  ratio  CPU s: cp / puller / sender")
        for i, ((cp_s, cp_cpu), p) in enumerate(zip(cps, warm, strict=True)):
            print(f"{i + 1:3}  {cp_s:5.2f}  {size / cp_s / MB:7.0f}  {p['total']:6.2f}  "
                  f"{size / p['total'] / MB:9.0f}  {cp_s / p['total']:5.2f}  "
                  f"{cp_cpu:.2f} / {p['cpu_puller']:.2f} / {p['cpu_sender']:.2f}")  # fmt: skip
        ratios = [cp_s / p["total"] for (cp_s, _), p in zip(cps, warm, strict=True)]
        print(f"ratio to cp: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f} (target >= 0.5)")  # fmt: skip
        copy_s = statistics.median(
            p.get("verifying", p["total"]) - p.get("copying", 0.0) for p in warm
        )
        verify_s = statistics.median(p["total"] - p.get("verifying", p["total"]) for p in warm)
        manifest_s = statistics.median(p.get("copying", 0.0) for p in warm)
        print(f"pull stages (median): manifest {manifest_s:.2f} s, copy {copy_s:.2f} s "
              f"({size / copy_s / MB:.0f} MB/s), verify {verify_s:.2f} s")  # fmt: skip
        cold = pulls[0]
        print(f"first pull (sender hashes first): {cold['total']:.2f} s, "
              f"manifest {cold.get('copying', 0.0):.2f} s")  # fmt: skip
        print(f"one core: sha256 {hash_rate(b_models / 'model-big.safetensors'):.0f} MB/s, "
              f"bulk records seal+open (AES-256-GCM, 4 MiB) {record_rate():.0f} MB/s, "
              f"link seal+open (16 KiB frames) {seal_rate():.0f} MB/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
