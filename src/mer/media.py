"""Reading speech audio and face video from disk.

Audio is read with ``soundfile`` for the formats libsndfile owns (wav, flac, ogg, aiff, ...;
``torchaudio.load`` needs TorchCodec, which is not available here) and with PyAV (FFmpeg) for
everything else, in particular the audio stream inside a video container (MELD keeps its audio in
the mp4, CREMA-D's ``VideoFlash`` clips are flv, IEMOCAP's dialogs avi). Either way it is
down-mixed to mono by the channel mean, resampled with ``torchaudio.functional.resample`` and
optionally peak- or RMS-normalised. Video is decoded with PyAV, whose wheels carry FFmpeg.

Every failure that is the file's fault (missing, corrupt, empty, no audio / video stream, a
window outside the clip) raises :class:`MediaError` whose message names the path and the reason,
so a caller can quarantine the utterance and go on.

Shape legend: S = samples, C = channels, F = frames, H x W = frame size in pixels.

>>> import tempfile, soundfile
>>> path = Path(tempfile.mkdtemp()) / "tone.wav"
>>> soundfile.write(path, np.zeros((8000, 2), dtype=np.float32), 8000)
>>> waveform, info = read_audio(path, target_sr=16000)
>>> waveform.shape, waveform.dtype, info["orig_channels"], info["resampled"], info["normalize"]
((16000,), dtype('float32'), 2, True, 'none')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile
import torch
import torchaudio.functional

logger = logging.getLogger(__name__)

NORMALIZE_METHODS = ("none", "peak", "rms")
# RMS of a waveform after ``normalize="rms"``: -20 dBFS, loud speech without much clipping
RMS_TARGET = 0.1
# suffixes read with libsndfile; anything else (mp4, avi, flv, mkv, m4a, mp3, ...) goes to PyAV
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64",
     ".rf64", ".caf"}
)  # fmt: skip
# decoded frames kept in memory per requested frame (see read_video_frames: bounded memory)
FRAME_BUFFER_FACTOR = 8
# timestamps are compared with this slack (s): container time bases round frame times
_TIME_EPS = 1e-6


class MediaError(ValueError):
    """A media file is missing, corrupt, empty or unusable; the message names path and reason."""


def _require_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file does not exist")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


# ------------------------------------------------------------------------------------ audio


def _decode_soundfile(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int, int, float, bool]:
    """Mono waveform ``(S,)`` at the file's rate, rate, channels, full length (s), truncated."""
    try:
        with soundfile.SoundFile(path) as sound:
            orig_sr, orig_channels, orig_frames = sound.samplerate, sound.channels, sound.frames
            # read only what is kept: a mis-cut multi-minute file costs no more than max_seconds
            keep = orig_frames if max_seconds is None else min(orig_frames, round(max_seconds * orig_sr))
            samples = sound.read(keep, dtype="float32", always_2d=True)  # (S, C)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise MediaError(f"{path}: cannot decode audio ({exc})") from exc
    if orig_frames == 0 or orig_channels == 0 or samples.shape[0] == 0:
        raise MediaError(f"{path}: audio has no samples")
    if not np.isfinite(samples).all():
        raise MediaError(f"{path}: audio contains NaN or infinite samples")
    waveform = samples.mean(axis=1, dtype=np.float32)  # (S,)
    return waveform, int(orig_sr), int(orig_channels), orig_frames / orig_sr, keep < orig_frames


