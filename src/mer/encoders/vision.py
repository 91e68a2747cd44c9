"""CLIP vision encoders: :class:`VideoEncoder` (one vector per frame) and the small config behind
the offline spec ``random-init:clip-vision``.

``random-init:clip-vision`` is ``CLIPVisionModel(random_clip_vision_config())`` with seeded random
weights (no package ships vision weights; :class:`~mer.encoders.base.EncoderInfo` says
``weights="random-init"``); any other spec goes to ``CLIPVisionModel.from_pretrained(spec)``
(``CLIPVisionModelWithProjection`` for ``embedding="projected"``), optionally pinned as
``org/name@<revision>``.

Input preparation differs on purpose:

- **pretrained specs** get exactly what the checkpoint's own image processor gives: its slow,
  PIL-based ``CLIPImageProcessor`` (``backend="pil"``, the reference implementation: shortest
  edge resized with bicubic resampling, centre crop, rescale, mean / std) is called on the frames.
  ``tests/test_encoder_exactness.py`` checks mer's pixel values and features against the
  processor and the model's own forward. Only a checkpoint without a usable processor falls back
  to the fixed torch path below (logged).
- **random-init specs** keep a fixed torch path (:meth:`VideoEncoder.preprocess`): shortest edge
  resized bilinearly with antialiasing (``round`` for the long side), centre crop, [0, 1], CLIP
  mean / std. It is vectorised over frames and is what the default run's features were made
  with; random weights were never trained on CLIP's bicubic inputs, so nothing is gained by
  changing it, and changing it would change every stored default feature.

transformers is imported inside the functions that need it, not at the top: importing it takes
seconds, which every ``import mer.extract`` would pay (also for ``acoustic-74``), and tests set
``HF_HUB_OFFLINE`` before its first import.

Shape legend: B = batch, F = video frames, H x W = frame size, C = colour channels, S = model
image size, D = hidden size.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mer.encoders.base import (
    EncoderInfo,
    config_hash,
    freeze,
    pretrained_source,
    resolved_commit,
    seeded,
)

logger = logging.getLogger(__name__)

RANDOM_INIT_VISION_SPECS = ("random-init:clip-vision",)
#: ``extract.video.embedding``: ``pooler`` = ``pooler_output`` (post-layernorm CLS, D = hidden
#: size); ``projected`` = CLIP's ``image_embeds`` (seed 004; 512-d for ViT-B/32)
VIDEO_EMBEDDINGS = ("pooler", "projected")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# frames per CLIP forward pass: bounds activation memory for long batches of clips
_VIDEO_CHUNK_FRAMES = 256


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
    """One CLIP vision vector per video frame: ``pooler_output`` (post-layernorm CLS) or the
    projected ``image_embeds``.

    With an ``image_processor`` (pretrained specs) frames are prepared by it; without one
    (random-init specs) by :meth:`preprocess`'s fixed torch path (see the module docstring).

    Args:
        model: a ``CLIPVisionModel`` (or ``CLIPVisionModelWithProjection`` for ``projected``).
        info: its :class:`~mer.encoders.base.EncoderInfo`.
        mean, std: per-channel normalisation (RGB) of the torch path.
        image_processor: the checkpoint's slow (PIL) image processor, or None.
        embedding: ``"pooler"`` or ``"projected"`` (:data:`VIDEO_EMBEDDINGS`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        info: EncoderInfo,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        image_processor: Any | None = None,
        embedding: str = "pooler",
    ) -> None:
        if embedding not in VIDEO_EMBEDDINGS:
            raise ValueError(
                f"extract.video.embedding: {embedding!r} is not one of {', '.join(VIDEO_EMBEDDINGS)}"
            )
        self.model = model
        self.info = info
        self.image_processor = image_processor
        self.embedding = embedding
        self.image_size = int(model.config.image_size)
        self.device = next(model.parameters()).device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_spec(
        cls, spec: str, *, init_seed: int = 0, device: str = "cpu", embedding: str = "pooler"
    ) -> VideoEncoder:
        """``random-init:clip-vision`` seeded with ``init_seed``, or ``spec``'s pretrained weights
        and slow image processor (``init_seed`` ignored; ``org/name@<revision>`` pins both),
        frozen in fp32 on ``device``; ``embedding`` picks the stored vector.

        Raises:
            ValueError: ``embedding`` is not ``pooler`` / ``projected``, or an empty revision.
        """
        from transformers import AutoImageProcessor, CLIPVisionModel, CLIPVisionModelWithProjection

        if embedding not in VIDEO_EMBEDDINGS:
            raise ValueError(
                f"extract.video.embedding: {embedding!r} is not one of {', '.join(VIDEO_EMBEDDINGS)}"
            )
        model_class = CLIPVisionModelWithProjection if embedding == "projected" else CLIPVisionModel
        mean, std = CLIP_MEAN, CLIP_STD
        processor, revision, commit = None, None, None
        if spec in RANDOM_INIT_VISION_SPECS:
            config = random_clip_vision_config()
            with seeded(init_seed):
                model = model_class(config)
            weights = "random-init"
        else:
            source, revision = pretrained_source(spec)
            model = model_class.from_pretrained(source, revision=revision, dtype=torch.float32)
            weights = "pretrained"
            commit = resolved_commit(source, revision)
            try:
                # the slow (PIL) processor is the reference implementation: bicubic resampling
                processor = AutoImageProcessor.from_pretrained(source, revision=revision, backend="pil")
                mean, std = tuple(processor.image_mean), tuple(processor.image_std)
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                processor = None
                logger.warning(
                    "%s: no usable image processor (%s); using mer's torch preprocessing "
                    "(bilinear, CLIP mean/std), which is not the checkpoint's",
                    spec,
                    exc,
                )
        model = freeze(model, device)
        config = model.config
        hidden_dim = config.projection_dim if embedding == "projected" else config.hidden_size
        info = EncoderInfo(
            model=spec,
            weights=weights,
            hidden_dim=int(hidden_dim),
            config_hash=config_hash(config),
            extra={
                "image_size": int(config.image_size),
                "patch_size": int(config.patch_size),
                "image_mean": list(mean),
                "image_std": list(std),
                "embedding": embedding,
                "preprocessing": (
                    f"checkpoint image processor ({type(processor).__name__})"
                    if processor is not None
                    else "mer torch path (bilinear antialias, centre crop)"
                ),
            },
            revision=revision,
            commit=commit,
        )
        if weights == "random-init":
            info.extra["init_seed"] = init_seed
        return cls(model, info, mean=mean, std=std, image_processor=processor, embedding=embedding)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> the model's ``pixel_values`` ``(F, 3, S, S)``: by the
        checkpoint's image processor if there is one, else by :meth:`preprocess`."""
        if self.image_processor is None:
            return self.preprocess(frames)
        pixel_values = self.image_processor(images=list(frames), return_tensors="pt").pixel_values
        return pixel_values.to(device=self.device, dtype=torch.float32)  # (F, C, S, S)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> normalised float32 ``(F, 3, image_size, image_size)`` by the
        fixed torch path of random-init specs (bilinear, antialiased; unchanged so the default
        run's features do not change)."""
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
        pixel_values = torch.cat([self.prepare(clip) for clip in clips])  # (sum F_i, C, S, S)
        vectors = []
        with torch.inference_mode():
            for start in range(0, pixel_values.shape[0], _VIDEO_CHUNK_FRAMES):
                chunk = pixel_values[start : start + _VIDEO_CHUNK_FRAMES]
                output = self.model(pixel_values=chunk)
                if self.embedding == "projected":
                    vectors.append(output.image_embeds)  # (chunk, projection_dim)
                else:
                    vectors.append(output.pooler_output)  # (chunk, D)
        frame_vectors = torch.cat(vectors).float().cpu().numpy()  # (sum F_i, D)
        splits = np.cumsum([clip.shape[0] for clip in clips])[:-1]
        return list(np.split(frame_vectors, splits))
