"""Dropout with a uniform-threshold mask: the same distribution as :class:`torch.nn.Dropout`,
about twice as fast on CPU.

``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which was 14 % of a fusion training step
on the 2-core CPU (``(B, L, H)`` masks of every projection, residual and feed-forward branch);
drawing uniforms and thresholding them takes half the time (forward: 1.50 ms -> 0.78 ms for a
``(32, 120, 64)`` tensor, one thread). The mask comes from the global generator, so seeded runs
repeat exactly; the numbers drawn differ from ``nn.Dropout``'s.
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """Zero each element with probability ``p`` while training and scale the rest by
    ``1 / (1 - p)``; the identity in evaluation. Any shape in, the same shape out.

    >>> _ = torch.manual_seed(0)
    >>> dropout = Dropout(0.5)
    >>> out = dropout(torch.ones(1000))
    >>> sorted(set(out.tolist())), 400 < int((out == 0).sum()) < 600
    ([0.0, 2.0], True)
    >>> bool((dropout.eval()(torch.ones(3)) == 1).all())
    True
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden_states
        keep = torch.empty_like(hidden_states).uniform_().ge_(self.p).div_(1.0 - self.p)
        return hidden_states * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
