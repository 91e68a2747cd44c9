"""Several stored encoder layers -> one sequence: the last layer, or SUPERB's learnable weighted sum.

The extract stage can store K hidden states of a text or speech encoder side by side, ``(L, K * D)``
per utterance (``extract.audio.layers`` / ``extract.text.layers``; ``meta.json`` records the
layers and ``num_layers``), and for speech also mean-pooled per layer, ``(1, K * D)``
(``extract.audio.pooling: mean_per_layer``). :class:`LayerWeighting` turns them into one
``(L, D)`` sequence in front of the model's input projection, by ``fusion.layer_weighting``:

- ``last``: the last stored block (one stored layer: no module at all, the model is unchanged);
- ``weighted``: ``sum_k softmax(w)_k * h_k`` with ``w`` learnable and starting at zeros (equal
  weights), as s3prl's ``Featurizer._weighted_sum`` (``s3prl/upstream/interfaces.py``).

s3prl's ``Featurizer`` layer-norms each layer first (``F.layer_norm`` over D, per frame) only
with ``normalize=True`` (``run_downstream.py --upstream_feature_normalize``, off by default); mer
follows the default and has no such option. That is what makes per-layer pooled storage exact: the
weighted sum and the projector act linearly on each frame, so they commute with the mean over
frames (:func:`mer.extract.pool_per_layer`); a per-frame layer norm would not.

With ``fusion.head: superb`` the model is s3prl's emotion downstream (``UtteranceLevel``): weighted
sum -> projector (``d_model`` = 256) -> masked mean pooling -> one Linear.

Shape legend: B batch, L positions, K stored layers, D layer width.

>>> mixer = LayerWeighting(num_layers=3, layer_dim=2, weighted=True)
>>> hidden_states = torch.arange(6.0).repeat(1, 1, 1)  # (B=1, L=1, K*D=6): layers [0,1] [2,3] [4,5]
>>> mixer(hidden_states).tolist()  # equal weights at the start: the mean of the layers
[[[2.0, 3.0]]]
>>> LayerWeighting(3, 2, weighted=False)(hidden_states).tolist()  # last
[[[4.0, 5.0]]]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["LayerWeighting", "stored_layer_count"]


class LayerWeighting(nn.Module):
    """K layer blocks side by side -> one block: the last, or a learned softmax-weighted sum.

    Args:
        num_layers: K, the layer blocks in each feature vector.
        layer_dim: D, the width of one block.
        weighted: learn the weights (``fusion.layer_weighting: weighted``); else take the last block.
    """

    def __init__(self, num_layers: int, layer_dim: int, weighted: bool) -> None:
        super().__init__()
        self.num_layers, self.layer_dim = num_layers, layer_dim
        # zeros: no random draw (the seeded init of every other parameter stays as it was)
        self.weights = nn.Parameter(torch.zeros(num_layers)) if weighted else None

    def layer_weights(self) -> torch.Tensor:
        """`(K,)` the softmax weights of the layers (one-hot on the last for ``last``)."""
        if self.weights is None:
            return torch.nn.functional.one_hot(torch.tensor(self.num_layers - 1), self.num_layers).float()
        return torch.softmax(self.weights, dim=0)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, L, K * D)` -> `(B, L, D)`."""
        blocks = hidden_states.unflatten(-1, (self.num_layers, self.layer_dim))  # (B, L, K, D)
        if self.weights is None:
            return blocks[..., -1, :]  # (B, L, D)
        mixing = torch.softmax(self.weights, dim=0).to(blocks.dtype)  # (K,)
        return torch.einsum("blkd,k->bld", blocks, mixing)  # (B, L, D)


def stored_layer_count(meta: Mapping) -> int:
    """K, the layer blocks side by side in a feature directory's vectors, from its ``meta.json``
    (``num_layers``; features written before it existed: the length of ``layers``, else 1).

    >>> stored_layer_count({"num_layers": 13}), stored_layer_count({"layers": [-2, -1]})
    (13, 2)
    >>> stored_layer_count({})
    1
    """
    if meta.get("num_layers"):
        return int(meta["num_layers"])
    return len(meta["layers"]) if meta.get("layers") else 1
