"""A photographed face for tests that need a face MediaPipe's detector finds (facemesh-65):
scikit-image's ``data.astronaut()`` (Eileen Collins, NASA: public domain) moved, scaled and
rotated across frames. The corpus fixtures' drawn faces are mostly not detected.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import skimage.data
import skimage.transform

FACE_CENTER = np.array([225.0, 130.0])  # the astronaut's face in the 512 x 512 photo (x, y)
FRAME_SHAPE = (192, 256)  # (H, W): not square, so the detector's letterbox is exercised


def astronaut_frame(scale: float = 1.0, center: tuple[float, float] = (128, 96), rotation: float = 0.0,
                    photo: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The photo scaled / rotated about its face, the face put at ``center``: uint8 (H, W, 3)."""
    photo = skimage.data.astronaut() if photo is None else photo
    transform = skimage.transform.AffineTransform(scale=scale, rotation=rotation)
    shift = np.asarray(center) - transform(FACE_CENTER[None])[0]
    transform = skimage.transform.AffineTransform(scale=scale, rotation=rotation, translation=shift)
    warped = skimage.transform.warp(photo, transform.inverse, output_shape=FRAME_SHAPE, order=1, mode="edge")
    return np.round(warped * 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """H.264 mp4 of uint8 RGB frames (as tests/corpus_media.py writes its clips)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def face_frames(count: int, seed: int = 0) -> np.ndarray:
    """``count`` frames of the face drifting and breathing in scale (``seed`` varies the path):
    uint8 ``(count, H, W, 3)``, ready for ``tests.corpus_media.write_video(frames=...)``."""
    rng = np.random.default_rng(seed)
    scales = 0.9 + 0.2 * rng.random(count)
    centers = np.array([128.0, 96.0]) + rng.uniform(-12, 12, size=(count, 2))
    photo = skimage.data.astronaut()
    return np.stack([astronaut_frame(s, tuple(c), photo=photo) for s, c in zip(scales, centers, strict=True)])
