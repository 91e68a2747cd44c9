"""Seed 004's mel-spectrogram Conv1D branch, trained with the fusion model
(``fusion.audio_frontend: melcnn``).

Seed 004's audio encoder is ``Conv1D(40 -> 64, k3) -> Conv1D(64 -> 128, k3) -> MaxPool1D(2) ->
global average pooling -> Linear(128 -> 256)`` over 40 log-mel bands (1024-point FFT). In mer the
log-mel frames are extracted once (``extract.audio.model: logmel-40``,
:mod:`mer.encoders.spectral`) and the CNN is part of the model, in place of the audio input
projection (:class:`MelCNNProjection`):

1. per-band standardisation with train-split statistics (seed 004's "normalize"; the same
   buffers as every :class:`~mer.models.fusion.ModalityProjection`), then the optional few-shot
   input adapter, on the 40-d frames;
2. ``Conv1d(40, 64, 3) -> ReLU -> Conv1d(64, 128, 3) -> ReLU -> MaxPool1d(2)`` over time
   (:class:`MelCNN`; ReLU after each convolution: the seed names no activation, and the usual
   one makes the max-pool a max of non-negative values);
3. ``Linear(128, H)`` on every pooled frame: at ``d_model: 256`` seed 004's ``Linear(128 -> 256)``.
   Averaging commutes with a linear map, so the masked mean of these frames *is* seed 004's
   "global average pooling -> Linear" vector; mer keeps the frames so that the audio sequence
   enters the model where the audio features did: its intra-modal attention block, the
   cross-modal layers of ``crossmodal`` modes, and then the masked mean pooling that gives the
   vector early / late / ensemble fusion see (:mod:`mer.models.fusion`). As for text and video,
   that one intra-modal attention block sits between seed 004's projection and its pooling.

Padding: the convolutions use ``padding=1`` ("same" length, zero beyond the clip, so even a
one-frame clip has an output) and the padded positions of a batch are set to 0 before each
convolution and the pool, so an item's output never depends on its batch: exactly what it gives
alone. The max-pool uses ``ceil_mode`` (a last odd frame keeps a window of its own) and the mask
is pooled the same way: ``T`` real frames become ``ceil(T / 2)``.

Shape legend: see :mod:`mer.models.attention`; T frames, T' = ceil(T / 2) pooled frames,
C_1 / C_2 the channel widths.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from mer.models.config import MELCNN_INPUT_DIM, FusionConfig
from mer.models.dropout import Dropout

__all__ = ["MELCNN_INPUT_DIM", "MelCNN", "MelCNNProjection", "pool_mask"]


def pool_mask(mask: torch.Tensor, pool: int) -> torch.Tensor:
    """A `(B, T)` mask after a max-pool of width ``pool`` with ``ceil_mode``: a pooled frame is
    real when any frame of its window is.

    >>> pool_mask(torch.tensor([[True, True, True, False, False], [True, False, False, False, False]]), 2)
    tensor([[ True,  True, False],
            [ True, False, False]])
    """
    pooled = functional.max_pool1d(mask[:, None, :].float(), pool, ceil_mode=True)  # (B, 1, T')
    return pooled[:, 0, :].bool()


class MelCNN(nn.Module):
    """``Conv1d(D, C_1, k) -> ReLU -> Conv1d(C_1, C_2, k) -> ReLU -> MaxPool1d(p)`` over time,
    padding positions held at 0 (see the module docstring).

    Args:
        input_dim: mel bands D (40).
        config: ``melcnn_channels`` (C_1, C_2), ``melcnn_kernel_size`` k, ``melcnn_pool`` p.

    >>> config = FusionConfig(audio_frontend="melcnn")
    >>> cnn = MelCNN(40, config)
    >>> frames, mask = torch.randn(2, 9, 40), torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    >>> pooled, pooled_mask = cnn(frames, mask)
    >>> tuple(pooled.shape), pooled_mask.sum(-1).tolist()
    ((2, 5, 128), [5, 3])
    """

    def __init__(self, input_dim: int, config: FusionConfig) -> None:
        super().__init__()
        first, second = config.melcnn_channels
        kernel = config.melcnn_kernel_size
        self.conv1 = nn.Conv1d(input_dim, first, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(first, second, kernel, padding=kernel // 2)
        self.pool = config.melcnn_pool
        self.output_dim = second

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames `(B, T, D)`, mask `(B, T)` True on real frames -> pooled `(B, T', C_2)`, its
        mask `(B, T')`; padded positions are 0."""
        keep = mask[:, None, :].to(frames.dtype)  # (B, 1, T)
        hidden = frames.transpose(1, 2) * keep  # (B, D, T)
        hidden = functional.relu(self.conv1(hidden)) * keep  # (B, C_1, T)
        hidden = functional.relu(self.conv2(hidden)) * keep  # (B, C_2, T)
        # ReLU outputs are >= 0, so a zeroed padding frame never wins a window with a real one
        pooled = functional.max_pool1d(hidden, self.pool, ceil_mode=True)  # (B, C_2, T')
        return pooled.transpose(1, 2), pool_mask(mask, self.pool)  # (B, T', C_2), (B, T')


class MelCNNProjection(nn.Module):
    """The audio input projection of ``audio_frontend: melcnn``: standardise (train statistics)
    -> optional input adapter -> :class:`MelCNN` -> ``Linear(C_2, H)`` per pooled frame ->
    dropout. It has :class:`~mer.models.fusion.ModalityProjection`'s ``mean`` / ``std`` buffers
    and ``linear``, so feature statistics and checkpoints work the same way; unlike it, it also
    returns the pooled mask.

    >>> config = FusionConfig(audio_frontend="melcnn", d_model=16, num_heads=2)
    >>> projection = MelCNNProjection(40, config)
    >>> hidden, mask = projection(torch.randn(3, 7, 40), torch.ones(3, 7, dtype=torch.bool))
    >>> tuple(hidden.shape), tuple(mask.shape)
    ((3, 4, 16), (3, 4))
    """

    def __init__(self, input_dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))
        self.cnn = MelCNN(input_dim, config)
        self.linear = nn.Linear(self.cnn.output_dim, config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, adapter: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden_states `(B, T, D)` log-mel frames, mask `(B, T)` True on real frames ->
        `(B, T', H)` and the pooled mask `(B, T')`; ``adapter`` acts on the standardised frames."""
        standardised = (hidden_states - self.mean) / self.std  # (B, T, D)
        if adapter is not None:
            standardised = adapter(standardised)
        pooled, pooled_mask = self.cnn(standardised, mask)  # (B, T', C_2), (B, T')
        return self.dropout(self.linear(pooled)), pooled_mask  # (B, T', H)
