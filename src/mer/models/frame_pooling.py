"""Audio frame pooling before the model's audio projection (``model.audio_pool``).

WavLM and the other speech encoders emit 50 frames a second, about 120 for a 2.4 s clip, while a
sentence has some 15 tokens and a clip some 8 video frames. The audio sequence is what the intra-
modal self-attention (cost ``L^2``) and every cross-modal layer read, so it set most of a training
step's time on CPU (bench/PROFILE.md). Averaging ``width`` consecutive frames (2: 25 Hz, 40 ms a
frame) before the projection divides that work by about ``width`` (the self-attention by
``width^2``).

A pooled frame is the masked mean of its window (padded frames do not count), windows start at
each row's first frame, and a last partial window keeps a frame of its own (``ceil`` mode), so a
row gives exactly what it gives alone, in any batch; its mask is True where the window holds a
real frame: ``T`` real frames become ``ceil(T / width)``. Standardisation is affine per dimension
and commutes with the mean, so pooling before or after it is the same model.

Shape legend: B batch, T frames, T' = ceil(T / width) pooled frames, D feature dim.
"""

from __future__ import annotations

import torch
from torch.nn import functional

__all__ = ["pool_frames"]


def pool_frames(
    hidden_states: torch.Tensor, mask: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked mean of each ``width`` consecutive frames, and the pooled mask.

    Args:
        hidden_states (`FloatTensor` of shape `(B, T, D)`): frames; padded positions are ignored.
        mask (`BoolTensor` of shape `(B, T)`): True on real frames.
        width (int): frames per pooled frame; 1 returns the inputs unchanged.

    Returns:
        pooled (`FloatTensor` `(B, T', D)`, 0 on padded windows) and its mask (`BoolTensor` `(B, T')`).

    >>> frames = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [9.0], [9.0]]])
    >>> pooled, mask = pool_frames(frames, torch.tensor([[True, True, True], [True, False, False]]), 2)
    >>> pooled[..., 0].tolist(), mask.tolist()
    ([[2.0, 5.0], [2.0, 0.0]], [[True, True], [True, False]])
    """
    if width == 1:
        return hidden_states, mask
    batch, frames, dim = hidden_states.shape
    keep = mask.to(hidden_states.dtype)  # (B, T)
    padding = -frames % width
    summed = functional.pad(hidden_states * keep[..., None], (0, 0, 0, padding))  # (B, T' * width, D)
    summed = summed.view(batch, -1, width, dim).sum(2)  # (B, T', D)
    counts = functional.pad(keep, (0, padding)).view(batch, -1, width).sum(2)  # (B, T')
    return summed / counts.clamp(min=1)[..., None], counts > 0
