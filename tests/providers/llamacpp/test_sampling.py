"""The batched exact sampler (:mod:`providers.llamacpp._sampling`) draws from softmax(x / T)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp._sampling import BLOCK, draw_rows, new_rng


def frequencies(logits: np.ndarray, temperature: float, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.repeat(logits[None, :], 50, axis=0)
    counts = np.zeros(len(logits))
    for _ in range(draws // 50):
        for token in draw_rows(rows, np.full(50, temperature, np.float32), rng.random(50)):
            counts[token] += 1
    freq: np.ndarray = counts / counts.sum()
    return freq


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draws_follow_the_softmax_across_blocks(temperature: float) -> None:
    vocab = 2 * BLOCK + 300  # a partial last block
    logits = np.full(vocab, -np.inf, np.float32)
    hot = [3, BLOCK - 1, BLOCK, 2 * BLOCK + 7, vocab - 1]  # block edges and the last token
    logits[hot] = np.array([0.0, 1.0, -0.5, 0.7, 0.2], np.float32)
    expected = np.exp(logits[hot] / temperature)
    expected /= expected.sum()
    freq = frequencies(logits, temperature, 20_000, seed=1)
    assert freq[hot].sum() == 1.0  # a token of probability 0 is never drawn
    assert np.abs(freq[hot] - expected).max() < 0.015  # ~4 standard errors


def test_each_row_is_its_own() -> None:
    logits = np.full((2, 700), -np.inf, np.float32)
    logits[0, 5], logits[1, 650] = 0.0, 0.0  # one certain token per row
    tokens = draw_rows(logits, np.ones(2, np.float32), np.array([0.999, 0.0]))
    assert tokens == [5, 650]
    assert logits[0, 5] == 0.0  # the input is left as it was


def test_seeded_generators_repeat() -> None:
    assert new_rng(7, 2).random() == new_rng(9, 0).random()  # seed + index
    assert new_rng(7, 0).random() != new_rng(7, 1).random()
