"""Real media files for the corpus fixture trees: wav, and mp4 / avi / flv with or without audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

SAMPLE_RATE = 16000
FPS = 10
# container -> (video codec, audio codec, pixel format)
CODECS = {
    ".mp4": ("libx264", "aac", "yuv420p"),
    ".avi": ("mpeg4", "mp3", "yuv420p"),
    ".flv": ("flv", "mp3", "yuv420p"),
}


def tone(seconds: float, freq: float = 220.0, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A quiet tone with a little noise, ``(S,)`` float32 (distinct per ``freq`` / ``seed``)."""
    t = np.arange(round(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(scale=0.01, size=t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_wav(
    path: Path, seconds: float = 0.6, freq: float = 220.0, sr: int = SAMPLE_RATE, seed: int = 0
) -> Path:
    """16-bit PCM mono wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, tone(seconds, freq, sr, seed), sr, subtype="PCM_16")
    return path


def write_video(
    path: Path,
    seconds: float = 0.6,
    audio: bool = True,
    freq: float = 220.0,
    size: int = 32,
    seed: int = 0,
    frames: np.ndarray | None = None,
) -> Path:
    """A short clip in the container named by ``path``'s suffix (mp4 / avi / flv).

    Frames are a flat grey that depends on ``seed``, or ``frames`` (uint8 ``(T, H, W, 3)``, e.g.
    tests/face_media.py's photographed face; ``seconds`` then sets the audio's length only);
    ``audio=False`` writes no audio stream (the MELD defect).
    """
    video_codec, audio_codec, pix_fmt = CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, round(seconds * FPS)) if frames is None else len(frames)
    level = 40 + (seed * 37) % 180
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(video_codec, rate=FPS)
        vstream.height, vstream.width = (size, size) if frames is None else frames.shape[1:3]
        vstream.pix_fmt = pix_fmt
        astream = None
        if audio:
            astream = container.add_stream(audio_codec, rate=SAMPLE_RATE if audio_codec == "aac" else 22050)
            astream.layout = "mono"
        for i in range(n_frames):
            if frames is None:
                image = np.full((size, size, 3), level, dtype=np.uint8)
                image[: size // 2, : (i % size) + 1] = 255 - level
            else:
                image = frames[i]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None:
            rate = astream.rate
            samples = tone(seconds, freq, rate, seed)
            step = 1024
            for start in range(0, len(samples), step):
                chunk = samples[start : start + step]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    return path


def write_corrupt(path: Path) -> Path:
    """A file with a media suffix whose bytes are not media."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x01 this is not a media file " * 20)
    return path