def _decode_container(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int, int, float, bool]:
    """The first audio stream of any FFmpeg-readable file, same return as :func:`_decode_soundfile`."""
    blocks: list[np.ndarray] = []  # mono (n,) per decoded frame
    num_samples, orig_sr, orig_channels, truncated, duration = 0, 0, 0, False, None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            # planar float32 at the stream's own rate and layout; resampling is torchaudio's job
            resampler = av.AudioResampler(format="fltp")
            limit = None
            for frame in container.decode(stream):
                if not orig_sr:
                    orig_sr, orig_channels = int(frame.sample_rate), int(frame.layout.nb_channels)
                    limit = None if max_seconds is None else round(max_seconds * orig_sr)
                for planar in resampler.resample(frame):
                    block = planar.to_ndarray()  # (C, n)
                    blocks.append(block.mean(axis=0, dtype=np.float32))  # (n,)
                    num_samples += block.shape[1]
                if limit is not None and num_samples > limit:
                    truncated = True  # stop decoding: the rest would be cut anyway
                    break
            else:
                for planar in resampler.resample(None):
                    block = planar.to_ndarray()  # (C, n)
                    blocks.append(block.mean(axis=0, dtype=np.float32))
                    num_samples += block.shape[1]
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if not num_samples:
            raise MediaError(f"{path}: cannot decode audio ({exc})") from exc
        # a damaged tail is common in cut recordings; the samples before it are usable
        logger.warning("%s: audio decoding stopped after %d samples (%s)", path, num_samples, exc)
    if not num_samples:
        raise MediaError(f"{path}: audio stream has no samples")
    waveform = np.concatenate(blocks)  # (S,)
    if not np.isfinite(waveform).all():
        raise MediaError(f"{path}: audio contains NaN or infinite samples")
    if max_seconds is not None:
        waveform = waveform[: round(max_seconds * orig_sr)]
    decoded_seconds = num_samples / orig_sr
    # when decoding stopped early the container's duration is the only full-length figure
    orig_seconds = max(decoded_seconds, duration or 0.0) if truncated else decoded_seconds
    return waveform, orig_sr, orig_channels, orig_seconds, truncated


def has_audio_stream(path: str | Path) -> bool:
    """Whether an FFmpeg-readable file has an audio stream (False for a missing or unreadable
    file: reading it then reports why)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return False


def read_audio(
    path: str | Path, target_sr: int = 16000, max_seconds: float | None = None, normalize: str = "none"
) -> tuple[np.ndarray, dict]:
    """Read an audio file, or the audio stream of a video file, as float32 mono in [-1, 1].

    Args:
        path: a file libsndfile reads (by suffix: wav, flac, ogg, aiff, ...) or any file with an
            audio stream FFmpeg reads (mp4, avi, flv, mkv, m4a, mp3, ...).
        target_sr: output sample rate in Hz.
        max_seconds: keep at most this many seconds from the start (``None``: keep all). Only
            the kept part is read / decoded.
        normalize: ``"none"`` (clip to [-1, 1]), ``"peak"`` (scale so that max ``|x|`` is 1) or
            ``"rms"`` (scale to RMS :data:`RMS_TARGET`, then clip to [-1, 1]). Silence (all
            zeros) is left as it is.

    Returns:
        ``(waveform, info)``: waveform of shape ``(S,)``; info is
        ``{"orig_sr", "orig_channels", "orig_seconds", "resampled", "truncated", "normalize"}``.
        ``orig_seconds`` is the full length of the original, also when truncated (for a
        container decoded only up to ``max_seconds``: its declared duration).

    Raises:
        MediaError: the file is missing, unreadable, corrupt, has no audio stream, no samples or
            non-finite ones.
        ValueError: ``target_sr`` or ``max_seconds`` is not positive, ``normalize`` unknown.
    """
    if target_sr <= 0:
        raise ValueError(f"target_sr must be > 0, got {target_sr}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds}")
    if normalize not in NORMALIZE_METHODS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_METHODS)}; got {normalize!r}")
    path = Path(path)
    _require_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        waveform, orig_sr, orig_channels, orig_seconds, truncated = _decode_soundfile(path, max_seconds)
    else:
        waveform, orig_sr, orig_channels, orig_seconds, truncated = _decode_container(path, max_seconds)

    resampled = orig_sr != target_sr
    if resampled:
        waveform = torchaudio.functional.resample(
            torch.from_numpy(np.ascontiguousarray(waveform)), orig_freq=orig_sr, new_freq=target_sr
        ).numpy()
        if max_seconds is not None:
            waveform = waveform[: round(max_seconds * target_sr)]
    if normalize == "peak":
        peak = float(np.abs(waveform).max())
        if peak > 0:
            waveform = waveform / peak
    elif normalize == "rms":
        rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
        if rms > 0:
            waveform = waveform * (RMS_TARGET / rms)
    # sinc resampling and mixing can overshoot full scale slightly; RMS scaling can too
    waveform = np.clip(waveform, -1.0, 1.0).astype(np.float32, copy=False)
    info = {
        "orig_sr": int(orig_sr),
        "orig_channels": int(orig_channels),
        "orig_seconds": orig_seconds,
        "resampled": bool(resampled),
        "truncated": bool(truncated),
        "normalize": normalize,
    }
    return waveform, info


# ------------------------------------------------------------------------------------ video


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


class _Decimator:
    """Keeps every ``stride``-th offered item, at most ``capacity + 1``; halves itself when full.

    Memory stays bounded however long the stream, and as long as at most ``capacity + 1`` items
    are offered every one is kept. After a halving the kept items are those offered at multiples
    of the (doubled) stride, so they still span the stream evenly.

    >>> decimator = _Decimator(4)
    >>> for index in range(11):
    ...     decimator.offer(lambda index=index: index)
    >>> decimator.items, decimator.stride
    ([0, 4, 8], 4)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity + capacity % 2  # even, so halving keeps the last multiple
        self.items: list[Any] = []
        self.stride = 1
        self.offered = 0

    def offer(self, make: Callable[[], Any]) -> None:
        """Offer the next item; ``make()`` builds it only if it is kept (frame conversion is costly)."""
        keep = self.offered % self.stride == 0
        self.offered += 1
        if keep:
            self.items.append(make())
            if len(self.items) > self.capacity:
                self.items = self.items[::2]
                self.stride *= 2


