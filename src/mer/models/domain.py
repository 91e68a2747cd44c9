"""Domain adaptation and feature-space distances between two sets of features, in plain torch.

- :class:`GradientReversal` / :func:`grad_reverse`: identity forward, gradient times ``-coefficient``
  backward (Ganin & Lempitsky's gradient reversal layer).
- :class:`DomainClassifier` and :func:`dann_loss`: a gradient reversal layer before a one-logit MLP
  that tells source (label 0) from target (label 1); descending on :func:`dann_loss` trains the
  classifier to separate the domains and the features before it to confuse it.
- :func:`coral_loss`: Deep CORAL, the distance between the two feature covariances.
- :func:`mmd_loss`: squared maximum mean discrepancy under a sum of Gaussian RBF kernels.
- :func:`linear_cka` and :func:`coral_distance`: python-float measures for reporting (no gradient).

Shape legend: B_s source rows, B_t target rows, N / M rows, D (D1, D2) feature width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from mer.models.dropout import Dropout

MEDIAN_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_pair(source: torch.Tensor, target: torch.Tensor, what: str, min_rows: int) -> None:
    """Raise ValueError unless both are 2-D with the same width and at least ``min_rows`` rows."""
    if source.ndim != 2 or target.ndim != 2:
        raise ValueError(
            f"{what} expects 2-D (rows, features) tensors, got shapes "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"{what}: feature dims differ, {source.shape[1]} (source) vs {target.shape[1]} (target)"
        )
    if len(source) < min_rows or len(target) < min_rows:
        raise ValueError(
            f"{what} needs at least {min_rows} row(s) per set, got {len(source)} and {len(target)}"
        )


def _covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance `(D, D)` of `(N, D)` rows (N >= 2)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / (len(x) - 1)


class _GradientReversalFunction(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-coefficient``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad_output, None


def grad_reverse(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Return ``x`` unchanged, but multiply the gradient flowing back through it by ``-coefficient``.

    Args:
        x (`FloatTensor` of any shape): e.g. `(B, D)` features.
        coefficient (float): lambda, the weight of the reversed gradient.

    >>> x = torch.ones(2, 3, requires_grad=True)
    >>> grad_reverse(x, 0.5).sum().backward()
    >>> x.grad[0]
    tensor([-0.5000, -0.5000, -0.5000])
    """
    return _GradientReversalFunction.apply(x, float(coefficient))


class GradientReversal(nn.Module):
    """Gradient reversal layer: identity forward, gradient times ``-coefficient`` backward.

    ``coefficient`` (lambda) is a plain attribute, so a schedule can change it between steps.

    >>> layer = GradientReversal(coefficient=2.0)
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> layer(x).sum().backward()
    >>> x.grad
    tensor([[-2., -2.]])
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = float(coefficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient}"


class DomainClassifier(nn.Module):
    """Gradient reversal, then Linear -> ReLU -> Dropout -> Linear to one domain logit per row.

    A positive logit means "target domain". The reversal coefficient is ``self.reversal.coefficient``
    (1.0 by default) unless :meth:`forward` is given one.

    >>> classifier = DomainClassifier(input_dim=4, hidden_dim=8)
    >>> classifier(torch.randn(3, 4)).shape
    torch.Size([3])
    """

    def __init__(self, input_dim: int, hidden_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.reversal = GradientReversal()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.ReLU(), Dropout(dropout), nn.Linear(hidden_dim, 1)
        )

    def forward(self, features: torch.Tensor, coefficient: float | None = None) -> torch.Tensor:
        """Domain logits `(B,)` of `(B, D)` ``features``, through the reversal layer."""
        if features.ndim != 2 or features.shape[1] != self.input_dim:
            raise ValueError(
                f"DomainClassifier expects (B, {self.input_dim}) features, got {tuple(features.shape)}"
            )
        if coefficient is None:
            coefficient = self.reversal.coefficient
        return self.net(grad_reverse(features, coefficient)).squeeze(-1)


def dann_loss(
    classifier: DomainClassifier, source: torch.Tensor, target: torch.Tensor, coefficient: float = 1.0
) -> torch.Tensor:
    """Domain-adversarial loss: BCE-with-logits, source rows labelled 0 and target rows 1.

    The loss is the mean of the per-domain means, so both domains weigh the same whatever the batch
    sizes. Minimising it trains ``classifier`` to separate the domains while, through the reversal
    layer, the features of ``source`` and ``target`` receive ``-coefficient`` times that gradient.

    Args:
        source (`FloatTensor` of shape `(B_s, D)`), target (`FloatTensor` of shape `(B_t, D)`).

    >>> classifier = DomainClassifier(input_dim=4, hidden_dim=8)
    >>> dann_loss(classifier, torch.randn(5, 4), torch.randn(3, 4), coefficient=0.1).ndim
    0
    """
    _check_pair(source, target, "dann_loss", min_rows=1)
    logits = classifier(torch.cat([source, target]), coefficient)  # (B_s + B_t,)
    source_logits, target_logits = logits[: len(source)], logits[len(source) :]
    source_loss = functional.binary_cross_entropy_with_logits(source_logits, torch.zeros_like(source_logits))
    target_loss = functional.binary_cross_entropy_with_logits(target_logits, torch.ones_like(target_logits))
    return 0.5 * (source_loss + target_loss)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ``||C_s - C_t||_F^2 / (4 d^2)`` with unbiased covariances `(D, D)`.

    Args:
        source (`FloatTensor` of shape `(B_s, D)`), target (`FloatTensor` of shape `(B_t, D)`),
        at least two rows each.

    >>> x = torch.randn(16, 3)
    >>> float(coral_loss(x, x))
    0.0
    >>> bool(coral_loss(x, 3 * x) > 0)
    True
    """
    _check_pair(source, target, "coral_loss", min_rows=2)
    d = source.shape[1]
    return (_covariance(source) - _covariance(target)).pow(2).sum() / (4 * d * d)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances `(N, M)` of `(N, D)` and `(M, D)` rows, clamped at 0."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)


