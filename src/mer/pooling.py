"""Pooled and layer-mixed forms of a stored hidden-state sequence, without re-encoding.

Extraction stores one unpadded ``(L, num_layers * D)`` sequence per utterance: the hidden states
of ``num_layers`` encoder layers concatenated along the feature axis, in the order given to
``encode(..., layers=...)`` (see :class:`mer.encoders.text.TextEncoder` and
:class:`mer.encoders.speech.AudioEncoder`). From it:

- :func:`select_layers` gives one ``(L, D)`` sequence: a SUPERB-style weighted layer sum
  ``sum_k softmax(w)_k * h_k`` when ``layer_weights`` are given, else the last stored block;
- :func:`pool` reduces that to one ``(D,)`` vector, as the seed scripts did: ``"cls"`` (the first
  position: BERT's ``[CLS]``), ``"mean"`` over positions, or ``"last"`` position.

Stored shards are float16; everything here computes in float32 and returns float32.

Shape legend: L = positions (tokens or frames), K = stored layers, D = hidden size.

>>> hidden_states = np.arange(12, dtype=np.float16).reshape(3, 4)  # L=3, K=2 layers of D=2
>>> select_layers(hidden_states, num_layers=2).tolist()
[[2.0, 3.0], [6.0, 7.0], [10.0, 11.0]]
>>> pool(hidden_states, "mean", num_layers=2, layer_weights=np.zeros(2)).tolist()
[5.0, 6.0]
"""

from __future__ import annotations

import numpy as np

POOLING_METHODS = ("cls", "mean", "last")


def _softmax(weights: np.ndarray) -> np.ndarray:
    shifted = weights - weights.max()
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum()


def select_layers(
    hidden_states: np.ndarray, num_layers: int, layer_weights: np.ndarray | None = None
) -> np.ndarray:
    """One layer, or a softmax-weighted sum of layers, of a stored multi-layer sequence.

    Args:
        hidden_states: ``(L, num_layers * D)``, layer blocks side by side.
        num_layers: K, how many layer blocks the sequence holds.
        layer_weights: ``(K,)`` unnormalised weights (SUPERB's learnable layer weights); ``None``
            takes the last block (the last layer of the stored order).

    Returns:
        float32 ``(L, D)``.

    Raises:
        ValueError: ``hidden_states`` is not 2-D with at least one position, its width is not a
            multiple of ``num_layers``, or ``layer_weights`` is not a finite ``(K,)`` vector.

    >>> hidden_states = np.array([[1.0, 2.0, 3.0, 4.0]])  # L=1, K=2, D=2
    >>> select_layers(hidden_states, 2, layer_weights=np.log([3.0, 1.0])).tolist()
    [[1.5, 2.5]]
    >>> select_layers(hidden_states, 3)
    Traceback (most recent call last):
    ...
    ValueError: hidden_states of shape (1, 4): width 4 is not num_layers=3 blocks of equal size
    """
    hidden_states = np.asarray(hidden_states)
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    if hidden_states.ndim != 2 or hidden_states.shape[0] < 1:
        raise ValueError(
            f"hidden_states must be (L, num_layers * D) with L >= 1, got shape {hidden_states.shape}"
        )
    length, width = hidden_states.shape
    if width == 0 or width % num_layers:
        raise ValueError(
            f"hidden_states of shape {hidden_states.shape}: width {width} is not "
            f"num_layers={num_layers} blocks of equal size"
        )
    dim = width // num_layers
    blocks = hidden_states.reshape(length, num_layers, dim).astype(np.float32)  # (L, K, D)
    if layer_weights is None:
        return np.ascontiguousarray(blocks[:, -1])  # (L, D)
    layer_weights = np.asarray(layer_weights, dtype=np.float64)
    if layer_weights.shape != (num_layers,) or not np.isfinite(layer_weights).all():
        raise ValueError(
            f"layer_weights must be finite with shape ({num_layers},) for num_layers={num_layers}, "
            f"got shape {layer_weights.shape}"
        )
    mixing = _softmax(layer_weights).astype(np.float32)  # (K,)
    return np.einsum("lkd,k->ld", blocks, mixing)  # (L, D)


def pool(
    hidden_states: np.ndarray,
    method: str,
    num_layers: int = 1,
    layer_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Pool a stored sequence into one vector (after :func:`select_layers`).

    Args:
        hidden_states: ``(L, num_layers * D)``, unpadded (as stored by extraction).
        method: ``"cls"`` (first position), ``"mean"`` (mean over positions) or ``"last"``
            (last position).
        num_layers: K, layer blocks in ``hidden_states``.
        layer_weights: ``(K,)`` softmax-weighted layer sum first; ``None``: the last block.

    Returns:
        float32 ``(D,)``.

    Raises:
        ValueError: unknown ``method``, or bad shapes (see :func:`select_layers`).

    >>> hidden_states = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])  # L=3, D=2
    >>> pool(hidden_states, "cls").tolist(), pool(hidden_states, "mean").tolist()
    ([1.0, 10.0], [3.0, 30.0])
    >>> pool(hidden_states, "last").tolist()
    [5.0, 50.0]
    >>> pool(hidden_states, "max")
    Traceback (most recent call last):
    ...
    ValueError: unknown pooling method 'max'; valid: cls, mean, last
    """
    if method not in POOLING_METHODS:
        raise ValueError(f"unknown pooling method {method!r}; valid: {', '.join(POOLING_METHODS)}")
    sequence = select_layers(hidden_states, num_layers, layer_weights)  # (L, D)
    if method == "cls":
        return sequence[0].copy()  # (D,)
    if method == "last":
        return sequence[-1].copy()  # (D,)
    return sequence.mean(axis=0, dtype=np.float32)  # (D,)