class _Retry(Exception):
    """A seek left nothing usable (frames without timestamps, or none at all): decode from 0."""


def _timed_frames(path: Path, container: Any, stream: Any, seek_to: float) -> Iterator[tuple[float, Any]]:
    """``(time in s from the stream start, frame)`` in presentation order, from ``seek_to`` or
    the keyframe before it. Frames without pts get ``index / average_rate`` (only without a seek).
    """
    base = stream.start_time or 0
    rate = float(stream.average_rate) if stream.average_rate else None
    seeked = False
    if seek_to > 0:
        try:
            # backward to the keyframe at or before the window: decoding starts there, not at 0
            container.seek(base + int(seek_to / stream.time_base), stream=stream, backward=True)
            seeked = True
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            logger.debug("seek to %.3f s failed (%s); decoding from the start", seek_to, exc)
    decoded = 0
    for frame in container.decode(stream):
        if frame.pts is not None:
            yield float((frame.pts - base) * stream.time_base), frame
        elif seeked:
            raise _Retry
        elif rate:
            yield decoded / rate, frame
        else:
            raise MediaError(f"{path}: frames carry neither timestamps nor a frame rate")
        decoded += 1
    if seeked and not decoded:
        raise _Retry


def _to_rgb(frame: Any) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")  # (H, W, 3)


