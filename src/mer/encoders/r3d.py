"""ResNet3D-18 video encoder (seed 001): torchvision's ``r3d_18``, one 512-d vector per window
of consecutive frames.

Specs:

- ``r3d-18``: the Kinetics-400 weights (``R3D_18_Weights.KINETICS400_V1``), which torchvision
  downloads into its hub cache (``$TORCH_HOME``) on first use. Without them (offline, no cached
  file) building fails with an error naming ``random-init:r3d-18``; it never falls back.
- ``random-init:r3d-18``: the same architecture with seeded random weights (``init_seed``),
  recorded as ``weights: "random-init"``.

Input preparation is the Kinetics weights' own transform,
``R3D_18_Weights.KINETICS400_V1.transforms()`` (torchvision's ``VideoClassification``), for both
specs: every frame resized to 128 x 171 (H x W; bilinear, no antialias, on uint8 as torchvision
does, so the aspect ratio is not kept), centre crop 112 x 112, [0, 1], Kinetics mean / std.
``tests/test_r3d.py`` checks mer's windows against the transform applied to the same frames.

Frames into windows: the extract stage decodes frames as for every video encoder
(:func:`mer.extract.load_input`) and r3d cuts them into consecutive windows of
``extract.video.frames_per_clip`` frames (:meth:`R3DEncoder.encode`'s ``frames_per_window``):

- ``extract.video.fps > 0`` (what r3d is meant for): frames at that rate over the utterance,
  ``F = ceil(duration * fps)`` (more than ``8 * frames_per_clip`` are subsampled uniformly to that
  many, :func:`mer.media.read_video_frames`), so ``T_windows = ceil(F / frames_per_clip)`` windows
  of ``frames_per_clip / fps`` seconds each. Kinetics was trained on 16-frame clips at 15 fps
  (torchvision's reference recipe), hence seed 001's profile: ``fps: 15``, ``frames_per_clip: 16``.
- ``fps: 0``: ``frames_per_clip`` frames spread uniformly over the utterance: one window, whose
  frame spacing depends on the utterance's duration.

A last window shorter than ``frames_per_clip`` is completed by repeating its last frame (so every
window is a full-length clip, as the network was trained on). Each window gives the network's
pooled features before its classifier (``fc`` replaced by identity): ``(T_windows, 512)`` per
utterance, stored as float16.

Shape legend: B = batch, F = frames, W = frames per window, N = windows, C = colour channels,
H x W_px = frame size, D = 512.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import torch

from mer.encoders.base import EncoderInfo, freeze, seeded

logger = logging.getLogger(__name__)

R3D_SPEC = "r3d-18"
RANDOM_INIT_R3D_SPEC = "random-init:r3d-18"
R3D_SPECS = (R3D_SPEC, RANDOM_INIT_R3D_SPEC)
R3D_DIM = 512
#: frames per window when the caller names none (Kinetics' clip length)
DEFAULT_FRAMES_PER_WINDOW = 16
# windows per forward pass: a 16-frame window is ~40 GFLOPs and ~0.3 GB of activations
_WINDOW_CHUNK = 8


def _kinetics_weights():
    from torchvision.models.video import R3D_18_Weights

    return R3D_18_Weights.KINETICS400_V1


class R3DEncoder:
    """torchvision ``r3d_18`` without its classifier: one 512-d vector per window of frames.

    Args:
        model: the ``VideoResNet`` with ``fc`` replaced by identity.
        info: its :class:`~mer.encoders.base.EncoderInfo`.

    >>> encoder = R3DEncoder.from_spec("random-init:r3d-18")
    >>> clip = np.zeros((5, 24, 32, 3), dtype=np.uint8)
    >>> encoder.prepare(clip, frames_per_window=2).shape   # 3 windows (the last one repeated)
    torch.Size([3, 3, 2, 112, 112])
    """

    #: extract passes ``frames_per_window=extract.video.frames_per_clip`` to :meth:`encode`
    windowed = True

    def __init__(self, model: torch.nn.Module, info: EncoderInfo) -> None:
        self.model = model
        self.info = info
        self.device = next(model.parameters()).device
        self.transform = _kinetics_weights().transforms()

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> R3DEncoder:
        """``r3d-18`` (Kinetics-400 weights) or ``random-init:r3d-18`` (seeded with
        ``init_seed``), frozen in fp32 on ``device``.

        Raises:
            ValueError: an unknown spec.
            RuntimeError: ``r3d-18``'s weights are neither cached nor downloadable; the message
                names ``random-init:r3d-18``.
        """
        from torchvision.models.video import r3d_18

        if spec not in R3D_SPECS:
            raise ValueError(f"unknown ResNet3D spec {spec!r}; valid: {', '.join(R3D_SPECS)}")
        weights_enum = _kinetics_weights()
        extra: dict = {
            "architecture": "torchvision.models.video.r3d_18",
            "output": "pooled features before fc (512-d) per window",
            "preprocessing": "R3D_18_Weights.KINETICS400_V1.transforms(): resize 128x171 "
            "(bilinear, no antialias), centre crop 112, Kinetics mean/std",
        }
        if spec == RANDOM_INIT_R3D_SPEC:
            with seeded(init_seed):
                model = r3d_18(weights=None)
            weights = "random-init"
            extra["init_seed"] = init_seed
        else:
            try:
                model = r3d_18(weights=weights_enum)
            except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch: all mean "no weights"
                raise RuntimeError(
                    f"extract.video.model: r3d-18 needs torchvision's Kinetics-400 weights "
                    f"({weights_enum.url}), which are not in the torch hub cache and could not be "
                    f"downloaded ({type(exc).__name__}: {exc}); download them once online (or copy "
                    f"the file into $TORCH_HOME/hub/checkpoints/), or set extract.video.model: "
                    f"{RANDOM_INIT_R3D_SPEC} for seeded random weights"
                ) from exc
            weights = "pretrained"
            extra["weights_enum"] = "R3D_18_Weights.KINETICS400_V1"
            extra["weights_url"] = weights_enum.url
        model.fc = torch.nn.Identity()
        model = freeze(model, device)
        architecture = {"architecture": "r3d_18", "num_classes": 400, "fc": "identity", "dim": R3D_DIM}
        digest = hashlib.sha256(json.dumps(architecture, sort_keys=True).encode()).hexdigest()[:16]
        info = EncoderInfo(model=spec, weights=weights, hidden_dim=R3D_DIM, config_hash=digest, extra=extra)
        return cls(model, info)

    def prepare(self, frames: np.ndarray, frames_per_window: int = DEFAULT_FRAMES_PER_WINDOW) -> torch.Tensor:
        """uint8 ``(F, H, W_px, 3)`` -> the network's input ``(N, 3, W, 112, 112)``,
        ``N = ceil(F / W)`` consecutive windows, the last completed by repeating its last frame,
        each prepared by the Kinetics weights' transform."""
        if frames_per_window < 1:
            raise ValueError(f"frames_per_window must be >= 1, got {frames_per_window}")
        num_windows = math.ceil(frames.shape[0] / frames_per_window)
        picks = np.minimum(np.arange(num_windows * frames_per_window), frames.shape[0] - 1)
        video = torch.from_numpy(np.ascontiguousarray(frames[picks])).to(self.device)  # (N*W, H, W_px, C)
        video = video.permute(0, 3, 1, 2)  # (N*W, C, H, W_px) uint8, as torchvision's video readers give
        video = video.reshape(num_windows, frames_per_window, *video.shape[1:])  # (N, W, C, H, W_px)
        return self.transform(video)  # (N, C, W, 112, 112)

    def encode(
        self, clips: list[np.ndarray], frames_per_window: int = DEFAULT_FRAMES_PER_WINDOW
    ) -> list[np.ndarray]:
        """Encode a batch of clips.

        Args:
            clips: B uint8 arrays of shape ``(F_i, H, W_px, 3)`` (RGB), F_i >= 1.
            frames_per_window: W, frames per window (``extract.video.frames_per_clip``).

        Returns:
            B float32 arrays of shape ``(ceil(F_i / W), 512)``, one vector per window.
        """
        for index, clip in enumerate(clips):
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1:
                raise ValueError(f"clip {index} must be (F, H, W, 3) with F >= 1, got {clip.shape}")
            if clip.dtype != np.uint8:
                raise ValueError(f"clip {index} must be uint8 RGB, got {clip.dtype}")
        self.info.extra["frames_per_window"] = frames_per_window
        if not clips:
            return []
        windows = torch.cat(
            [self.prepare(clip, frames_per_window) for clip in clips]
        )  # (sum N_i, C, W, S, S)
        vectors = []
        with torch.inference_mode():
            for start in range(0, windows.shape[0], _WINDOW_CHUNK):
                vectors.append(self.model(windows[start : start + _WINDOW_CHUNK]))  # (chunk, 512)
        window_vectors = torch.cat(vectors).float().cpu().numpy()  # (sum N_i, 512)
        counts = [math.ceil(clip.shape[0] / frames_per_window) for clip in clips]
        return list(np.split(window_vectors, np.cumsum(counts)[:-1]))
