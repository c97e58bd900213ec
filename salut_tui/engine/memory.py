"""How much memory the machine has, and how much a model will take once loaded.

Used to refuse a load that would not fit (a clear 507 error instead of an out-of-memory crash).
On Linux the figures are RAM from psutil. On macOS memory is unified: MLX's arrays live in the same
RAM, but Metal caps what one process may wire (`max_recommended_working_set_size`), so the
available figure is the smaller of what the OS has free and what Metal still allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

# Weight files whose bytes end up in memory as they are.
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".npz")


@dataclass(frozen=True)
class MemoryStatus:
    total: int
    available: int


@dataclass(frozen=True)
class MetalMemory:
    limit: int  # what Metal lets this process wire
    active: int  # what MLX holds now


def memory_status() -> MemoryStatus:
    """The machine's RAM as the OS reports it (no MLX: safe on any thread)."""
    vm = psutil.virtual_memory()
    return MemoryStatus(total=int(vm.total), available=int(vm.available))


def within_metal(status: MemoryStatus, metal: MetalMemory | None) -> MemoryStatus:
    """On unified memory, what Metal still allows caps what the OS has free."""
    if metal is None:
        return status
    return MemoryStatus(
        total=min(status.total, metal.limit),
        available=max(0, min(status.available, metal.limit - metal.active)),
    )


def within_limit(status: MemoryStatus, limit: int | None, used: int) -> MemoryStatus:
    """A configured cap (`memory_limit_gb`): free is at most the cap less what models hold."""
    if limit is None:
        return status
    return MemoryStatus(
        total=min(status.total, limit), available=max(0, min(status.available, limit - used))
    )


def read_metal_memory() -> MetalMemory | None:
    """Metal's figures, None without Metal. Calls MLX: only on the engine's MLX thread."""
    limit = _metal_working_set_limit()
    if limit is None:
        return None
    import mlx.core as mx

    return MetalMemory(limit, int(mx.get_active_memory()))


def _metal_working_set_limit() -> int | None:
    try:
        import mlx.core as mx

        if not mx.metal.is_available():
            return None
        info = mx.device_info()
    except (ImportError, AttributeError, RuntimeError):
        return None
    limit = info.get("max_recommended_working_set_size")
    return int(limit) if limit else None


def weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def model_size_bytes(path: Path) -> int:
    """Bytes of the weight files on disk."""
    return sum(p.stat().st_size for p in weight_files(path))


def estimate_model_bytes(path: Path) -> int:
    """Memory the model's parameters will take once loaded: the weight files' bytes.

    mlx-lm loads safetensors as stored (quantized weights stay packed, float16 stays float16), so
    the file sizes are the parameter bytes. Models converted from GGUF are written dequantized
    (float32) by the importer, so their files already carry the float32 size.
    """
    return model_size_bytes(path)