class _Sampler:
    """Takes timed frames in order and keeps what a sampling rule wants, memory bounded."""

    def __init__(self, start: float, end: float | None, capacity: int) -> None:
        self.start, self.end = start, end
        self.buffer = _Decimator(capacity)
        self.last_time: float | None = None
        self.previous_time: float | None = None

    @property
    def empty(self) -> bool:
        return not self.buffer.items

    def clip_end(self, rate: float | None) -> float:
        """End of the last decoded frame's display interval (s)."""
        if self.last_time is None:
            return 0.0
        if rate:
            return self.last_time + 1.0 / rate
        if self.previous_time is not None:
            return self.last_time + (self.last_time - self.previous_time)
        return self.last_time + _TIME_EPS

    def add(self, time: float, frame: Any) -> bool:
        """Take the next frame; ``False`` once past the window (stop decoding)."""
        self.previous_time, self.last_time = self.last_time, time
        return self._add(time, frame)

    def _add(self, time: float, frame: Any) -> bool:
        raise NotImplementedError

    def finish(self, rate: float | None) -> list[np.ndarray]:
        """The kept frames, in time order."""
        raise NotImplementedError


class _WindowSampler(_Sampler):
    """The frames whose time is in ``[start, end)`` (evenly thinned past ``capacity``)."""

    def __init__(self, start: float, end: float | None, capacity: int) -> None:
        super().__init__(start, end, capacity)
        self.before: tuple[float, Any] | None = None  # last frame before the window

    def _add(self, time: float, frame: Any) -> bool:
        if self.end is not None and time >= self.end - _TIME_EPS:
            return False
        if time < self.start - _TIME_EPS:
            self.before = (time, frame)
        else:
            self.buffer.offer(lambda: _to_rgb(frame))
        return True

    def finish(self, rate: float | None) -> list[np.ndarray]:
        if self.empty and self.before is not None:
            # no frame starts inside the window: the one on screen at ``start`` covers it, unless
            # it is the clip's last frame and the window starts after it has ended
            is_last = self.before[0] == self.last_time
            if not is_last or self.start < self.clip_end(rate) - _TIME_EPS:
                return [_to_rgb(self.before[1])]
        return self.buffer.items


class _FpsSampler(_Sampler):
    """The frame on screen at each ``start + k / fps`` inside the window (sample and hold),
    evenly thinned past ``capacity``."""

    def __init__(self, fps: float, start: float, end: float | None, capacity: int) -> None:
        super().__init__(start, end, capacity)
        self.fps = fps
        self.next_target = 0  # k of the next sampling time
        self.held: Any = None  # the frame on screen so far
        self.held_rgb: np.ndarray | None = None  # its rgb, once converted (a frame may repeat)

    def _hold(self, frame: Any) -> None:
        if frame is not self.held:
            self.held, self.held_rgb = frame, None

    def _held_rgb(self) -> np.ndarray:
        if self.held_rgb is None:
            self.held_rgb = _to_rgb(self.held)
        return self.held_rgb

    def _emit_until(self, limit: float) -> None:
        """Sample the held frame at every target time before ``limit`` (and before ``end``)."""
        stop = limit if self.end is None else min(limit, self.end)
        while self.start + self.next_target / self.fps < stop - _TIME_EPS:
            self.buffer.offer(self._held_rgb)
            self.next_target += 1

    def _add(self, time: float, frame: Any) -> bool:
        if self.held is None:
            self._hold(frame)  # the window starts before the first frame: it stands in
        self._emit_until(time)  # targets before this frame show the previous one
        if self.end is not None and time >= self.end - _TIME_EPS:
            return False
        self._hold(frame)
        return True

    def finish(self, rate: float | None) -> list[np.ndarray]:
        if self.held is not None:
            # decoding ended inside the window: the last frame stays on screen until the clip ends
            self._emit_until(self.clip_end(rate))
        return self.buffer.items


def _window_text(start: float | None, end: float | None) -> str:
    return f"window [{start if start is not None else 0.0}, {end if end is not None else 'end'}) s"