def mmd_loss(
    source: torch.Tensor, target: torch.Tensor, bandwidths: Sequence[float] | None = None
) -> torch.Tensor:
    """Squared MMD between `(B_s, D)` and `(B_t, D)` under ``k(a, b) = sum_h exp(-||a - b||^2 / h)``.

    The biased (V-statistic) estimator ``mean K_ss + mean K_tt - 2 mean K_st``, diagonals
    included: it is the squared RKHS distance of the two empirical mean embeddings, hence >= 0 (up to
    float error) and 0 for identical sample sets, but it is biased upwards for small batches.

    Args:
        bandwidths: the ``h`` values, in squared-distance units. Default: the median pairwise
            squared distance of the pooled rows (computed without gradient; 1 if it is 0) times
            0.25, 0.5, 1, 2 and 4.

    >>> x = torch.randn(32, 4)
    >>> abs(float(mmd_loss(x, x))) < 1e-6
    True
    >>> bool(mmd_loss(x, x + 3) > mmd_loss(x, x + 0.1))
    True
    """
    _check_pair(source, target, "mmd_loss", min_rows=1)
    pooled = torch.cat([source, target])
    distances = _squared_distances(pooled, pooled)  # (B_s + B_t, B_s + B_t)
    if bandwidths is None:
        with torch.no_grad():
            off_diagonal = distances[~torch.eye(len(pooled), dtype=torch.bool, device=pooled.device)]
            median = float(off_diagonal.median()) or 1.0
        bandwidths = [median * scale for scale in MEDIAN_SCALES]
    if len(bandwidths) == 0 or any(h <= 0 for h in bandwidths):
        raise ValueError(f"mmd_loss needs positive bandwidths, got {list(bandwidths)}")
    kernel = sum(torch.exp(-distances / h) for h in bandwidths)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


@torch.no_grad()
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations `(N, D1)` and `(N, D2)` of the same N items, in [0, 1].

    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred x and y (in float64); invariant
    to orthogonal transforms and isotropic scaling of either side.

    >>> x = torch.randn(50, 4)
    >>> round(linear_cka(x, 2 * x), 6)
    1.0
    """
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"linear_cka expects 2-D tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) != len(y):
        raise ValueError(f"linear_cka needs the same items on both sides, got {len(x)} vs {len(y)} rows")
    if len(x) < 2:
        raise ValueError(f"linear_cka needs at least 2 rows, got {len(x)}")
    x, y = x.double(), y.double()
    x, y = x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)
    denominator = float((x.T @ x).norm() * (y.T @ y).norm())
    if denominator == 0:
        raise ValueError("linear_cka is undefined for a constant representation")
    return min(max(float((y.T @ x).norm() ** 2) / denominator, 0.0), 1.0)


@torch.no_grad()
def coral_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`coral_loss` of `(N, D)` and `(M, D)` as a python float (no gradient), for reporting.

    >>> x = torch.randn(16, 3)
    >>> coral_distance(x, x)
    0.0
    """
    return float(coral_loss(x, y))
