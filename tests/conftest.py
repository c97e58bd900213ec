from __future__ import annotations

from pathlib import Path

import pytest

from tests.model_factory import TINY_MODEL_ID, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny random-weight llama (built once per test session)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_id() -> str:
    return TINY_MODEL_ID
