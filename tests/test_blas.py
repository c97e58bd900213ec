"""BLAS detection, the LD_PRELOAD re-exec, and that OpenBLAS/MKL compute what netlib computes.

Each case runs in a fresh interpreter: LD_PRELOAD only acts when a process starts. The tests that
need a fast BLAS skip when none is installed (CI installs `libopenblas0-pthread`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from salut_tui.blas import (
    OPT_OUT_ENV,
    REEXEC_MARK_ENV,
    blas_kind,
    detect_active_blas,
    find_fast_blas,
    mapped_libraries,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FAST_BLAS = find_fast_blas()
needs_fast_blas = pytest.mark.skipif(FAST_BLAS is None, reason="no OpenBLAS or MKL installed")
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's"
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", REEXEC_MARK_ENV, OPT_OUT_ENV)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env | extra


def _run(code: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


_REPORT = """
import json, sys
from salut_tui.blas import maybe_reexec_with_fast_blas, detect_active_blas
maybe_reexec_with_fast_blas()
print(json.dumps({"blas": detect_active_blas(), "argv": sys.argv[1:]}))
"""
# Prints whether this interpreter is a re-executed one, before _REPORT may re-exec it.
_REPORT_MARK = f"import os; print(os.environ.get({REEXEC_MARK_ENV!r}))\n"


def test_blas_kind_names_the_libraries():
    assert (
        blas_kind("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so")
        == "openblas"
    )
    assert blas_kind("/venv/lib/libmkl_rt.so.2") == "mkl"
    assert blas_kind("/site-packages/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0") == "netlib"
    assert blas_kind("/site-packages/numpy.libs/libscipy_openblas64_-ff651d7f.so") is None
    assert blas_kind("/usr/lib/x86_64-linux-gnu/libc.so.6") is None


@linux_only
def test_this_process_maps_mlx_and_reports_a_blas():
    import mlx.core  # noqa: F401

    assert any("libmlx" in path for path in mapped_libraries())
    expected = "reference netlib (bundled with mlx)" if not os.environ.get("LD_PRELOAD") else None
    active = detect_active_blas()
    assert active == expected or (expected is None and active.split()[0] in ("openblas", "mkl"))


@linux_only
def test_opt_out_keeps_the_bundled_blas():
    out = json.loads(_run(_REPORT, env=_clean_env(**{OPT_OUT_ENV: "1"})))
    assert out["blas"] == "reference netlib (bundled with mlx)"


@linux_only
@needs_fast_blas
def test_reexec_preloads_the_fast_blas_and_keeps_the_arguments():
    out = json.loads(_run(_REPORT, "serve", "--port", "0", env=_clean_env()))
    kind = blas_kind(str(FAST_BLAS))
    assert out["blas"].startswith(f"{kind} (")
    # the path reported is the library actually bound (symlinks resolved)
    assert Path(out["blas"][len(kind) + 2 : -1]) == Path(os.path.realpath(FAST_BLAS))
    assert out["argv"] == ["serve", "--port", "0"]


@linux_only
@needs_fast_blas
def test_no_second_reexec_when_a_fast_blas_is_already_preloaded():
    env = _clean_env(LD_PRELOAD=str(FAST_BLAS))
    marker, report = _run(_REPORT_MARK + _REPORT, env=env).splitlines()
    assert marker == "None"  # returned instead of re-executing
    assert json.loads(report)["blas"].split()[0] in ("openblas", "mkl")


_LOGITS = """
import sys, json, numpy as np, mlx.core as mx, mlx_lm
from salut_tui.blas import detect_active_blas
model, tok = mlx_lm.load(sys.argv[1])
ids = tok.encode("The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9")
np.save(sys.argv[2], np.array(model(mx.array([ids]))[0]))
text = mlx_lm.generate(model, tok, ids, max_tokens=24)
print(json.dumps({"blas": detect_active_blas(), "text": text}))
"""


@linux_only
@needs_fast_blas
def test_fast_blas_computes_the_same_logits_as_netlib(tiny_model_path, tmp_path):
    stock = json.loads(
        _run(
            _LOGITS,
            str(tiny_model_path),
            str(tmp_path / "stock.npy"),
            env=_clean_env(**{OPT_OUT_ENV: "1"}),
        )
    )
    fast = json.loads(
        _run(
            _LOGITS,
            str(tiny_model_path),
            str(tmp_path / "fast.npy"),
            env=_clean_env(LD_PRELOAD=str(FAST_BLAS)),
        )
    )
    assert stock["blas"].startswith("reference netlib") and not fast["blas"].startswith("reference")
    stock_logits, fast_logits = np.load(tmp_path / "stock.npy"), np.load(tmp_path / "fast.npy")
    np.testing.assert_allclose(fast_logits, stock_logits, atol=1e-4, rtol=1e-4)
    assert fast["text"] == stock["text"]
