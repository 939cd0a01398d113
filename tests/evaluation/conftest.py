from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"  # shared/ sits beside the repository


def _data_file(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def gsm8k_path() -> Path:
    return _data_file("gsm8k_test.jsonl")


@pytest.fixture
def math500_path() -> Path:
    return _data_file("math500.jsonl")
