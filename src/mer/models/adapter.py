"""Feature adapter: maps one feature space into another, position by position.

Seed 002's block, ``Linear -> BatchNorm -> ReLU -> Dropout`` twice, then ``Linear``, applied to
every frame / token independently (sequences are flattened to ``(N, D)`` first). Inputs are
standardised with ``input_mean`` / ``input_std`` and outputs mapped back with ``output_mean`` /
``output_std`` (saved in the config), so one learning rate fits every encoder's scale. With
``residual`` the adapter is ``z + f(z)`` and ``f``'s last layer starts at zero: it starts as the
identity and learns only the correction (the better-founded methods in :mod:`mer.adapt`).

>>> adapter = FeatureAdapter(AdapterConfig(input_dim=6, output_dim=4, hidden_dim=8))
>>> tuple(adapter(torch.randn(5, 6)).shape)
(5, 4)
>>> identity = FeatureAdapter(AdapterConfig(input_dim=4, output_dim=4, hidden_dim=8, residual=True)).eval()
>>> x = torch.randn(3, 4); bool(torch.allclose(identity(x), x, atol=1e-6))
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from mer.models.dropout import Dropout


@dataclass
class AdapterConfig:
    """Configuration of :class:`FeatureAdapter`.

    Args:
        input_dim (int): feature dim of the space mapped from.
        output_dim (int): feature dim of the space mapped into.
        hidden_dim (int, 256): hidden width (seed 002: input dim x expansion ratio).
        dropout (float, 0.3): dropout after each hidden block (seed 002).
        residual (bool, False): ``z + f(z)`` starting at the identity (needs equal dims).
        input_mean / input_std (list[float]): per-dimension input standardisation (empty: none).
        output_mean / output_std (list[float]): per-dimension output de-standardisation.
    """

    input_dim: int
    output_dim: int
    hidden_dim: int = 256
    dropout: float = 0.3
    residual: bool = False
    input_mean: list[float] = field(default_factory=list)
    input_std: list[float] = field(default_factory=list)
    output_mean: list[float] = field(default_factory=list)
    output_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.residual and self.input_dim != self.output_dim:
            raise ValueError(
                f"a residual adapter needs input_dim == output_dim, got {self.input_dim}, {self.output_dim}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _buffer(values: list[float], dim: int, default: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32) if values else torch.full((dim,), default)


class FeatureAdapter(nn.Module):
    """Position-wise MLP adapter (seed 002), optionally residual."""

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
                Dropout(config.dropout),
            ]
            width = config.hidden_dim
        self.layers = nn.Sequential(*blocks, nn.Linear(width, config.output_dim))
        if config.residual:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
        self.register_buffer("input_mean", _buffer(config.input_mean, config.input_dim, 0.0))
        self.register_buffer("input_std", _buffer(config.input_std, config.input_dim, 1.0))
        self.register_buffer("output_mean", _buffer(config.output_mean, config.output_dim, 0.0))
        self.register_buffer("output_std", _buffer(config.output_std, config.output_dim, 1.0))

    def standardised(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Raw `(N, D_in)` -> adapted `(N, D_out)` in the standardised output space."""
        z = (hidden_states - self.input_mean) / self.input_std
        return z + self.layers(z) if self.config.residual else self.layers(z)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(N, D_in)` -> `(N, D_out)` in the raw output space."""
        return self.standardised(hidden_states) * self.output_std + self.output_mean

    @torch.inference_mode()
    def transform(self, sequence: np.ndarray) -> np.ndarray:
        """Adapt one utterance's `(L, D_in)` array (eval mode) to a float32 `(L, D_out)` array."""
        was_training = self.training
        self.eval()
        adapted = self(torch.from_numpy(np.asarray(sequence, dtype=np.float32))).numpy()
        self.train(was_training)
        return adapted
