"""Tests of mer.media on real wav / mp4 files written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from mer.media import (
    FRAME_BUFFER_FACTOR,
    RMS_TARGET,
    MediaError,
    read_audio,
    read_video_frames,
    sample_frame_indices,
)


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


def _write_av(
    path: Path,
    frames: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    *,
    fps: int = 10,
    sr: int = 16000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """A container with an optional video stream (frames uint8 (F, H, W, 3)) and an optional
    audio stream (audio float32 (C, S), C = 1 or 2), as MELD / IEMOCAP / CREMA-D clips have."""
    with av.open(str(path), "w") as container:
        video = audio_stream = None
        if frames is not None:
            video = container.add_stream(video_codec, rate=fps)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            video.options = {"crf": "10"} if video_codec == "libx264" else {"qscale": "2"}
        if audio is not None:
            audio_stream = container.add_stream(audio_codec, rate=sr)
            audio_stream.layout = "stereo" if audio.shape[0] == 2 else "mono"
        if video is not None:
            for image in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode(None):
                container.mux(packet)
        if audio_stream is not None:
            for offset in range(0, audio.shape[1], 1024):
                block = np.ascontiguousarray(audio[:, offset : offset + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=audio_stream.layout.name)
                frame.sample_rate, frame.pts = sr, offset
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return path


def _coded_frames(num_frames: int, height: int = 32, width: int = 64) -> np.ndarray:
    """Frame i carries i in binary as 8 black / white vertical stripes (robust to compression)."""
    bits = (np.arange(num_frames)[:, None] >> np.arange(8)[None, :]) & 1  # (F, 8)
    stripes = np.repeat(bits * 255, width // 8, axis=1).astype(np.uint8)  # (F, W)
    return np.broadcast_to(stripes[:, None, :, None], (num_frames, height, width, 3)).copy()


def _frame_indices(frames: np.ndarray) -> list[int]:
    """Decode the indices written by :func:`_coded_frames`."""
    width = frames.shape[2]
    stripe_means = frames.mean(axis=(1, 3)).reshape(len(frames), 8, width // 8).mean(axis=2)  # (F, 8)
    bits = (stripe_means > 127).astype(int)
    return (bits << np.arange(8)).sum(axis=1).tolist()


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
        "normalize": "none",
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


# --------------------------------------------------------------------- audio: more formats


def test_8k_audio_is_upsampled(tmp_path: Path) -> None:
    path = tmp_path / "phone.wav"
    soundfile.write(path, _sine(0.5, 8000, freq=300), 8000, subtype="PCM_16")
    waveform, info = read_audio(path)
    assert waveform.shape == (8000,) and info["orig_sr"] == 8000 and info["resampled"]
    # still a 300 Hz tone: the spectrum peaks there
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(waveform.size, 1 / 16000)[spectrum.argmax()] == pytest.approx(300, abs=4)


@pytest.mark.parametrize(("normalize", "peak", "rms"), [("peak", 1.0, None), ("rms", None, RMS_TARGET)])
def test_normalisation(tmp_path: Path, normalize: str, peak: float | None, rms: float | None) -> None:
    path = tmp_path / "quiet.wav"
    soundfile.write(path, _sine(0.5, 16000, amplitude=0.02), 16000, subtype="FLOAT")
    waveform, info = read_audio(path, normalize=normalize)
    assert info["normalize"] == normalize
    if peak is not None:
        assert np.abs(waveform).max() == pytest.approx(peak, abs=1e-6)
    if rms is not None:
        assert np.sqrt(np.mean(waveform**2)) == pytest.approx(rms, rel=1e-3)
    assert np.abs(waveform).max() <= 1.0


def test_rms_normalisation_clips_and_silence_stays(tmp_path: Path) -> None:
    spiky = np.zeros(16000, np.float32)
    spiky[::400] = 0.5  # RMS 0.025, peak 0.5: scaling to RMS 0.1 would exceed 1
    soundfile.write(tmp_path / "spiky.wav", spiky, 16000, subtype="FLOAT")
    waveform, _ = read_audio(tmp_path / "spiky.wav", normalize="rms")
    assert waveform.max() == 1.0
    soundfile.write(tmp_path / "silent.wav", np.zeros(1600, np.float32), 16000, subtype="FLOAT")
    for method in ("peak", "rms"):
        silent, _ = read_audio(tmp_path / "silent.wav", normalize=method)
        assert not silent.any() and np.isfinite(silent).all()
    with pytest.raises(ValueError, match="normalize must be one of none, peak, rms"):
        read_audio(tmp_path / "silent.wav", normalize="loud")


def test_audio_from_mp4_with_video(tmp_path: Path) -> None:
    """MELD keeps the audio inside the mp4: decode its aac stream (stereo 44.1 kHz here)."""
    tone = _sine(1.0, 44100, freq=440, amplitude=0.5)
    path = _write_av(tmp_path / "dia1_utt0.mp4", _grey_ramp(10), np.stack([tone, tone]), sr=44100)
    waveform, info = read_audio(path, target_sr=16000)
    assert info["orig_sr"] == 44100 and info["orig_channels"] == 2 and info["resampled"]
    # aac adds up to a frame of priming / padding samples
    assert abs(waveform.size - 16000) <= 2048 and info["orig_seconds"] == pytest.approx(1.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(waveform.size, 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=5)
    assert np.abs(waveform[4000:12000]).max() == pytest.approx(0.5, abs=0.05)

    cut, cut_info = read_audio(path, target_sr=16000, max_seconds=0.25, normalize="peak")
    assert cut.shape == (4000,) and cut_info["truncated"] and cut_info["normalize"] == "peak"
    assert cut_info["orig_seconds"] == pytest.approx(1.0, abs=0.1)  # the full length, not the cut
    assert np.abs(cut).max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("suffix", "codec", "sr"), [(".avi", "mp3", 16000), (".flv", "mp3", 22050), (".m4a", "aac", 16000)]
)
def test_audio_from_other_containers(tmp_path: Path, suffix: str, codec: str, sr: int) -> None:
    """IEMOCAP dialogs are avi, CREMA-D's VideoFlash clips flv (mp3 at 22.05 kHz)."""
    tone = _sine(0.5, sr)[None]  # (1, S)
    frames = None if suffix == ".m4a" else _grey_ramp(5, 32, 32)
    video_codec = "flv" if suffix == ".flv" else "mpeg4"
    path = _write_av(
        tmp_path / f"clip{suffix}", frames, tone, sr=sr, video_codec=video_codec, audio_codec=codec
    )
    waveform, info = read_audio(path)
    assert info["orig_channels"] == 1 and info["orig_sr"] == sr
    assert abs(waveform.size - 8000) <= 2304 and np.abs(waveform).max() > 0.3


