"""Tests of mer.media on real wav / mp4 files written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from mer.media import MediaError, read_audio, read_video_frames, sample_frame_indices


def _sine(seconds: float, sr: int, freq: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_mp4(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """frames: uint8 (F, H, W, 3), H and W even (yuv420p)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _grey_ramp(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is uniformly grey with level 10 * i + 20, so a decoded frame tells its index."""
    levels = 10 * np.arange(num_frames) + 20
    return np.broadcast_to(
        levels[:, None, None, None].astype(np.uint8), (num_frames, height, width, 3)
    ).copy()


# ------------------------------------------------------------------------------------ audio


def test_stereo_44k_becomes_mono_16k(tmp_path: Path) -> None:
    left = _sine(0.5, 44100, amplitude=0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # (S, 2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 44100)

    waveform, info = read_audio(path, target_sr=16000)

    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert waveform.shape == (8000,)
    assert info == {
        "orig_sr": 44100,
        "orig_channels": 2,
        "orig_seconds": pytest.approx(0.5),
        "resampled": True,
        "truncated": False,
    }
    # mean down-mix halves a one-sided signal
    assert np.abs(waveform).max() == pytest.approx(0.25, abs=0.01)


def test_matching_rate_is_not_resampled(tmp_path: Path) -> None:
    mono = _sine(0.25, 16000)
    path = tmp_path / "mono.wav"
    soundfile.write(path, mono, 16000, subtype="FLOAT")
    waveform, info = read_audio(path)
    assert not info["resampled"] and info["orig_channels"] == 1
    np.testing.assert_array_equal(waveform, mono)


def test_truncation_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    soundfile.write(path, _sine(3.0, 22050), 22050)
    waveform, info = read_audio(path, target_sr=16000, max_seconds=1.0)
    assert waveform.shape == (16000,)
    assert info["truncated"] and info["resampled"]
    assert info["orig_seconds"] == pytest.approx(3.0)

    _, info_short = read_audio(path, target_sr=16000, max_seconds=5.0)
    assert not info_short["truncated"]


def test_peaks_are_clipped(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    soundfile.write(path, np.array([0.0, 1.5, -2.0, 0.5] * 100, np.float32), 16000, "FLOAT")
    waveform, _ = read_audio(path)
    assert waveform.max() == 1.0 and waveform.min() == -1.0


def test_missing_audio_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(MediaError, match=r"nope\.wav.*does not exist"):
        read_audio(path)


def test_corrupt_audio_names_path(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage" + bytes(range(200)))
    with pytest.raises(MediaError) as excinfo:
        read_audio(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("kind", ["zero_frames", "zero_bytes"])
def test_empty_audio_names_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.wav"
    if kind == "zero_frames":
        soundfile.write(path, np.zeros((0,), np.float32), 16000)
    else:
        path.write_bytes(b"")
    with pytest.raises(MediaError) as excinfo:
        read_audio(path)
    assert str(path) in str(excinfo.value)


def test_nonfinite_audio_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    soundfile.write(path, np.array([0.0, np.nan, 0.1] * 50, np.float32), 16000, "FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        read_audio(path)


# ------------------------------------------------------------------------------------ video


def test_video_frames_are_sampled_uniformly(tmp_path: Path) -> None:
    path = _write_mp4(tmp_path / "ramp.mp4", _grey_ramp(20))
    frames = read_video_frames(path, num_frames=5)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    expected_indices = sample_frame_indices(20, 5)  # [0, 5, 10, 14, 19]
    levels = frames.reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(levels, 10 * expected_indices + 20, atol=3)


def test_short_video_repeats_frames(tmp_path: Path) -> None:
    path = _write_mp4(tmp_path / "short.mp4", _grey_ramp(3))
    frames = read_video_frames(path, num_frames=8)
    assert frames.shape == (8, 48, 64, 3)
    levels = frames.reshape(8, -1).mean(axis=1)
    assert np.all(np.diff(levels) >= -1)  # in time order
    assert len(np.unique(levels.round(-1))) == 3  # every source frame used, some repeated


def test_audio_only_mp4_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(MediaError, match="no video stream") as excinfo:
        read_video_frames(path, 4)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("content", [b"\x00\x01garbage" * 100, b""])
def test_corrupt_or_empty_video_names_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as excinfo:
        read_video_frames(path, 4)
    assert str(path) in str(excinfo.value)


def test_missing_video_names_path(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"missing\.mp4.*does not exist"):
        read_video_frames(tmp_path / "missing.mp4", 4)


def test_bad_frame_count_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_frames"):
        read_video_frames(tmp_path / "whatever.mp4", 0)