def read_video_frames(
    path: str | Path,
    num_frames: int,
    *,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Decode RGB frames of a video, or of the window ``[start, end)`` seconds of it.

    Frame times are presentation timestamps from the stream start; a frame belongs to the window
    if its time is in ``[start, end)``. With ``start`` set, the container is seeked to the
    keyframe before it (decoding a 20-minute IEMOCAP dialog from 0 for each utterance would
    cost minutes). A window reaching past the clip is cut at the clip end; a window in which no
    frame starts gets the frame on screen at ``start``.

    Sampling:

    - ``fps=None``: ``num_frames`` frames at ``round(linspace(0, n - 1, num_frames))`` of the n
      frames in the window (repeats if n < ``num_frames``).
    - ``fps=F``: the frame on screen at each of ``start + k / F`` inside the window, so
      ``ceil(window * F)`` frames (at least 1), each repeated or skipped as the native rate
      requires. More than ``FRAME_BUFFER_FACTOR * num_frames`` of them are subsampled uniformly
      to exactly that many (the cap bounds memory and encoder time for mis-cut long clips).

    Memory is bounded by at most ``2 * FRAME_BUFFER_FACTOR * num_frames + 1`` RGB frames whatever
    the clip length: past that the kept frames are thinned by halving (:class:`_Decimator`), so
    for very long windows the uniform picks are exact to within about a quarter of their spacing.

    Args:
        path: any video FFmpeg reads (mp4, avi, flv, ...).
        num_frames: frames returned with ``fps=None``; ``FRAME_BUFFER_FACTOR`` times it caps
            the count with ``fps`` set.
        fps: sample at this rate (frames per second) instead of a fixed count.
        start, end: window in seconds (``None``: clip start / end).

    Returns:
        uint8 array of shape ``(F, H, W, 3)``, ``F = num_frames`` with ``fps=None``.

    Raises:
        MediaError: the file is missing, corrupt, has no video stream or no decodable frame, or
            the window is empty (``start >= end``) or lies beyond the clip; the message names
            the path and the window.
        ValueError: ``num_frames`` < 1, ``fps`` <= 0, or a negative ``start`` / ``end``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number of seconds >= 0 or None, got {value}")
    path = Path(path)
    window = _window_text(start, end)
    if start is not None and end is not None and start >= end:
        raise MediaError(f"{path}: empty {window} (start >= end)")
    _require_file(path)
    window_start = start or 0.0
    cap = FRAME_BUFFER_FACTOR * num_frames
    kept: list[np.ndarray] = []
    for allow_seek in (True, False):
        sampler: _Sampler = (
            _FpsSampler(fps, window_start, end, 2 * cap) if fps else _WindowSampler(window_start, end, cap)
        )
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise MediaError(f"{path}: no video stream")
                stream = container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else None
                try:
                    for time, frame in _timed_frames(
                        path, container, stream, window_start if allow_seek else 0.0
                    ):
                        if not sampler.add(time, frame):
                            break
                except (_Retry, MediaError):
                    raise
                except (av.error.FFmpegError, OSError, ValueError) as exc:
                    if sampler.last_time is None:
                        raise MediaError(f"{path}: cannot decode video ({exc})") from exc
                    # a damaged tail is common in cut recordings; the frames before it are usable
                    logger.warning("%s: decoding stopped at %.2f s (%s)", path, sampler.last_time, exc)
                kept = sampler.finish(rate)
            break
        except _Retry:
            logger.debug("%s: nothing usable after seeking to %.3f s; decoding from 0", path, window_start)
        except MediaError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"{path}: cannot decode video ({exc})") from exc
    if not kept:
        if sampler.last_time is None:
            raise MediaError(f"{path}: video stream has no decodable frames")
        raise MediaError(f"{path}: no frames in {window} (clip ends at {sampler.clip_end(rate):.3f} s)")
    shapes = {frame.shape for frame in kept}
    if len(shapes) > 1:
        raise MediaError(f"{path}: frame size changes within the clip ({sorted(shapes)})")
    if fps is None:
        indices = sample_frame_indices(len(kept), num_frames)
    else:
        indices = sample_frame_indices(len(kept), cap) if len(kept) > cap else np.arange(len(kept))
    return np.stack([kept[i] for i in indices])  # (F, H, W, 3)