def test_mp4_without_audio_stream(tmp_path: Path) -> None:
    path = _write_mp4(tmp_path / "silent_film.mp4", _grey_ramp(5))
    with pytest.raises(MediaError, match="no audio stream") as excinfo:
        read_audio(path)
    assert str(excinfo.value) == f"{path}: no audio stream"


@pytest.mark.parametrize("content", [b"\x00\x01garbage" * 100, b"ftypisom" + bytes(range(256)) * 4])
def test_corrupt_container_audio_names_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as excinfo:
        read_audio(path)
    assert str(path) in str(excinfo.value)


# ------------------------------------------------------------------- video: windows and fps


@pytest.fixture(scope="module")
def dialog_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """40 frames at 10 fps (4 s) whose frame index is coded in the pixels; IEMOCAP dialogs are
    DivX avi, MELD clips h264 mp4."""
    folder = tmp_path_factory.mktemp("dialogs")
    frames = _coded_frames(40)
    return {
        "mp4": _write_av(folder / "dialog.mp4", frames, fps=10),
        "avi": _write_av(folder / "dialog.avi", frames, fps=10, video_codec="mpeg4"),
    }


def test_coded_frames_round_trip(dialog_videos: dict[str, Path]) -> None:
    for path in dialog_videos.values():
        assert _frame_indices(read_video_frames(path, 40)) == list(range(40))


