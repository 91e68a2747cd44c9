"""The one configuration dataclass of :class:`mer.models.fusion.FusionModel`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mer.vocab import FUSION_MODES, GATES, MODALITIES, TASKS


@dataclass
class FusionConfig:
    """Configuration of :class:`~mer.models.fusion.FusionModel` (saved with every checkpoint).

    Architecture:
        input_dims (dict[str, int]): feature dim of each modality's encoder, e.g. ``{"text": 384}``.
        modalities (tuple[str, ...], all three): modalities the multimodal modes fuse.
        mode (str, "crossmodal"): ``crossmodal`` (cross-modal attention + gated fusion, seeds
            000 / 002 / 003), ``concat`` (early fusion), ``late`` (weighted average of
            per-modality classifiers), ``ensemble`` (early + late with learnable sigmoid weights,
            seed 004) or one modality ``text`` / ``audio`` / ``video``.
        d_model (int, 64): projection / attention width H.
        num_heads (int, 4): attention heads.
        num_cross_layers (int, 1): cross-modal attention layers (``crossmodal``).
        dropout (float, 0.1): dropout probability.
        gate (str, "modality"): fusion after cross-modal attention: ``modality`` (per-utterance
            softmax reliability weights), ``vector`` (seed 003's EAAF per-dimension sigmoid gates)
            or ``none`` (concatenation: the seeds' standard cross-attention baseline, no beta).
        beta (float, 0.5): weight of the cross-modal interaction term ``beta * i`` (``i`` = mean
            of pairwise ``h_a * h_b``) in gated fusion; its initial value if learnable.
        beta_learnable (bool, True): learn beta.
        vad_guidance (bool, False): seed 003's VAD-guided cross-attention.
        vad_lambda (float, 1.0): initial (learnable) lambda of the VAD affinity bias.
        decoder_layers (int, 0): > 0 replaces the MLP head by seed 000's emotion-level
            transformer decoder (one learned query per emotion) with this many layers.
        task (str, "classification"): ``classification`` (emotion) or ``regression`` (continuous
            sentiment in [-3, 3], seed 002).
        num_classes (int, 4): emotion classes C.

    Losses (the total is ``cls + vad_weight * vad + micl_weight * micl + sentiment_weight * sent``):
        label_smoothing (float, 0.0): label smoothing of the emotion cross-entropy (seed 003: 0.1).
        vad_weight (float, 0.0): lambda_vad, MSE of a VAD regression head on the fused vector.
        micl_weight (float, 0.0): lambda_micl, seed 003's symmetric cross-modal InfoNCE.
        micl_temperature (float, 0.1): tau of the MICL similarities.
        sentiment_weight (float, 0.0): multi-task 3-way sentiment head (negative / neutral /
            positive from the sign of the sentiment score; seeds 001 / 004).
        corr_alpha / corr_beta (float, 0.3 / 0.7): seed 002's ``alpha * MSE + beta * (1 - r)^2``.

    Transfer:
        input_adapters (int, 0): > 0 inserts a residual bottleneck adapter of this width on each
            modality's standardised features, before its projection (the ``adapters`` few-shot
            strategy trains only these).
    """

    input_dims: dict[str, int] = field(default_factory=dict)
    modalities: tuple[str, ...] = MODALITIES
    mode: str = "crossmodal"
    d_model: int = 64
    num_heads: int = 4
    num_cross_layers: int = 1
    dropout: float = 0.1
    gate: str = "modality"
    beta: float = 0.5
    beta_learnable: bool = True
    vad_guidance: bool = False
    vad_lambda: float = 1.0
    decoder_layers: int = 0
    task: str = "classification"
    num_classes: int = 4
    label_smoothing: float = 0.0
    vad_weight: float = 0.0
    micl_weight: float = 0.0
    micl_temperature: float = 0.1
    sentiment_weight: float = 0.0
    corr_alpha: float = 0.3
    corr_beta: float = 0.7
    input_adapters: int = 0

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        if self.mode not in FUSION_MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {FUSION_MODES}")
        missing = [m for m in self.used_modalities if m not in self.input_dims]
        if missing:
            raise ValueError(f"input_dims has no entry for modalities {missing}")
        if self.gate not in GATES:
            raise ValueError(f"gate {self.gate!r} is not one of {GATES}")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        if self.mode in ("crossmodal", "late", "ensemble") and len(self.used_modalities) < 2:
            raise ValueError(f"{self.mode} fusion needs at least two modalities, got {self.modalities}")
        if self.micl_weight > 0 and len(self.used_modalities) < 2:
            raise ValueError("micl_weight > 0 needs at least two modalities (MICL is cross-modal)")
        if self.decoder_layers and (self.mode != "crossmodal" or self.task != "classification"):
            raise ValueError(
                "decoder_layers > 0 (emotion-query decoder) needs mode crossmodal and task classification"
            )

    @property
    def used_modalities(self) -> tuple[str, ...]:
        """The modalities this mode reads."""
        return (self.mode,) if self.mode in MODALITIES else self.modalities

    @property
    def num_outputs(self) -> int:
        """Width of the main head: C classes, or 1 sentiment score."""
        return self.num_classes if self.task == "classification" else 1

    def to_dict(self) -> dict:
        return {**asdict(self), "modalities": list(self.modalities)}
