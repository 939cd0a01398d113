"""Small dataset samples from the repository (``tests/data/``): no test needs data outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def gsm8k_path() -> Path:
    """The first 12 GSM8K test problems."""
    return DATA / "gsm8k_test.jsonl"


@pytest.fixture
def math500_path() -> Path:
    """The first 8 MATH500 problems."""
    return DATA / "math500.jsonl"