@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_video_window_cut(dialog_videos: dict[str, Path], container: str) -> None:
    path = dialog_videos[container]
    frames = read_video_frames(path, 5, start=1.0, end=2.0)  # frames 10..19
    assert frames.shape == (5, 32, 64, 3)
    assert _frame_indices(frames) == (10 + sample_frame_indices(10, 5)).tolist()
    # a window late in the clip (after a seek), reaching past its end: cut at the clip end
    assert _frame_indices(read_video_frames(path, 3, start=3.55, end=9.0)) == [36, 38, 39]
    # a window inside one frame interval gets the frame on screen
    assert _frame_indices(read_video_frames(path, 2, start=2.02, end=2.07)) == [20, 20]


@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_video_fps_sampling(dialog_videos: dict[str, Path], container: str) -> None:
    path = dialog_videos[container]
    # 5 fps over [1.0, 2.5): ceil(1.5 * 5) = 8 frames, every other native frame
    frames = read_video_frames(path, 4, fps=5, start=1.0, end=2.5)
    assert _frame_indices(frames) == [10, 12, 14, 16, 18, 20, 22, 24]
    # 25 fps over 0.3 s: each native frame held 2-3 times
    assert _frame_indices(read_video_frames(path, 4, fps=25, start=1.0, end=1.3)) == [
        10, 10, 10, 11, 11, 12, 12, 12
    ]  # fmt: skip
    # the whole clip at 2 fps: ceil(4.0 * 2) = 8 frames
    assert _frame_indices(read_video_frames(path, 4, fps=2)) == [0, 5, 10, 15, 20, 25, 30, 35]
    # at least one frame for a tiny window
    assert _frame_indices(read_video_frames(path, 4, fps=1, start=2.0, end=2.01)) == [20]


def test_video_fps_count_is_capped(dialog_videos: dict[str, Path]) -> None:
    """fps=10 over 4 s is 40 frames; num_frames=2 caps at 2 * FRAME_BUFFER_FACTOR, uniformly."""
    cap = 2 * FRAME_BUFFER_FACTOR
    frames = read_video_frames(dialog_videos["mp4"], 2, fps=10)
    assert frames.shape[0] == cap
    indices = _frame_indices(frames)
    assert indices[0] == 0 and indices[-1] >= 36 and indices == sorted(indices)
    assert max(np.diff(indices)) <= 4  # evenly spread: 40 / 16 = 2.5 apart on average


def test_long_window_memory_is_bounded(dialog_videos: dict[str, Path]) -> None:
    """At most 8 * num_frames + 1 RGB frames are held (17 for num_frames=2), thinned by halving;
    the picks still span the window (exactly uniform: [0, 39] and [5, 22, 39])."""
    assert _frame_indices(read_video_frames(dialog_videos["mp4"], 2)) == [0, 36]
    assert _frame_indices(read_video_frames(dialog_videos["mp4"], 3, start=0.5)) == [5, 21, 39]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (2.0, 2.0, r"empty window \[2.0, 2.0\) s"),
        (3.0, 1.0, "start >= end"),
        (5.0, 6.0, "no frames in window"),
    ],
)
def test_empty_window_is_a_media_error(
    dialog_videos: dict[str, Path], start: float, end: float, message: str
) -> None:
    path = dialog_videos["mp4"]
    with pytest.raises(MediaError, match=message) as excinfo:
        read_video_frames(path, 4, start=start, end=end)
    assert str(excinfo.value).startswith(str(path))
    with pytest.raises(MediaError, match=r"no frames in window \[4.5, end\) s \(clip ends at 4.000 s\)"):
        read_video_frames(path, 4, start=4.5)


def test_bad_window_arguments(dialog_videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="start must be"):
        read_video_frames(dialog_videos["mp4"], 4, start=-1.0)
    with pytest.raises(ValueError, match="fps must be > 0"):
        read_video_frames(dialog_videos["mp4"], 4, fps=0)
