"""Seed-002 feature adapter: maps one feature space into another, position by position.

``Linear -> BatchNorm -> ReLU -> Dropout`` twice, then ``Linear``; applied to every frame / token
of a sequence independently (sequence features are flattened to ``(N, D)`` first).

>>> adapter = FeatureAdapter(AdapterConfig(input_dim=6, output_dim=4, hidden_dim=8))
>>> tuple(adapter(torch.randn(5, 6)).shape)
(5, 4)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class AdapterConfig:
    """Configuration of :class:`FeatureAdapter`.

    Args:
        input_dim (int): feature dim of the space mapped from.
        output_dim (int): feature dim of the space mapped into.
        hidden_dim (int, 256): hidden width.
        dropout (float, 0.3): dropout after each hidden block (seed 002).
    """

    input_dim: int
    output_dim: int
    hidden_dim: int = 256
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureAdapter(nn.Module):
    """Position-wise MLP adapter (seed 002)."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        blocks = []
        width = config.input_dim
        for _ in range(2):
            blocks += [
                nn.Linear(width, config.hidden_dim),
                nn.BatchNorm1d(config.hidden_dim),
                nn.ReLU(),
                nn.Dropout(config.dropout),
            ]
            width = config.hidden_dim
        self.layers = nn.Sequential(*blocks, nn.Linear(width, config.output_dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(N, D_in)` -> `(N, D_out)`."""
        return self.layers(hidden_states)

    @torch.inference_mode()
    def transform(self, sequence: np.ndarray) -> np.ndarray:
        """Adapt one utterance's `(L, D_in)` array (eval mode) to a float32 `(L, D_out)` array."""
        was_training = self.training
        self.eval()
        adapted = self(torch.from_numpy(np.asarray(sequence, dtype=np.float32))).numpy()
        self.train(was_training)
        return adapted
