"""The one configuration of :class:`mer.models.fusion.FusionModel`.

``params.yaml`` fills it from two sections, so DVC re-runs only what a change touches:
``model`` (:attr:`FusionConfig.MODEL_KEYS`, shared by every model of a run) and ``fusion``
(:attr:`FusionConfig.FUSION_KEYS`, the main model; each recipe of the ``recipes`` section is a
partial ``fusion`` with other values). The data binds the rest (``input_dims``, ``num_classes``)
when a model is built. It validates itself, so a config read back from a checkpoint or written
by hand is checked the same way :mod:`mer.params` checks ``params.yaml``.

>>> config = FusionConfig(mode="concat", d_model=16, num_heads=2)
>>> config.beta, config.used_modalities
(0.5, ('text', 'audio', 'video'))
>>> FusionConfig(task="regression", sentiment_weight=0.5).needs().labels
('sentiment_score', 'sentiment_polarity')
>>> FusionConfig(mode="video", modalities=("text", "audio")).needs().modalities
('video',)
>>> FusionConfig(d_model=30, num_heads=4)
Traceback (most recent call last):
...
mer.validation.ParamsError: d_model (30) must be divisible by num_heads (4)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from mer.validation import ParamsError, check_value, in_range, one_of
from mer.vocab import FUSION_MODES, GATES, LABEL_KINDS, MODALITIES, TASKS

#: audio feature size ``audio_frontend: melcnn`` takes: seed 004's 40 mel bands (``logmel-40``)
MELCNN_INPUT_DIM = 40
LAYER_WEIGHTINGS = ("last", "weighted")  # fusion.layer_weighting (mer.models.layer_weighting)
HEADS = ("mlp", "superb")  # fusion.head


@dataclass(frozen=True)
class Needs:
    """What a model trains on besides the emotion classes (:meth:`FusionConfig.needs`).

    Attributes:
        labels (tuple[str, ...]): label kinds (``mer.vocab.LABEL_KINDS``) its losses read.
        modalities (tuple[str, ...]): the modalities it reads.
        settings (dict[str, str]): for each label kind, the setting that needs it
            (``{"sentiment_score": "task: regression"}``), for messages.
    """

    labels: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class FusionConfig:
    """Configuration of :class:`~mer.models.fusion.FusionModel` (saved with every checkpoint).

    Architecture (params.yaml ``model``):
        d_model (int, 64): width H of the modality projections and attention.
        num_heads (int, 4): attention heads (must divide ``d_model``).
        num_cross_layers (int, 1): bidirectional cross-modal attention layers (``crossmodal``).
        dropout (float, 0.1): dropout on the projections, residual branches, feed-forward and head.
        attention_dropout (float, 0.0): dropout on the attention probabilities. 0 (as in CLIP's
            and Llama's configs) lets PyTorch run its fused attention kernel in training as in
            evaluation; > 0 materialises ``(B, heads, Lq, Lk)`` probability and mask tensors,
            which made attention 2.3x slower per step on CPU (bench/PROFILE.md).
        modalities (tuple[str, ...], all three): modalities the multimodal modes fuse.
        audio_pool (int, 1): average this many consecutive audio frames before the audio
            projection (:mod:`mer.models.frame_pooling`; 4 turns WavLM's 50 Hz into 12.5 Hz). The
            audio sequence sets most of a step's work (self-attention ``L^2``, every cross-modal
            layer): one CPU training step took 124 / 84 / 60 ms at 1 / 2 / 4 (bench/PROFILE.md;
            params.yaml uses 4). 1 = no pooling, the value a checkpoint written before the field
            existed reads back as.

    Fusion and losses (params.yaml ``fusion``, or a recipe): the total loss is
    ``cls + vad_weight * vad + micl_weight * micl + sentiment_weight * sent``.
        mode (str, "crossmodal"): ``crossmodal`` (cross-modal attention + gated fusion, seeds
            000 / 002 / 003), ``concat`` (early fusion), ``late`` (weighted average of
            per-modality classifiers), ``ensemble`` (early + late with learnable sigmoid weights,
            seed 004) or one modality ``text`` / ``audio`` / ``video``.
        gate (str, "modality"): fusion after cross-modal attention: ``modality`` (per-utterance
            softmax reliability weights), ``vector`` (seed 003's EAAF per-dimension sigmoid gates)
            or ``none`` (concatenation, no beta: the seeds' standard cross-attention baseline).
        beta (float, 0.5): weight of the cross-modal interaction term ``beta * i`` added to the
            gated sum, ``i`` the mean of pairwise ``h_a * h_b`` (for text + audio exactly seed
            003's ``beta * (h_t * h_a)``); the initial value when ``beta_learnable``. Used by
            ``crossmodal`` with a ``modality`` or ``vector`` gate; no other mode has a beta.
        beta_learnable (bool, True): learn beta from its initial value.
        vad_guidance (bool, False): seed 003's VAD-guided cross-attention (scores + lambda * M_VAD).
        vad_lambda (float, 1.0): initial (learnable) lambda of the VAD affinity bias.
        decoder_layers (int, 0): > 0 replaces the MLP head by seed 000's emotion-level
            transformer decoder (one learned query per emotion) with this many layers.
        task (str, "classification"): ``classification`` (emotion) or ``regression`` (continuous
            sentiment in [-3, 3], seed 002).
        label_smoothing (float, 0.0): label smoothing of the emotion cross-entropy (seed 003: 0.1).
        vad_weight (float, 0.0): lambda_vad, MSE of a VAD regression head on the fused vector.
        micl_weight (float, 0.0): lambda_micl, seed 003's symmetric cross-modal InfoNCE.
        micl_temperature (float, 0.1): tau of the MICL similarities.
        sentiment_weight (float, 0.0): multi-task 3-way sentiment head (negative / neutral /
            positive from the sign of the sentiment score; seeds 001 / 004).
        corr_alpha / corr_beta (float, 0.3 / 0.7): seed 002's regression loss
            ``alpha * MSE + beta * (1 - r)^2``.
        modality_dropout (float, 0.0): in training, the probability of dropping each modality of
            each row (its mask row set all False), so the model learns to score utterances with
            modalities absent (:mod:`mer.models.fusion`). A row never loses all its modalities: if
            every present one is drawn, it keeps one of them at random. Must be < 1; 0 draws no
            random numbers.

    Audio frontend (params.yaml ``fusion`` or a recipe; :mod:`mer.models.melcnn`):
        audio_frontend (str, "none"): ``none`` (the audio features go straight to their linear
            projection) or ``melcnn`` (seed 004's Conv1D branch over 40 log-mel bands, trained with
            the model, in place of the audio projection: needs ``extract.audio.model: logmel-40``).
        melcnn_channels (tuple[int, int], (64, 128)): output channels of its two convolutions.
        melcnn_kernel_size (int, 3): kernel width of both convolutions (odd: "same" padding).
        melcnn_pool (int, 2): max-pool width over time after them.
    Stored layers and SUPERB's downstream (params.yaml ``fusion``, or a recipe;
    :mod:`mer.models.layer_weighting`):
        layer_weighting (str, "last"): how a modality whose features store K > 1 encoder layers
            (``extract.audio.layers`` / ``extract.text.layers``) becomes one ``(L, D)`` sequence
            before its input projection: ``last`` (the last stored layer) or ``weighted`` (s3prl's
            ``Featurizer``: a learnable softmax over the K layers, weights starting at 0, without
            its optional per-layer layer norm). Modalities storing one layer pass through untouched.
        head (str, "mlp"): ``mlp`` (the intra-modal attention block, then the MLP head) or
            ``superb`` (s3prl's ``UtteranceLevel`` downstream: the projection, width ``d_model``,
            is mean-pooled directly and read out by one Linear; unimodal modes only).

    Bound from the data when the model is built:
        input_dims (dict[str, int], empty until bound): feature dim D of each modality's encoder,
            e.g. ``{"text": 384}``.
        num_classes (int, 4): emotion classes C.
        input_adapters (int, 0): > 0 inserts a residual bottleneck adapter of this width on each
            modality's standardised features, before its projection (the ``adapters`` few-shot
            strategy trains only these).
        input_layers (dict[str, int], empty = 1 each): encoder layers K side by side in each
            modality's features (their ``meta.json``); ``input_dims`` is then K x the layer width.
    """

    #: The fields params.yaml's ``model`` section sets.
    MODEL_KEYS: ClassVar[tuple[str, ...]] = (
        "d_model", "num_heads", "num_cross_layers", "dropout", "attention_dropout", "modalities",
        "audio_pool",
    )  # fmt: skip
    #: The fields params.yaml's ``fusion`` section (and each recipe) sets.
    FUSION_KEYS: ClassVar[tuple[str, ...]] = (
        "mode", "gate", "beta", "beta_learnable", "vad_guidance", "vad_lambda", "decoder_layers",
        "task", "label_smoothing", "vad_weight", "micl_weight", "micl_temperature",
        "sentiment_weight", "corr_alpha", "corr_beta", "modality_dropout",
        "layer_weighting", "head",
    )  # fmt: skip
    FUSION_KEYS += ("audio_frontend", "melcnn_channels", "melcnn_kernel_size", "melcnn_pool")
    #: The fields :meth:`needs` reads (the metadata stage declares exactly these params).
    NEEDS_KEYS: ClassVar[tuple[str, ...]] = ("modalities", "mode", "task", "sentiment_weight", "vad_weight")

    d_model: int = 64
    num_heads: int = 4
    num_cross_layers: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.0
    modalities: tuple[str, ...] = MODALITIES
    audio_pool: int = 1
    mode: str = "crossmodal"
    gate: str = "modality"
    beta: float = 0.5
    beta_learnable: bool = True
    vad_guidance: bool = False
    vad_lambda: float = 1.0
    decoder_layers: int = 0
    task: str = "classification"
    label_smoothing: float = 0.0
    vad_weight: float = 0.0
    micl_weight: float = 0.0
    micl_temperature: float = 0.1
    sentiment_weight: float = 0.0
    corr_alpha: float = 0.3
    corr_beta: float = 0.7
    modality_dropout: float = 0.0
    audio_frontend: str = "none"
    melcnn_channels: tuple[int, ...] = (64, 128)
    melcnn_kernel_size: int = 3
    melcnn_pool: int = 2
    layer_weighting: str = "last"
    head: str = "mlp"
    input_dims: dict[str, int] = field(default_factory=dict)
    num_classes: int = 4
    input_adapters: int = 0
    input_layers: dict[str, int] = field(default_factory=dict)

    _checks: ClassVar[dict] = {
        "d_model": in_range(4),
        "num_heads": in_range(1),
        "num_cross_layers": in_range(0, 12),
        "dropout": in_range(0.0, 0.9),
        "attention_dropout": in_range(0.0, 0.9),
        "modalities": {"subset_of": MODALITIES},
        "audio_pool": in_range(1, 16),
        "mode": one_of(*FUSION_MODES),
        "gate": one_of(*GATES),
        "beta": in_range(-10.0, 10.0),
        "vad_lambda": in_range(0.0, 100.0),
        "decoder_layers": in_range(0, 12),
        "task": one_of(*TASKS),
        "label_smoothing": in_range(0.0, 0.5),
        "vad_weight": in_range(0.0, 100.0),
        "micl_weight": in_range(0.0, 100.0),
        "micl_temperature": in_range(0.0, 10.0, lo_open=True),
        "sentiment_weight": in_range(0.0, 100.0),
        "corr_alpha": in_range(0.0, 100.0),
        "corr_beta": in_range(0.0, 100.0),
        "modality_dropout": in_range(0.0, 1.0),
        "num_classes": in_range(1),
        "input_adapters": in_range(0),
        "audio_frontend": one_of("none", "melcnn"),
        "melcnn_channels": {"each": in_range(1, 4096)},
        "melcnn_kernel_size": in_range(1, 31),
        "melcnn_pool": in_range(1, 16),
        "layer_weighting": one_of(*LAYER_WEIGHTINGS),
        "head": one_of(*HEADS),
    }

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        for key, rule in self._checks.items():
            check_value(key, getattr(self, key), rule)
        if self.modality_dropout >= 1.0:
            raise ParamsError(f"modality_dropout ({self.modality_dropout}) must be < 1")
        if self.d_model % self.num_heads:
            raise ParamsError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not self.modalities:
            raise ParamsError("modalities must name at least one modality")
        if self.mode in ("crossmodal", "late", "ensemble") and len(self.used_modalities) < 2:
            raise ParamsError(f"mode {self.mode} needs at least two modalities, got {list(self.modalities)}")
        if self.micl_weight > 0 and len(self.used_modalities) < 2:
            raise ParamsError("micl_weight > 0 needs at least two modalities (MICL is cross-modal)")
        if self.decoder_layers and (self.mode != "crossmodal" or self.task != "classification"):
            raise ParamsError(
                "decoder_layers > 0 (the emotion-query decoder) needs mode: crossmodal and task: "
                f"classification, got mode {self.mode!r}, task {self.task!r}"
            )
        if self.task == "regression" and self.corr_alpha == 0 and self.corr_beta == 0:
            raise ParamsError("corr_alpha and corr_beta are both 0: the regression loss is 0")
        missing = [m for m in self.used_modalities if m not in self.input_dims]
        if self.input_dims and missing:
            raise ParamsError(f"input_dims has no entry for modalities {missing}")
        check_layer_settings(self)
        self._check_audio_frontend()

    def _check_audio_frontend(self) -> None:
        """``melcnn``: two channel widths, an odd kernel, and (once bound) 40-d audio features."""
        self.melcnn_channels = tuple(self.melcnn_channels)
        if len(self.melcnn_channels) != 2:
            raise ParamsError(
                f"melcnn_channels {list(self.melcnn_channels)}: give two widths, e.g. [64, 128]"
            )
        if self.melcnn_kernel_size % 2 == 0:
            raise ParamsError(
                f"melcnn_kernel_size ({self.melcnn_kernel_size}) must be odd (same-length padding)"
            )
        audio_dim = self.input_dims.get("audio")
        if self.audio_frontend == "melcnn" and "audio" in self.used_modalities:
            if audio_dim not in (None, MELCNN_INPUT_DIM):
                raise ParamsError(
                    f"audio_frontend: melcnn (fusion section or the recipe; seed 004's mel-CNN) needs "
                    f"{MELCNN_INPUT_DIM} log-mel bands per audio frame (extract.audio.model: logmel-40), "
                    f"but the audio features are {audio_dim}-d; set extract.audio.model: logmel-40, or "
                    "audio_frontend: none"
                )

    @property
    def used_modalities(self) -> tuple[str, ...]:
        """The modalities this mode reads."""
        return (self.mode,) if self.mode in MODALITIES else self.modalities

    def needs(self) -> Needs:
        """The labels and modalities training this config reads, from the losses it turns on:

        - ``task: regression`` trains on the continuous sentiment score (``sentiment_score``);
        - ``sentiment_weight > 0``: the 3-way sentiment head trains on the score's sign
          (``sentiment_polarity``; MELD's -1 / 0 / 1 qualify);
        - ``vad_weight > 0``: the VAD head trains on valence / arousal / dominance (``vad``).
          ``vad_guidance`` reads no label: its VAD projection is learned from the emotion loss
          (and from the VAD head's loss only when ``vad_weight > 0``);
        - the modalities it reads (:attr:`used_modalities`): a unimodal mode its one modality,
          which must be one of ``modalities`` (params.yaml ``model.modalities``).

        Rows without a label are masked out of its loss; a corpus without the label at all
        would train the term on nothing, so :mod:`mer.recipes` skips such a model instead.
        """
        wanted = {
            "sentiment_score": ("task: regression", self.task == "regression"),
            "sentiment_polarity": (f"sentiment_weight: {self.sentiment_weight}", self.sentiment_weight > 0),
            "vad": (f"vad_weight: {self.vad_weight}", self.vad_weight > 0),
        }
        settings = {kind: wanted[kind][0] for kind in LABEL_KINDS if wanted[kind][1]}
        return Needs(tuple(settings), self.used_modalities, settings)

    @property
    def num_outputs(self) -> int:
        """Width of the main head: C classes, or 1 sentiment score."""
        return self.num_classes if self.task == "classification" else 1

    def to_dict(self) -> dict:
        """JSON-friendly fields (what a checkpoint stores)."""
        return {**asdict(self), "modalities": list(self.modalities)}


def check_layer_settings(config: FusionConfig) -> None:
    """The rules of ``layer_weighting`` / ``head`` / ``input_layers`` (see :class:`FusionConfig`).

    >>> FusionConfig(mode="audio", layer_weighting="weighted", input_dims={"audio": 8})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mer.validation.ParamsError: fusion.layer_weighting: weighted needs several stored layers, ...
    """
    if config.head == "superb" and config.mode not in MODALITIES:
        raise ParamsError(
            f"head: superb (SUPERB's utterance-level downstream of one encoder) needs a unimodal "
            f"mode (text, audio or video), got mode {config.mode!r}"
        )
    for modality, count in config.input_layers.items():
        width = config.input_dims.get(modality)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ParamsError(f"input_layers[{modality!r}] must be an integer >= 1, got {count!r}")
        if width is not None and width % count:
            raise ParamsError(
                f"input_layers[{modality!r}] = {count} does not divide its input dim {width}: the "
                "features' meta.json disagrees with the stored vectors; re-run the extract stage"
            )
    if config.input_dims and config.layer_weighting == "weighted":
        counts = {m: config.input_layers.get(m, 1) for m in config.used_modalities}
        if max(counts.values()) < 2:
            fields = " or ".join(f"extract.{m}.layers" for m in counts if m in ("audio", "text"))
            raise ParamsError(
                f"fusion.layer_weighting: weighted needs several stored layers, but the features of "
                f"{', '.join(counts)} store one layer each; store several with "
                f"{fields or 'extract.audio.layers'} (all, or e.g. [-4, -3, -2, -1]) and re-run the "
                "extract stage, or set layer_weighting: last"
            )
