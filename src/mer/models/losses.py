"""Training objectives of the model zoo, each as a small function over tensors.

- :func:`micl_loss`: seed 003's modality-invariant contrastive loss (symmetric cross-modal
  InfoNCE over cosine similarity with temperature tau), averaged over modality pairs.
- :func:`correlation_loss`: seed 002's ``alpha * MSE + beta * (1 - r)^2`` for continuous
  sentiment.
- :func:`masked_mse`: MSE over the rows whose targets are known (VAD regression auxiliary loss;
  corpora without VAD labels give NaN targets, which are skipped).

Shape legend: B batch, E embedding width, K targets per row.
"""

from __future__ import annotations

import itertools

import torch
from torch.nn import functional


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-modal InfoNCE: row i of ``queries`` should match row i of ``keys`` among the batch.

    Args:
        queries, keys (`FloatTensor` of shape `(B, E)`): embeddings of the same utterances.
        temperature (float): tau; similarities are cosine similarities divided by tau.

    >>> z = torch.eye(4)
    >>> bool(info_nce(z, z, 0.1) < info_nce(z, z.roll(1, 0), 0.1))
    True
    """
    similarity = functional.normalize(queries, dim=-1) @ functional.normalize(keys, dim=-1).T  # (B, B)
    targets = torch.arange(len(queries), device=queries.device)
    return functional.cross_entropy(similarity / temperature, targets)


def micl_loss(
    embeddings: dict[str, torch.Tensor], temperature: float, present: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Symmetric MICL, ``(L_{a->b} + L_{b->a}) / 2``, averaged over every modality pair.

    Args:
        embeddings (dict of `FloatTensor` of shape `(B, E)`): projected per-modality embeddings.
        temperature (float): tau of the similarities.
        present (dict of `BoolTensor` of shape `(B,)`, optional): the rows where each modality is
            present (default all). A pair is scored on the rows where both are, and left out of
            the average with fewer than two such rows; 0 (with a gradient path) if none is left.

    >>> z = {"text": torch.randn(8, 4), "audio": torch.randn(8, 4)}
    >>> micl_loss(z, 0.1).ndim
    0
    """
    pairs = list(itertools.combinations(embeddings, 2))
    if not pairs:
        raise ValueError(f"MICL needs at least two modalities, got {list(embeddings)}")
    losses = []
    for a, b in pairs:
        queries, keys = embeddings[a], embeddings[b]
        if present is not None:
            both = present[a] & present[b]  # (B,)
            if int(both.sum()) < 2:
                continue
            if not both.all():  # all present: no copy, the same loss as without ``present``
                queries, keys = queries[both], keys[both]
        losses.append(0.5 * (info_nce(queries, keys, temperature) + info_nce(keys, queries, temperature)))
    if not losses:
        return embeddings[pairs[0][0]].sum() * 0.0
    return torch.stack(losses).mean()


def pearson_r(predictions: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two `(B,)` tensors (differentiable).

    >>> round(float(pearson_r(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0]))), 4)
    1.0
    """
    p, t = predictions - predictions.mean(), targets - targets.mean()
    return (p * t).sum() / (p.norm() * t.norm() + eps)


def correlation_loss(
    predictions: torch.Tensor, targets: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """Seed 002's ``alpha * MSE + beta * (1 - r)^2`` on `(B,)` predictions and targets.

    >>> y = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    >>> float(correlation_loss(y, y, 0.3, 0.7))
    0.0
    """
    mse = functional.mse_loss(predictions, targets)
    if len(predictions) < 2:  # r is undefined on one row; MSE alone
        return alpha * mse
    return alpha * mse + beta * (1.0 - pearson_r(predictions, targets)) ** 2


def masked_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE over the rows of `(B, K)` ``targets`` without NaN; 0 (with a gradient path) if none.

    >>> masked_mse(torch.zeros(2, 3), torch.tensor([[1.0, 1.0, 1.0], [float("nan")] * 3]))
    tensor(1.)
    """
    known = ~torch.isnan(targets).any(-1)  # (B,)
    if not known.any():
        return predictions.sum() * 0.0
    return functional.mse_loss(predictions[known], targets[known])
