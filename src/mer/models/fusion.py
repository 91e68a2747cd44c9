"""The fusion model zoo over sequence-level features, one class driven by :class:`FusionConfig`.

Every mode starts the same way (audio frames first averaged ``audio_pool`` at a time,
:mod:`mer.models.frame_pooling`): per-modality standardisation + projection to H, then one
intra-modal self-attention block (with ``audio_frontend: melcnn`` the audio projection is seed
004's mel-spectrogram CNN, :mod:`mer.models.melcnn`: half the frames, the mask pooled alike).
What follows depends on ``config.mode``:

- ``crossmodal`` (seeds 000 / 002 / 003): bidirectional cross-modal attention (optionally seed
  003's VAD-guided attention) -> masked mean pooling -> fusion by ``config.gate``
  (:class:`GatedFusion`: reliability weights, seed 003's EAAF, or plain concatenation) -> an MLP
  head, or seed 000's emotion-query decoder (:class:`EmotionQueryDecoder`) when
  ``decoder_layers > 0``.
- ``concat``: early fusion, pooled modalities concatenated -> MLP head (seeds 001 / 004).
- ``late``: a classifier per modality; logits averaged with learned softmax weights (seed 001).
- ``ensemble``: the early and late pathways combined as
  ``(w_e * early + w_l * late) / (w_e + w_l)`` with ``w = sigmoid(learned scalar)`` (seed 004).
- ``text`` / ``audio`` / ``video``: one modality, pooled -> MLP head.

Auxiliary heads, on by their loss weights: VAD regression and 3-way sentiment on the fused vector,
and the MICL projector on the pooled per-modality vectors of the intra-modal encoders
(:mod:`mer.models.losses`).
``config.task = "regression"`` makes the main head one sentiment score (seed 002).

Any non-empty subset of the modalities can be scored. A modality is *absent* on a row whose mask
row is all False (:meth:`FusionModel.forward` also fills in one missing from the inputs), and
``config.modality_dropout`` drops modalities at random in training. What absence means:

- ``crossmodal``: absent modalities are masked out of the keys (a modality whose others are all
  absent keeps its hidden states); the ``modality`` gate's softmax runs over the present
  modalities and sums to their number; the ``vector`` gate's term of an absent modality is 0; the
  interaction term averages the products of the pairs present on both sides (0 with fewer than
  two); gate ``none`` concatenates a learned missing vector (:class:`MissingModalityVectors`) in
  its place. The decoder's memory keeps its positions masked.
- ``concat`` / ``ensemble``'s early path: the learned missing vector replaces its pooled vector
  (unimodal modes have one modality, never absent on a row that can be scored).
- ``late`` / ``ensemble``'s late path: the average of the present modalities' logits, the learned
  weights renormalised over them.
- ``gates``: 0 for absent modalities. MICL scores each pair on the rows where both are present.

With every modality present all of this is the identity: the same outputs, bit for bit, as
before it existed (``torch.where`` selects rather than recomputes), and the missing vectors get
no gradient.

Shape legend: see :mod:`mer.models.attention`.

>>> config = FusionConfig(input_dims={"text": 8, "audio": 6}, modalities=("text", "audio"),
...                       d_model=16, num_heads=2, num_classes=4)
>>> model = FusionModel(config)
>>> feats = {"text": torch.randn(3, 5, 8), "audio": torch.randn(3, 7, 6)}
>>> masks = {"text": torch.ones(3, 5, dtype=torch.bool), "audio": torch.ones(3, 7, dtype=torch.bool)}
>>> out = model(feats, masks)
>>> tuple(out.logits.shape), tuple(out.gates.shape)
((3, 4), (3, 2))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional

from mer.models.attention import AttentionBlock, CrossModalLayer, masked_mean
from mer.models.config import FusionConfig
from mer.models.dropout import Dropout
from mer.models.frame_pooling import pool_frames
from mer.models.layer_weighting import LayerWeighting
from mer.models.losses import correlation_loss, masked_mse, micl_loss
from mer.models.melcnn import MelCNNProjection
from mer.vocab import MODALITIES

__all__ = [
    "FUSERS",
    "FusionConfig",
    "FusionModel",
    "FusionOutput",
    "MissingModalityVectors",
    "masked_mean",
    "sentiment_classes",
]


@dataclass
class FusionOutput:
    """Model outputs.

    Attributes:
        logits (`FloatTensor` of shape `(B, C)`): emotion logits; `(B, 1)` sentiment scores when
            ``task == "regression"``.
        embeddings (`FloatTensor` of shape `(B, E)`): the fused utterance representation.
        gates (`FloatTensor` of shape `(B, M)` or None): per-utterance weight of each modality
            (``crossmodal`` with a ``modality`` or ``vector`` gate), 0 where it is absent.
        vad (`FloatTensor` `(B, 3)` or None): VAD estimate (when ``vad_weight > 0``).
        sentiment_logits (`FloatTensor` `(B, 3)` or None): multi-task sentiment head.
        loss (`FloatTensor` scalar or None): the weighted total when targets were given.
        losses (dict[str, float]): each term of the total, detached, for logging.
    """

    logits: torch.Tensor
    embeddings: torch.Tensor
    gates: torch.Tensor | None = None
    vad: torch.Tensor | None = None
    sentiment_logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    losses: dict[str, float] = field(default_factory=dict)


def sentiment_classes(scores: torch.Tensor) -> torch.Tensor:
    """3-way sentiment from scores: 0 negative (< 0), 1 neutral (== 0), 2 positive (> 0); -1 for
    NaN (no label). MELD's -1 / 0 / 1 and MOSI's derived 3-class labels both follow this rule.

    >>> sentiment_classes(torch.tensor([-1.5, 0.0, 2.0, float("nan")])).tolist()
    [0, 1, 2, -1]
    """
    classes = torch.sign(torch.nan_to_num(scores)).long() + 1
    return torch.where(torch.isnan(scores), torch.full_like(classes, -1), classes)


class ModalityProjection(nn.Module):
    """Per-dimension standardisation + Linear from an encoder's space (D) to the shared width (H).

    The mean / std buffers are fitted on the training split (:meth:`FusionModel.set_feature_statistics`)
    and saved with the weights: frozen random-init encoders give nearly collinear vectors whose
    emotion information only shows after a per-dimension z-score.
    """

    def __init__(self, input_dim: int, config: FusionConfig, num_layers: int = 1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))
        # K > 1 stored encoder layers -> one, after the standardisation (per layer and dimension)
        self.layers = None
        if num_layers > 1:
            weighted = config.layer_weighting == "weighted"
            self.layers = LayerWeighting(num_layers, input_dim // num_layers, weighted)
        self.linear = nn.Linear(input_dim // num_layers, config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
        """`(B, L, D)` -> `(B, L, H)`; ``adapter`` (optional) acts on the standardised features.
        With K stored layers D is K x the layer width, mixed into one layer before the Linear."""
        standardised = (hidden_states - self.mean) / self.std  # (B, L, D)
        if adapter is not None:
            standardised = adapter(standardised)
        if self.layers is not None:
            standardised = self.layers(standardised)  # (B, L, D / K)
        return self.dropout(self.linear(standardised))


class InputAdapter(nn.Module):
    """Residual bottleneck adapter on an encoder's features, ``x + up(GELU(down(x)))``; ``up``
    starts at zero, so a freshly added adapter leaves the model's outputs unchanged.

    >>> adapter = InputAdapter(6, 2)
    >>> x = torch.randn(2, 3, 6); bool(torch.equal(adapter(x), x))
    True
    """

    def __init__(self, input_dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(input_dim, bottleneck)
        self.up = nn.Linear(bottleneck, input_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, L, D)` -> `(B, L, D)`."""
        return hidden_states + self.up(functional.gelu(self.down(hidden_states)))


