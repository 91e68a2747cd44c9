"""Attention layers of the fusion models: intra-modal blocks, seed 003's VAD-guided attention and
the bidirectional cross-modal layer.

Shape legend (for the whole ``mer.models`` package): B batch, L_m length of modality m, Lq / Lk
query / key length, D input feature dim, H ``d_model``, M modalities, C classes.
"""

from __future__ import annotations

import torch
from torch import nn

from mer.models.config import FusionConfig
from mer.models.dropout import Dropout


class VADGuidedBias(nn.Module):
    """Seed 003's VAD affinity ``lambda * M_VAD`` with ``M_VAD(i, j) = -||v_i - v_j||_2``.

    ``v`` is a learned 3-d (valence, arousal, dominance) projection of each query and key
    position; ``lambda`` is learnable from ``config.vad_lambda``. The bias is added to the
    attention scores before the softmax, so attention prefers keys whose VAD estimate is close to
    the query's.

    >>> config = FusionConfig(input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"),
    ...                       d_model=8, num_heads=2)
    >>> VADGuidedBias(config)(torch.randn(2, 5, 8), torch.randn(2, 7, 8)).shape
    torch.Size([2, 5, 7])
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.projection = nn.Linear(config.d_model, 3)
        self.vad_lambda = nn.Parameter(torch.tensor(float(config.vad_lambda)))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """queries `(B, Lq, H)`, keys `(B, Lk, H)` -> additive score bias `(B, Lq, Lk)` (<= 0)."""
        query_vad, key_vad = self.projection(queries), self.projection(keys)  # (B, Lq, 3), (B, Lk, 3)
        return -self.vad_lambda * torch.cdist(query_vad, key_vad)


class AttentionBlock(nn.Module):
    """Post-norm attention + feed-forward block; queries attend to a (masked) key sequence.

    With ``vad_guided`` the scores get seed 003's :class:`VADGuidedBias`:
    ``softmax(Q K^T / sqrt(d_k) + lambda * M_VAD)``.
    """

    def __init__(self, config: FusionConfig, vad_guided: bool = False) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.attention = nn.MultiheadAttention(
            config.d_model, config.num_heads, dropout=config.attention_dropout, batch_first=True
        )
        self.vad_bias = VADGuidedBias(config) if vad_guided else None
        self.norm1 = nn.LayerNorm(config.d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, 2 * config.d_model),
            nn.GELU(),
            Dropout(config.dropout),
            nn.Linear(2 * config.d_model, config.d_model),
        )
        self.norm2 = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """queries `(B, Lq, H)`, keys `(B, Lk, H)`, key_mask `(B, Lk)` True = real -> `(B, Lq, H)`.

        A row without a real key (its keys' modalities are absent) has nothing to attend to and
        returns its queries unchanged.
        """
        has_keys = key_mask.any(-1)  # (B,)
        # a softmax over no key is 0/0 = NaN, in the forward and in every gradient: such rows
        # attend to their padding instead and the result is dropped below (all rows with keys:
        # the same mask as key_mask, so the same outputs)
        attend_mask = key_mask | ~has_keys[:, None]  # (B, Lk)
        if self.vad_bias is None:
            attended, _ = self.attention(
                queries, keys, keys, key_padding_mask=~attend_mask, need_weights=False
            )
        else:
            bias = self.vad_bias(queries, keys)  # (B, Lq, Lk)
            bias = bias.masked_fill(~attend_mask[:, None, :], float("-inf"))
            bias = bias.repeat_interleave(self.num_heads, dim=0)  # (B * heads, Lq, Lk)
            attended, _ = self.attention(queries, keys, keys, attn_mask=bias, need_weights=False)
        hidden_states = self.norm1(queries + self.dropout(attended))
        hidden_states = self.norm2(hidden_states + self.dropout(self.feed_forward(hidden_states)))
        return torch.where(has_keys[:, None, None], hidden_states, queries)


class CrossModalLayer(nn.Module):
    """Bidirectional cross-modal attention: every modality attends to all the others
    (VAD-guided when ``config.vad_guidance``). On a row where all the others are absent (masks
    all False) a modality keeps its hidden states: :class:`AttentionBlock` leaves rows without
    keys unchanged.

    >>> config = FusionConfig(input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"),
    ...                       d_model=8, num_heads=2)
    >>> layer = CrossModalLayer(config).eval()
    >>> hidden = {"text": torch.randn(2, 3, 8), "audio": torch.randn(2, 5, 8)}
    >>> masks = {"text": torch.ones(2, 3, dtype=torch.bool), "audio": torch.tensor([[True] * 5, [False] * 5])}
    >>> updated = layer(hidden, masks)
    >>> torch.equal(updated["text"][1], hidden["text"][1]), torch.equal(updated["text"][0], hidden["text"][0])
    (True, False)
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.blocks = nn.ModuleDict(
            {m: AttentionBlock(config, vad_guided=config.vad_guidance) for m in self.modalities}
        )

    def forward(
        self, hidden_states: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """hidden_states[m] `(B, L_m, H)`, masks[m] `(B, L_m)` -> updated hidden_states[m]."""
        updated = {}
        for modality in self.modalities:
            others = [o for o in self.modalities if o != modality]
            keys = torch.cat([hidden_states[o] for o in others], dim=1)  # (B, sum L_o, H)
            key_mask = torch.cat([masks[o] for o in others], dim=1)  # (B, sum L_o)
            updated[modality] = self.blocks[modality](hidden_states[modality], keys, key_mask)
        return updated


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real positions.

    Args:
        hidden_states (`FloatTensor` of shape `(B, L, H)`); mask (`BoolTensor` `(B, L)`).

    Returns:
        `FloatTensor` of shape `(B, H)`.

    >>> masked_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """
    weights = mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, L, 1)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
