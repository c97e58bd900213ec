"""Which BLAS MLX's CPU backend runs on, and switching Linux to a fast one.

The `mlx-cpu` wheel bundles the reference (netlib) BLAS, which is slow: on the default model in
float32 a 241-token prefill runs at ~11 tokens/s with it against ~285 with OpenBLAS. A BLAS named
in LD_PRELOAD wins symbol lookup over the bundled one (the dynamic linker searches the global
scope, preloads included, before libmlx's own dependencies), but LD_PRELOAD is read only when a
process starts. So on Linux the CLI calls `maybe_reexec_with_fast_blas()` first thing: when a fast
BLAS is installed (`sudo apt install libopenblas0-pthread`, or `pip install mkl`) and not already
in use, the same command is re-executed with LD_PRELOAD set. `SALUT_NO_BLAS_PRELOAD=1` turns it off.
"""

from __future__ import annotations

import ctypes
import glob
import os
import site
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

OPT_OUT_ENV = "SALUT_NO_BLAS_PRELOAD"
# Set in the re-executed process, so a preload that does not take never loops.
REEXEC_MARK_ENV = "SALUT_BLAS_REEXEC"
_PROBE_SYMBOL = "cblas_sgemm"  # what MLX calls for float32 matmul

_OPENBLAS_PATHS = (
    "/usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0",  # Debian/Ubuntu libopenblas0-pthread
    "/usr/lib/*-linux-gnu/openblas-openmp/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",  # Fedora's pthread build
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",  # Arch
)


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def mapped_libraries() -> list[str]:
    """Shared objects mapped into this process, from /proc/self/maps, in address order."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = (line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6)
    return list(dict.fromkeys(p for p in paths if p.startswith("/") and ".so" in p))


def blas_kind(path: str) -> str | None:
    """'mkl', 'openblas' or 'netlib' for a library path that is a BLAS, else None."""
    name = os.path.basename(path)
    if name.startswith("libmkl_rt"):
        return "mkl"
    # numpy's private copy (libscipy_openblas64_) exports renamed symbols MLX never binds to.
    if name.startswith("libopenblas"):
        return "openblas"
    if name.startswith("libblas") or name.startswith("libcblas"):
        return "netlib"
    return None


def _global_symbol_library(symbol: str) -> str | None:
    """File of the library that provides `symbol` in the global scope (preloads included).

    libmlx.so is opened privately (RTLD_LOCAL) with its bundled BLAS, so a global provider is
    found only when something like LD_PRELOAD put one there, and then it is the one MLX binds to.
    """
    libc = ctypes.CDLL(None)
    try:
        address = ctypes.cast(getattr(libc, symbol), ctypes.c_void_p)
    except AttributeError:
        return None
    info = _DlInfo()
    if not libc.dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def _describe(kind: str, path: str) -> str:
    if kind == "netlib":
        bundled = "mlx_cpu.libs" in path or "/mlx/" in path
        return "reference netlib (bundled with mlx)" if bundled else f"reference netlib ({path})"
    return f"{kind} ({path})"


def detect_active_blas() -> str:
    """Which BLAS MLX's matmuls run on in this process, for logs and the UI.

    'Accelerate' on macOS; on Linux 'openblas (<path>)', 'mkl (<path>)' or
    'reference netlib (bundled with mlx)'.
    """
    if sys.platform == "darwin":
        return "Accelerate"
    import mlx.core  # noqa: F401  (maps libmlx and the BLAS it was linked with)

    provider = _global_symbol_library(_PROBE_SYMBOL)
    kind = blas_kind(provider) if provider else None
    if provider and kind:
        return _describe(kind, provider)
    for path in mapped_libraries():
        kind = blas_kind(path)
        if kind:
            return _describe(kind, path)
    return "unknown"


def _mkl_candidates() -> list[Path]:
    """libmkl_rt from the pip `mkl` package, which installs it into <prefix>/lib."""
    prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, site.getuserbase()])
    found: list[Path] = []
    for prefix in prefixes:
        found += sorted(Path(p) for p in glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so.*")))
    return found


def _ldconfig_openblas() -> list[Path]:
    """libopenblas.so.0 as the dynamic linker's cache knows it (any distribution)."""
    try:
        listing = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        Path(line.split("=>", 1)[1].strip())
        for line in listing.splitlines()
        if line.strip().startswith("libopenblas.so.0") and "=>" in line
    ]


def installed_fast_blas() -> dict[str, Path]:
    """Each fast BLAS installed on this machine by kind ('mkl', 'openblas'), MKL first (it
    decoded faster here: 21 vs 16 tokens/s on the default model)."""
    if not sys.platform.startswith("linux"):
        return {}
    openblas = [Path(p) for pattern in _OPENBLAS_PATHS for p in sorted(glob.glob(pattern))]
    # `ldconfig -p` is a subprocess on every start: ask it only when the usual places are empty.
    candidates = {"mkl": _mkl_candidates(), "openblas": openblas or _ldconfig_openblas()}
    found = {}
    for kind, paths in candidates.items():
        existing = next((path for path in paths if path.is_file()), None)
        if existing is not None:
            found[kind] = existing
    return found


def find_fast_blas() -> Path | None:
    """The fast BLAS to preload, or None when neither MKL nor OpenBLAS is installed."""
    return next(iter(installed_fast_blas().values()), None)


def maybe_reexec_with_fast_blas(argv: Sequence[str] | None = None) -> None:
    """On Linux, re-execute this process with a fast BLAS preloaded, when one is installed.

    `argv` is the interpreter's whole command line (default: `sys.orig_argv`, which also covers
    `python -m salut_tui`). Returns without doing anything when: not Linux, opted out with
    SALUT_NO_BLAS_PRELOAD, already re-executed, no fast BLAS installed, or one already in use.
    Call it before anything starts threads; on success it does not return.
    """
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get(OPT_OUT_ENV) or os.environ.get(REEXEC_MARK_ENV):
        return
    library = find_fast_blas()
    if library is None:
        return
    provider = _global_symbol_library(_PROBE_SYMBOL)
    if provider and blas_kind(provider) in ("openblas", "mkl"):
        return
    command = list(argv if argv is not None else sys.orig_argv)
    preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD", "")]))
    env = {**os.environ, "LD_PRELOAD": preload, REEXEC_MARK_ENV: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command[1:]], env)