def mlp_head(input_dim: int, config: FusionConfig, output_dim: int) -> nn.Sequential:
    """LayerNorm -> Linear(E, H) -> GELU -> Dropout -> Linear(H, output_dim); ``head: superb``:
    one Linear(E, output_dim) (s3prl's ``UtteranceLevel`` read-out)."""
    if config.head == "superb":
        return nn.Sequential(nn.Linear(input_dim, output_dim))
    return nn.Sequential(
        nn.LayerNorm(input_dim),
        nn.Linear(input_dim, config.d_model),
        nn.GELU(),
        Dropout(config.dropout),
        nn.Linear(config.d_model, output_dim),
    )


class MissingModalityVectors(nn.Module):
    """A learned vector per modality that stands in for its pooled vector on the rows where it is
    absent (``concat``, ``ensemble``'s early path, ``crossmodal`` with gate ``none``).

    The vectors start at zero (no random draw, so the seeded weights of every other parameter stay
    as they were). A modality present on every row of a batch is passed through untouched: its
    vector gets no gradient (None, which AdamW and gradient clipping skip).

    >>> config = FusionConfig(input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"),
    ...                       d_model=8, num_heads=2)
    >>> pooled = {"text": torch.ones(2, 8), "audio": torch.ones(2, 8)}
    >>> filled = MissingModalityVectors(config)(pooled, torch.tensor([[True, True], [True, False]]))
    >>> filled["audio"][:, 0].tolist(), filled["text"] is pooled["text"]
    ([1.0, 0.0], True)
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.vectors = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(config.d_model)) for m in self.modalities}
        )

    def forward(self, pooled: dict[str, torch.Tensor], present: torch.Tensor) -> dict[str, torch.Tensor]:
        """pooled[m] `(B, H)`, present `(B, M)` -> pooled[m], the missing vector on rows without m."""
        filled = dict(pooled)
        for i in (~present).any(0).nonzero().flatten().tolist():  # modalities absent on some row
            modality = self.modalities[i]
            filled[modality] = torch.where(present[:, i, None], pooled[modality], self.vectors[modality])
        return filled


class GatedFusion(nn.Module):
    """Reliability-aware fusion with a beta-weighted cross-modal interaction term.

    ``i`` is the mean of the pairwise products ``h_a * h_b`` over modality pairs (for text + audio
    exactly seed 003's ``h_t * h_a``) and ``h = sum_m g_m * h_m + beta * i`` where the gate
    ``g_m`` is, by ``config.gate``:

    - ``modality``: a per-utterance modality weight ``M * softmax_m(s_m)`` with a reliability
      score ``s_m = v_m . tanh(W_m h_m)`` read from the modality's own pooled vector; weights sum
      to M, so 1 each means "no preference".
    - ``vector``: seed 003's EAAF gate ``sigmoid(W_m [h_1; ...; h_M; i] + b_m)``, one value per
      dimension.
    - ``none``: no gate and no beta: ``h = [h_1; ...; h_M]`` (the standard cross-attention
      baseline of seeds 002 / 003).

    The reported gate per modality is ``g_m`` (``modality``) or the mean of its dimensions.
    Absent modalities (``present`` False) get gate 0; the ``modality`` gates of the present ones
    sum to their number; ``i`` averages the pairs present on both sides; ``none`` concatenates
    :class:`MissingModalityVectors` in their place.

    >>> config = FusionConfig(input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"),
    ...                       d_model=8, num_heads=2)
    >>> pooled = {"text": torch.randn(2, 8), "audio": torch.randn(2, 8)}
    >>> fused, gates, _ = GatedFusion(config)(pooled, torch.ones(2, 2, dtype=torch.bool))
    >>> tuple(fused.shape), torch.allclose(gates.sum(-1), torch.tensor(2.0))
    ((2, 8), True)
    >>> GatedFusion(config)(pooled, torch.tensor([[True, True], [False, True]]))[1][1].tolist()
    [0.0, 1.0]
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.gate_type = config.gate
        width = config.d_model
        self.output_dim = width * len(self.modalities) if config.gate == "none" else width
        if config.gate == "modality":
            self.scores = nn.ModuleDict(
                {
                    m: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
                    for m in self.modalities
                }
            )
        elif config.gate == "vector":
            context = (len(self.modalities) + 1) * width
            self.gates = nn.ModuleDict({m: nn.Linear(context, width) for m in self.modalities})
        if config.gate != "none":
            beta = torch.tensor(float(config.beta))
            if config.beta_learnable:
                self.beta = nn.Parameter(beta)
            else:
                self.register_buffer("beta", beta)
        else:
            self.missing = MissingModalityVectors(config)

    def forward(
        self, pooled: dict[str, torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """pooled[m] `(B, H)`, present `(B, M)` True where m is present -> fused `(B, E)`, gate per
        modality `(B, M)` (None for ``none``) and each modality's weight, `(B, 1)` or `(B, H)`, to
        scale its sequence with."""
        if self.gate_type == "none":
            pooled = self.missing(pooled, present)
            ones = {m: torch.ones_like(pooled[m][:, :1]) for m in self.modalities}
            return torch.cat([pooled[m] for m in self.modalities], dim=-1), None, ones  # (B, M*H)
        vectors = [pooled[m] for m in self.modalities]
        pairs = list(itertools.combinations(range(len(vectors)), 2))
        products = torch.stack([vectors[a] * vectors[b] for a, b in pairs])  # (P, B, H)
        both = torch.stack([present[:, a] & present[:, b] for a, b in pairs]).unsqueeze(-1)  # (P, B, 1)
        # rows missing a pair: the mean over the pairs they have; the others keep the plain mean
        partial = products.masked_fill(~both, 0.0).sum(0) / both.sum(0).clamp(min=1)  # (B, H)
        interaction = torch.where(both.all(0), products.mean(0), partial)  # (B, H)
        fused = self.beta * interaction
        weights: dict[str, torch.Tensor] = {}
        if self.gate_type == "modality":
            scores = torch.cat([self.scores[m](pooled[m]) for m in self.modalities], dim=-1)  # (B, M)
            scores = scores.masked_fill(~present, float("-inf"))  # absent: weight exactly 0
            gate_values = present.sum(-1, keepdim=True) * torch.softmax(scores, dim=-1)  # (B, M)
            for i, modality in enumerate(self.modalities):
                weights[modality] = gate_values[:, i : i + 1]  # (B, 1)
        else:
            context = torch.cat([pooled[m] for m in self.modalities] + [interaction], dim=-1)  # (B, (M+1)H)
            weights = {
                m: torch.sigmoid(self.gates[m](context)).masked_fill(~present[:, i, None], 0.0)
                for i, m in enumerate(self.modalities)
            }  # (B, H)
            gate_values = torch.stack([weights[m].mean(-1) for m in self.modalities], dim=-1)  # (B, M)
        for modality in self.modalities:
            fused = fused + weights[modality] * pooled[modality]
        return fused, gate_values, weights


class EmotionQueryDecoder(nn.Module):
    """Seed 000's emotion-level transformer decoder: one learned query per emotion attends to the
    fused cross-modal memory; a shared linear read-out of each query's output is its logit.

    >>> config = FusionConfig(input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"),
    ...                       d_model=8, num_heads=2, num_classes=4, decoder_layers=1)
    >>> memory, mask = torch.randn(2, 9, 8), torch.ones(2, 9, dtype=torch.bool)
    >>> EmotionQueryDecoder(config)(memory, mask).shape
    torch.Size([2, 4])
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(config.num_classes, config.d_model) * 0.02)
        layer = nn.TransformerDecoderLayer(
            config.d_model, config.num_heads, dim_feedforward=2 * config.d_model,
            dropout=config.dropout, activation="gelu", batch_first=True,
        )  # fmt: skip
        self.decoder = nn.TransformerDecoder(layer, num_layers=config.decoder_layers)
        self.read_out = nn.Linear(config.d_model, 1)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """memory `(B, S, H)`, memory_mask `(B, S)` True = real -> logits `(B, C)`."""
        queries = self.queries.unsqueeze(0).expand(len(memory), -1, -1)  # (B, C, H)
        decoded = self.decoder(queries, memory, memory_key_padding_mask=~memory_mask)  # (B, C, H)
        return self.read_out(decoded).squeeze(-1)  # (B, C)


class LateFusion(nn.Module):
    """A classifier per modality; logits averaged with learned softmax weights (init uniform),
    renormalised over the modalities present on each row."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.heads = nn.ModuleDict(
            {m: mlp_head(config.d_model, config, config.num_outputs) for m in self.modalities}
        )
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities)))

    def weights(self) -> torch.Tensor:
        """`(M,)` modality weights, summing to 1."""
        return torch.softmax(self.weight_logits, dim=0)

    def forward(self, pooled: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """pooled[m] `(B, H)`, present `(B, M)` -> logits `(B, C)`."""
        logits = torch.stack([self.heads[m](pooled[m]) for m in self.modalities], dim=0)  # (M, B, C)
        averaged = (self.weights()[:, None, None] * logits).sum(0)  # (B, C)
        # rows with absent modalities: the softmax over the present ones (absent weigh exactly 0);
        # selected rather than used on every row, whose per-row softmax gradients summed over the
        # batch differ from the shared weights' in the last bits
        row_weights = torch.softmax(self.weight_logits.masked_fill(~present, float("-inf")), dim=-1)  # (B, M)
        renormalised = (row_weights.T[:, :, None] * logits).sum(0)  # (B, C)
        return torch.where(present.all(-1, keepdim=True), averaged, renormalised)


class CrossModalFuser(nn.Module):
    """``crossmodal``: cross-modal attention layers -> masked mean pooling -> :class:`GatedFusion`
    -> an MLP head, or seed 000's emotion-query decoder (``decoder_layers > 0``)."""

    #: Parameters after fusion, what the ``head`` few-shot strategy fine-tunes.
    head_prefixes = ("head.", "decoder.", "fused_token.")

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = config.used_modalities
        self.cross_layers = nn.ModuleList([CrossModalLayer(config) for _ in range(config.num_cross_layers)])
        self.fusion = GatedFusion(config)
        self.embedding_dim = self.fusion.output_dim
        if config.decoder_layers:
            self.decoder = EmotionQueryDecoder(config)
            # the fused vector joins the memory as one extra token (gate none: projected to H)
            self.fused_token = nn.Linear(self.embedding_dim, config.d_model)
        else:
            self.head = mlp_head(self.embedding_dim, config, config.num_outputs)

    def forward(
        self,
        hidden: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        intra_pooled: dict[str, torch.Tensor],
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """hidden[m] `(B, L_m, H)`, masks[m] `(B, L_m)`, present `(B, M)` -> logits `(B, C)`,
        embeddings `(B, E)`, gates `(B, M)` (None for gate ``none``)."""
        for layer in self.cross_layers:
            hidden = layer(hidden, masks)
        pooled = {m: masked_mean(hidden[m], masks[m]) for m in self.modalities}  # (B, H)
        embeddings, gates, weights = self.fusion(pooled, present)  # (B, E), (B, M), {m: (B, 1 | H)}
        if not self.config.decoder_layers:
            return self.head(embeddings), embeddings, gates  # (B, C)
        # memory: each modality's sequence scaled by its gate, plus the fused vector
        memory = torch.cat(
            [self.fused_token(embeddings).unsqueeze(1)]
            + [weights[m].unsqueeze(1) * hidden[m] for m in self.modalities],
            dim=1,
        )  # (B, 1 + sum L_m, H)
        memory_mask = torch.cat(
            [masks[self.modalities[0]][:, :1].new_ones(len(embeddings), 1)]
            + [masks[m] for m in self.modalities],
            dim=1,
        )  # (B, 1 + sum L_m)
        return self.decoder(memory, memory_mask), embeddings, gates  # (B, C)

    def learned_weights(self) -> dict[str, float]:
        """beta (gated fusion) and the mean VAD lambda (VAD-guided attention)."""
        values = {}
        if self.config.gate != "none":
            values["beta"] = float(self.fusion.beta.detach())
        if self.config.vad_guidance and self.config.num_cross_layers:
            lambdas = [
                float(block.vad_bias.vad_lambda.detach())
                for layer in self.cross_layers
                for block in layer.blocks.values()
            ]
            values["vad_lambda"] = sum(lambdas) / len(lambdas)
        return values


class EarlyFuser(nn.Module):
    """``concat`` (early fusion) and the unimodal modes: pooled modalities (an absent one's missing
    vector) concatenated -> MLP head."""

    head_prefixes = ("head.",)

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.embedding_dim = config.d_model * len(self.modalities)
        self.head = mlp_head(self.embedding_dim, config, config.num_outputs)
        self.missing = MissingModalityVectors(config)

    def forward(
        self,
        hidden: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        intra_pooled: dict[str, torch.Tensor],
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """intra_pooled[m] `(B, H)`, present `(B, M)` -> logits `(B, C)`, embeddings `(B, M*H)`,
        no gates."""
        filled = self.missing(intra_pooled, present)
        embeddings = torch.cat([filled[m] for m in self.modalities], dim=-1)  # (B, M*H)
        return self.head(embeddings), embeddings, None

    def learned_weights(self) -> dict[str, float]:
        return {}


class LateFuser(nn.Module):
    """``late``: a classifier per modality (:class:`LateFusion`); the embedding is the
    concatenation of the pooled modalities (zeros for an absent one)."""

    head_prefixes = ("late.",)

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.embedding_dim = config.d_model * len(self.modalities)
        self.late = LateFusion(config)

    def forward(
        self,
        hidden: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        intra_pooled: dict[str, torch.Tensor],
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """intra_pooled[m] `(B, H)`, present `(B, M)` -> logits `(B, C)`, embeddings `(B, M*H)`,
        no gates."""
        embeddings = torch.cat([intra_pooled[m] for m in self.modalities], dim=-1)  # (B, M*H)
        return self.late(intra_pooled, present), embeddings, None

    def learned_weights(self) -> dict[str, float]:
        weights = self.late.weights().tolist()
        return {f"late_weight/{m}": w for m, w in zip(self.modalities, weights, strict=True)}


class EnsembleFuser(nn.Module):
    """``ensemble`` (seed 004): ``(w_e * early + w_l * late) / (w_e + w_l)``, ``w = sigmoid(learned
    scalar)``, the early head over the concatenation and the late per-modality classifiers."""

    head_prefixes = ("head.", "late.", "ensemble_logits")

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.modalities = config.used_modalities
        self.embedding_dim = config.d_model * len(self.modalities)
        self.head = mlp_head(self.embedding_dim, config, config.num_outputs)
        self.late = LateFusion(config)
        self.ensemble_logits = nn.Parameter(torch.zeros(2))  # sigmoid(0) = equal weights
        self.missing = MissingModalityVectors(config)

    def forward(
        self,
        hidden: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        intra_pooled: dict[str, torch.Tensor],
        present: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """intra_pooled[m] `(B, H)`, present `(B, M)` -> logits `(B, C)`, embeddings `(B, M*H)`
        (the early path's, with missing vectors), no gates."""
        filled = self.missing(intra_pooled, present)
        embeddings = torch.cat([filled[m] for m in self.modalities], dim=-1)  # (B, M*H)
        early, late = self.head(embeddings), self.late(intra_pooled, present)  # (B, C) each
        w_early, w_late = torch.sigmoid(self.ensemble_logits)
        return (w_early * early + w_late * late) / (w_early + w_late), embeddings, None

    def learned_weights(self) -> dict[str, float]:
        weights = {
            f"late_weight/{m}": w for m, w in zip(self.modalities, self.late.weights().tolist(), strict=True)
        }
        w_early, w_late = torch.sigmoid(self.ensemble_logits.detach()).tolist()
        return {**weights, "ensemble_weight/early": w_early, "ensemble_weight/late": w_late}


#: The fusion part of each mode (unimodal modes fuse one modality: early fusion of one).
FUSERS: dict[str, type[nn.Module]] = {
    "crossmodal": CrossModalFuser,
    "concat": EarlyFuser,
    "late": LateFuser,
    "ensemble": EnsembleFuser,
    **{m: EarlyFuser for m in MODALITIES},
}


class FusionModel(nn.Module):
    """Emotion (or sentiment) model over per-modality sequence features (see the module docstring):
    per-modality projections and intra-modal attention, then ``fuser``, the mode's fusion part
    (:data:`FUSERS`), then the auxiliary heads."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        missing = [m for m in config.used_modalities if m not in config.input_dims]
        if missing:
            raise ValueError(
                f"FusionConfig.input_dims has no entry for modalities {missing}: bind the data's dims"
            )
        self.config = config
        self.modalities = config.used_modalities
        self.projections = nn.ModuleDict(
            {
                m: ModalityProjection(config.input_dims[m], config, config.input_layers.get(m, 1))
                for m in self.modalities
            }
        )
        if config.audio_frontend == "melcnn" and "audio" in self.modalities:
            # seed 004's mel-CNN in place of the audio projection (mer.models.melcnn); none builds
            # nothing here, so its models keep their weights and RNG draws bit for bit
            self.projections["audio"] = MelCNNProjection(config.input_dims["audio"], config)
        # head superb (SUPERB's downstream) pools the projections directly: no intra-modal block
        self.encoders = nn.ModuleDict(
            {m: AttentionBlock(config) for m in self.modalities if config.head == "mlp"}
        )
        # created here, after the encoders: the parameter creation order fixes the seeded weights
        self.fuser = FUSERS[config.mode](config)
        embedding_dim = self.embedding_dim = (
            self.fuser.embedding_dim
        )  # E, the width of FusionOutput.embeddings
        self.input_adapters = None
        if config.input_adapters:
            self.input_adapters = nn.ModuleDict(
                {m: InputAdapter(config.input_dims[m], config.input_adapters) for m in self.modalities}
            )
        self.vad_head = nn.Linear(embedding_dim, 3) if config.vad_weight > 0 else None
        self.sentiment_head = nn.Linear(embedding_dim, 3) if config.sentiment_weight > 0 else None
        if config.micl_weight > 0:
            width = config.d_model
            self.micl_projector = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        labels: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        vad: torch.Tensor | None = None,
        sentiment: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Score a batch; with targets, also the weighted total loss.

        A modality is absent on a row whose mask row is all False, and on every row when it is
        in neither ``features`` nor ``masks`` (it is then filled with a `(B, 1, D_m)` zero tensor
        and an all-False `(B, 1)` mask). Its feature values are then ignored; how each mode does
        without it is in the module docstring. Every row needs at least one present modality
        (ValueError otherwise). In training, ``config.modality_dropout`` > 0 drops each present
        modality of each row with that probability (masks only; the inputs are not modified),
        keeping one of them at random on a row that would lose them all.

        Args:
            features (dict of `FloatTensor` of shape `(B, L_m, D_m)`): per-modality sequences.
            masks (dict of `BoolTensor` of shape `(B, L_m)`): True on real positions.
            labels (`LongTensor` of shape `(B,)`, optional): emotion class ids (classification).
            class_weights (`FloatTensor` of shape `(C,)`, optional): cross-entropy class weights.
            vad (`FloatTensor` of shape `(B, 3)`, optional): VAD targets scaled to [-1, 1], NaN
                where unknown (used when ``vad_weight > 0``).
            sentiment (`FloatTensor` of shape `(B,)`, optional): sentiment scores in [-3, 3], NaN
                where unknown (regression target; multi-task sentiment class by its sign).
        """
        features, masks = self._fill_absent(features, masks)
        present = torch.stack([masks[m].any(-1) for m in self.modalities], dim=-1)  # (B, M)
        empty = (~present.any(-1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"rows {empty} have no modality present (all masks False): each row needs at least "
                f"one of {list(self.modalities)}"
            )
        if self.training and self.config.modality_dropout > 0:
            masks, present = self._drop_modalities(masks, present)
        hidden = {}
        if "audio" in self.modalities and self.config.audio_pool > 1:  # (B, T, D) -> (B, T', D)
            pooled = pool_frames(features["audio"], masks["audio"], self.config.audio_pool)
            features["audio"], masks["audio"] = pooled
        for m in self.modalities:
            adapter = None if self.input_adapters is None else self.input_adapters[m]
            if isinstance(self.projections[m], MelCNNProjection):  # fewer frames: its mask is pooled too
                projected, masks[m] = self.projections[m](features[m], masks[m], adapter)  # (B, L_m', H)
            else:
                projected = self.projections[m](features[m], adapter)  # (B, L_m, H)
            # intra-modal self-attention (head superb pools the projections directly)
            hidden[m] = self.encoders[m](projected, projected, masks[m]) if m in self.encoders else projected
        # MICL aligns these intra-modal vectors: after cross-modal attention every modality
        # already mixes in the others (dev UA of the full seed-003 model, 3 seeds: 0.964 here
        # vs 0.933 on the post-cross-attention vectors)
        intra_pooled = {m: masked_mean(hidden[m], masks[m]) for m in self.modalities}  # (B, H)
        logits, embeddings, gates = self.fuser(hidden, masks, intra_pooled, present)  # (B, C), (B, E), (B, M)
        output = FusionOutput(logits=logits, embeddings=embeddings, gates=gates)
        if self.vad_head is not None:
            output.vad = self.vad_head(embeddings)  # (B, 3)
        if self.sentiment_head is not None:
            output.sentiment_logits = self.sentiment_head(embeddings)  # (B, 3)
        if labels is not None or sentiment is not None:
            self._add_loss(output, intra_pooled, present, labels, class_weights, vad, sentiment)
        return output

    def _fill_absent(
        self, features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Add the modalities missing from both dicts as `(B, 1, D_m)` zeros with an all-False mask."""
        given = [m for m in self.modalities if m in features and m in masks]
        half = [m for m in self.modalities if (m in features) != (m in masks)]
        if half or not given:
            raise ValueError(
                f"features and masks must both hold each modality or both omit it (absent), and hold "
                f"at least one of {list(self.modalities)}; got features {sorted(features)}, masks "
                f"{sorted(masks)}"
            )
        reference = features[given[0]]
        features, masks = dict(features), dict(masks)
        for m in self.modalities:
            if m not in features:
                features[m] = reference.new_zeros(len(reference), 1, self.config.input_dims[m])
                masks[m] = torch.zeros(len(reference), 1, dtype=torch.bool, device=reference.device)
        return features, masks

    def _drop_modalities(
        self, masks: dict[str, torch.Tensor], present: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Modality dropout: each present modality of each row is dropped (mask row all False)
        with probability ``config.modality_dropout``, from one `(B, M)` uniform draw of the global
        generator. A row that would lose all its modalities keeps the one with the largest draw:
        its draws are i.i.d. uniform below p, so that is one of them chosen uniformly at random."""
        draws = torch.rand(present.shape, device=present.device)  # (B, M)
        kept = present & (draws >= self.config.modality_dropout)  # (B, M)
        rescued = functional.one_hot(draws.masked_fill(~present, -1.0).argmax(-1), len(self.modalities))
        kept = kept | (rescued.bool() & ~kept.any(-1, keepdim=True))
        return {m: masks[m] & kept[:, i, None] for i, m in enumerate(self.modalities)}, kept

    def _add_loss(
        self,
        output: FusionOutput,
        intra_pooled: dict[str, torch.Tensor],
        present: torch.Tensor,
        labels: torch.Tensor | None,
        class_weights: torch.Tensor | None,
        vad: torch.Tensor | None,
        sentiment: torch.Tensor | None,
    ) -> None:
        config = self.config
        terms: dict[str, torch.Tensor] = {}
        if config.task == "regression":
            if sentiment is None:
                raise ValueError("task regression needs sentiment targets")
            known = ~torch.isnan(sentiment)
            terms["regression"] = correlation_loss(
                output.logits[known, 0], sentiment[known], config.corr_alpha, config.corr_beta
            )
        else:
            if labels is None:
                raise ValueError("task classification needs emotion labels")
            terms["cls"] = functional.cross_entropy(
                output.logits, labels, weight=class_weights, label_smoothing=config.label_smoothing
            )
        total = sum(terms.values())
        if output.vad is not None and vad is not None:
            terms["vad"] = masked_mse(output.vad, vad)
            total = total + config.vad_weight * terms["vad"]
        if output.sentiment_logits is not None and sentiment is not None:
            classes = sentiment_classes(sentiment)
            if (classes >= 0).any():
                terms["sentiment"] = functional.cross_entropy(
                    output.sentiment_logits, classes, ignore_index=-1
                )
                total = total + config.sentiment_weight * terms["sentiment"]
        if config.micl_weight > 0 and len(output.logits) > 1:
            projected = {m: self.micl_projector(intra_pooled[m]) for m in self.modalities}  # (B, H)
            rows = {m: present[:, i] for i, m in enumerate(self.modalities)}  # (B,) each
            terms["micl"] = micl_loss(projected, config.micl_temperature, rows)
            total = total + config.micl_weight * terms["micl"]
        output.loss = total
        output.losses = {name: float(value.detach()) for name, value in terms.items()}

    def set_feature_statistics(self, statistics: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Set each modality's input standardisation from (mean `(D,)`, std `(D,)`) of train frames."""
        for modality in self.modalities:
            mean, std = statistics[modality]
            self.projections[modality].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.projections[modality].std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6))

    def add_input_adapters(self, bottleneck: int) -> None:
        """Insert identity-initialised :class:`InputAdapter` s (recorded in the config, so a saved
        model reloads with them)."""
        self.config.input_adapters = bottleneck
        device = next(self.parameters()).device
        self.input_adapters = nn.ModuleDict(
            {m: InputAdapter(self.config.input_dims[m], bottleneck) for m in self.modalities}
        ).to(device)

    def head_parameter_names(self) -> list[str]:
        """Names of the parameters after fusion (the mode's head, decoder, late classifiers,
        ensemble weights and the auxiliary heads): what the ``head`` few-shot strategy fine-tunes."""
        prefixes = (*(f"fuser.{p}" for p in self.fuser.head_prefixes), "vad_head.", "sentiment_head.")
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes)]

    @property
    def beta(self) -> float | None:
        """Current beta (``crossmodal`` with a gate), else None."""
        return self.fuser.learned_weights().get("beta")

    def fusion_weights(self) -> dict[str, float]:
        """The learned scalars worth logging: beta, VAD lambda, late / ensemble weights, and the
        layer weights of ``layer_weighting: weighted`` (``layer_weight/<modality>/<k>``)."""
        weights = dict(self.fuser.learned_weights())
        for m in self.modalities:
            mixer = getattr(self.projections[m], "layers", None)  # other projections mix no layers
            if mixer is not None and mixer.weights is not None:
                for k, value in enumerate(mixer.layer_weights().tolist()):
                    weights[f"layer_weight/{m}/{k}"] = value
        return {k: round(v, 5) for k, v in weights.items()}
