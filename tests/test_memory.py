"""Memory figures and the estimate a model's load is checked against."""

from __future__ import annotations

import psutil

from salut_tui.engine.loader import load_with_progress
from salut_tui.engine.memory import estimate_model_bytes, memory_status


def test_memory_status_matches_the_machine() -> None:
    status = memory_status()
    assert status.total > 0
    assert 0 <= status.available <= status.total
    assert status.total <= psutil.virtual_memory().total


def test_estimate_is_the_weight_files_and_close_to_loaded_parameters(tiny_model_path) -> None:
    estimate = estimate_model_bytes(tiny_model_path)
    assert estimate == sum(p.stat().st_size for p in tiny_model_path.glob("*.safetensors"))
    loaded = load_with_progress("tiny", tiny_model_path, lambda fraction, stage: None)
    # safetensors adds only a small header to the raw parameter bytes.
    assert loaded.info.memory_bytes <= estimate <= loaded.info.memory_bytes * 1.05


def test_a_memory_limit_caps_total_and_free_less_what_models_hold() -> None:
    from salut_tui.engine.memory import MemoryStatus, within_limit

    machine = MemoryStatus(total=64, available=40)
    assert within_limit(machine, None, 10) == machine
    assert within_limit(machine, 16, 10) == MemoryStatus(total=16, available=6)
    assert within_limit(machine, 16, 20) == MemoryStatus(total=16, available=0)
    assert within_limit(machine, 100, 0) == MemoryStatus(total=64, available=40)
