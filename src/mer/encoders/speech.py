"""Self-supervised speech encoders (WavLM / wav2vec2 / HuBERT): :class:`AudioEncoder` and the
small configs behind the offline ``random-init:`` specs.

========================  ==================================================================
spec                      model
========================  ==================================================================
``random-init:wavlm``     ``WavLMModel(random_wavlm_config())``, seeded random weights
``random-init:wav2vec2``  ``Wav2Vec2Model(random_wav2vec2_config())``, seeded random weights
``random-init:hubert``    ``HubertModel(random_hubert_config())``, seeded random weights
any other                 ``AutoModel.from_pretrained(spec)`` (a wav2vec2-style speech model;
                          ``org/name@<revision>`` pins model and feature extractor)
========================  ==================================================================

No package ships speech weights, so the ``random-init:`` specs build the real architectures from
small configs; :class:`~mer.encoders.base.EncoderInfo` says ``weights="random-init"``. Long audio
can be encoded in overlapping chunks (``AudioEncoder.encode(..., chunk_seconds=...)``) so a
mis-cut multi-minute clip neither runs out of memory nor has to be cut.

transformers is imported inside the functions that need it, not at the top: importing it takes
seconds, which every ``import mer.extract`` would pay (also for ``acoustic-74``), and tests set
``HF_HUB_OFFLINE`` before its first import.

Shape legend: B = batch, S = audio samples, T = encoder frames, D = hidden size, K = chosen layers.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from mer.encoders.base import (
    EncoderInfo,
    check_layers,
    config_hash,
    freeze,
    needs_hidden_states,
    pretrained_source,
    resolved_commit,
    seeded,
    stack_layers,
)

logger = logging.getLogger(__name__)

RANDOM_INIT_SPEECH_SPECS = ("random-init:wavlm", "random-init:wav2vec2", "random-init:hubert")
AUDIO_SAMPLE_RATE = 16000


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
        info: its :class:`~mer.encoders.base.EncoderInfo`.
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

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> AudioEncoder:
        """A ``random-init:`` model seeded with ``init_seed``, or ``spec``'s pretrained weights
        (``init_seed`` ignored), frozen in fp32 on ``device``.

        Pretrained inputs are prepared as the checkpoint's ``Wav2Vec2FeatureExtractor`` does: its
        ``do_normalize`` (zero mean / unit variance per utterance, over its real samples), zero
        padding with an attention mask (``tests/test_encoder_exactness.py`` checks both settings).

        Raises:
            ValueError: ``spec`` loads a model that is not a wav2vec2-style speech model.
        """
        if spec in RANDOM_INIT_SPEECH_SPECS:
            from transformers import HubertModel, Wav2Vec2Model, WavLMModel

            model_class, make_config = {
                "random-init:wavlm": (WavLMModel, random_wavlm_config),
                "random-init:wav2vec2": (Wav2Vec2Model, random_wav2vec2_config),
                "random-init:hubert": (HubertModel, random_hubert_config),
            }[spec]
            config = make_config()
            with seeded(init_seed):
                model = model_class(config)
            weights, normalize = "random-init", False
            revision = commit = None
        else:
            from transformers import AutoFeatureExtractor, AutoModel

            source, revision = pretrained_source(spec)
            model = AutoModel.from_pretrained(source, revision=revision, dtype=torch.float32)
            config = model.config
            weights = "pretrained"
            commit = resolved_commit(source, revision)
            try:
                extractor = AutoFeatureExtractor.from_pretrained(source, revision=revision)
                normalize = bool(extractor.do_normalize)
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
        model = freeze(model, device)
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
            revision=revision,
            commit=commit,
        )
        if weights == "random-init":
            info.extra["init_seed"] = init_seed
        return cls(model, info, normalize=normalize, batched=batched)

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
                **inputs, output_hidden_states=needs_hidden_states(layers, self.num_hidden_states)
            )
            hidden_states = stack_layers(output, layers, self.num_hidden_states)  # (B, T, K * D)
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

        >>> encoder = AudioEncoder.from_spec("random-init:wavlm")
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
