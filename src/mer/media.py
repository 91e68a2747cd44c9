"""Reading speech audio and face video from disk.

Audio is read with ``soundfile`` (``torchaudio.load`` needs TorchCodec, which is not available
here), down-mixed to mono by the channel mean and resampled with
``torchaudio.functional.resample``. Video is decoded with PyAV, whose wheels carry FFmpeg.

Every failure that is the file's fault (missing, corrupt, empty, no video stream) raises
:class:`MediaError` whose message names the path and the reason, so a caller can quarantine the
utterance and go on.

Shape legend: S = samples, F = frames, H x W = frame size in pixels.

>>> import tempfile, soundfile
>>> path = Path(tempfile.mkdtemp()) / "tone.wav"
>>> soundfile.write(path, np.zeros((8000, 2), dtype=np.float32), 8000)
>>> waveform, info = read_audio(path, target_sr=16000)
>>> waveform.shape, waveform.dtype, info["orig_channels"], info["resampled"]
((16000,), dtype('float32'), 2, True)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class MediaError(ValueError):
    """A media file is missing, corrupt, empty or unusable; the message names path and reason."""


def _require_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file does not exist")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


def read_audio(
    path: str | Path, target_sr: int = 16000, max_seconds: float | None = None
) -> tuple[np.ndarray, dict]:
    """Read an audio file as a float32 mono waveform in [-1, 1] at ``target_sr``.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).
        target_sr: output sample rate in Hz.
        max_seconds: keep at most this many seconds from the start (``None``: keep all).

    Returns:
        ``(waveform, info)``: waveform of shape ``(S,)``; info is
        ``{"orig_sr", "orig_channels", "orig_seconds", "resampled", "truncated"}``.

    Raises:
        MediaError: the file is missing, unreadable, corrupt, has no samples or non-finite ones.
        ValueError: ``target_sr`` or ``max_seconds`` is not positive.
    """
    import soundfile

    if target_sr <= 0:
        raise ValueError(f"target_sr must be > 0, got {target_sr}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds}")
    path = Path(path)
    _require_file(path)
    try:
        samples, orig_sr = soundfile.read(path, dtype="float32", always_2d=True)  # (S, C)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise MediaError(f"{path}: cannot decode audio ({exc})") from exc
    orig_frames, orig_channels = samples.shape
    if orig_frames == 0 or orig_channels == 0:
        raise MediaError(f"{path}: audio has no samples")
    if not np.isfinite(samples).all():
        raise MediaError(f"{path}: audio contains NaN or infinite samples")

    waveform = samples.mean(axis=1, dtype=np.float32)  # (S,)
    truncated = False
    if max_seconds is not None:
        # cut before resampling: cheaper, and the kept prefix resamples the same
        max_orig = round(max_seconds * orig_sr)
        if orig_frames > max_orig:
            waveform = waveform[:max_orig]
            truncated = True

    resampled = orig_sr != target_sr
    if resampled:
        import torch
        import torchaudio.functional

        waveform = torchaudio.functional.resample(
            torch.from_numpy(np.ascontiguousarray(waveform)), orig_freq=orig_sr, new_freq=target_sr
        ).numpy()
        if max_seconds is not None:
            waveform = waveform[: round(max_seconds * target_sr)]
    # sinc resampling and mixing can overshoot full scale slightly
    waveform = np.clip(waveform, -1.0, 1.0).astype(np.float32, copy=False)
    info = {
        "orig_sr": int(orig_sr),
        "orig_channels": int(orig_channels),
        "orig_seconds": orig_frames / orig_sr,
        "resampled": bool(resampled),
        "truncated": truncated,
    }
    return waveform, info


def sample_frame_indices(num_decoded: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly over ``num_decoded`` (repeats if fewer).

    >>> sample_frame_indices(10, 4).tolist()
    [0, 3, 6, 9]
    >>> sample_frame_indices(2, 4).tolist()
    [0, 0, 1, 1]
    """
    if num_decoded < 1 or num_frames < 1:
        raise ValueError(f"need num_decoded >= 1 and num_frames >= 1, got {num_decoded}, {num_frames}")
    return np.linspace(0, num_decoded - 1, num_frames).round().astype(np.int64)


def read_video_frames(path: str | Path, num_frames: int) -> np.ndarray:
    """Decode a video and sample ``num_frames`` RGB frames uniformly over the clip.

    All frames are decoded (clips are short utterances), then frames at
    ``round(linspace(0, n - 1, num_frames))`` are kept; a clip with fewer than ``num_frames``
    frames yields repeated frames.

    Returns:
        uint8 array of shape ``(num_frames, H, W, 3)``.

    Raises:
        MediaError: the file is missing, corrupt, has no video stream or no decodable frame.
        ValueError: ``num_frames`` < 1.
    """
    import av

    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    path = Path(path)
    _require_file(path)
    decoded: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            for frame in container.decode(container.streams.video[0]):
                decoded.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if not decoded:
            raise MediaError(f"{path}: cannot decode video ({exc})") from exc
        # a damaged tail is common in cut recordings; the frames before it are usable
        logger.warning("%s: decoding stopped after %d frames (%s)", path, len(decoded), exc)
    if not decoded:
        raise MediaError(f"{path}: video stream has no decodable frames")
    shapes = {frame.shape for frame in decoded}
    if len(shapes) > 1:
        raise MediaError(f"{path}: frame size changes within the clip ({sorted(shapes)})")
    indices = sample_frame_indices(len(decoded), num_frames)
    return np.stack([decoded[i] for i in indices])  # (F, H, W, 3)
