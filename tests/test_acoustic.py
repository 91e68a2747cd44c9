"""Tests of mer.encoders.acoustic: the 74-d frame features of seed 002's "real-time" extractor.

Shapes and the WavLM frame count, finiteness on degenerate input, input validation, determinism,
and that each feature group measures what its name says on signals with a known answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from mer.encoders.acoustic import ACOUSTIC_DIM, PITCH_CLASSES, AcousticConfig, AcousticEncoder

SR = 16000


@pytest.fixture(scope="module")
def encoder() -> AcousticEncoder:
    return AcousticEncoder()


@pytest.fixture(scope="module")
def names(encoder: AcousticEncoder) -> list[str]:
    return encoder.info.extra["features"]


def column(features: np.ndarray, names: list[str], name: str) -> np.ndarray:
    return features[:, names.index(name)]


def harmonic(f0: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    """Four harmonics of f0 with 1/k amplitudes."""
    t = np.arange(round(seconds * SR)) / SR
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    return (amplitude * signal).astype(np.float32)


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def white_noise(seconds: float = 1.0, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(size=round(seconds * SR))).astype(np.float32)


def wavlm_frames(num_samples: int) -> int:
    """Frames of the WavLM conv feature extractor (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2)."""
    for kernel, stride in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


def test_info_describes_74_named_features(encoder: AcousticEncoder, names: list[str]) -> None:
    info = encoder.info
    assert ACOUSTIC_DIM == 74 == info.hidden_dim == len(names) == len(set(names))
    assert info.model == "acoustic-74"
    assert info.weights == "none (signal processing)"
    assert info.extra["frame_rate_hz"] == 50.0
    assert info.extra["sample_rate"] == SR
    assert len(info.config_hash) == 16 and int(info.config_hash, 16) >= 0
    assert AcousticEncoder().info.config_hash == info.config_hash
    assert AcousticEncoder(AcousticConfig(voicing_threshold=0.2)).info.config_hash != info.config_hash
    assert names[:3] == ["mfcc_0", "mfcc_1", "mfcc_2"]
    assert names[39 + PITCH_CLASSES.index("A")] == "chroma_A"
    assert names[59:61] == ["f0_hz", "voicing_probability"]
    assert names[-1] == "tonnetz_5"


@pytest.mark.parametrize("num_samples", [400, 719, 720, 1000, 8000, 16001, 32000, 48123])
def test_frames_at_50_hz_match_wavlm(encoder: AcousticEncoder, num_samples: int) -> None:
    [features] = encoder.encode([white_noise(num_samples / SR)])
    assert features.shape == (1 + (num_samples - 400) // 320, ACOUSTIC_DIM)
    assert features.dtype == np.float32
    whole_hops = num_samples // 320  # 20 ms hops in the clip: T is that or one less (frame > hop)
    assert whole_hops - 1 <= features.shape[0] <= whole_hops
    assert features.shape[0] == wavlm_frames(num_samples) == encoder.output_lengths([num_samples])[0]


@pytest.mark.parametrize(
    "waveform",
    [
        np.zeros(SR, np.float32),
        white_noise(),
        white_noise(scale=1e-7),
        white_noise(scale=100.0),
        np.full(SR, 0.2, np.float32),
        np.zeros(400, np.float32),
        np.r_[np.zeros(8000), tone(300.0, 0.5)].astype(np.float32),
    ],
    ids=["silence", "noise", "faint-noise", "loud-noise", "dc", "one-frame-silence", "silence-then-tone"],
)
def test_all_values_finite(encoder: AcousticEncoder, waveform: np.ndarray) -> None:
    [features] = encoder.encode([waveform])
    assert np.isfinite(features).all()


def test_silence_is_unvoiced_and_quiet(encoder: AcousticEncoder, names: list[str]) -> None:
    [features] = encoder.encode([np.zeros(SR, np.float32)])
    for name in ("f0_hz", "voicing_probability", "rms", "zero_crossing_rate", "chroma_A", "tonnetz_0"):
        assert (column(features, names, name) == 0).all(), name


@pytest.mark.parametrize(
    ("waveform", "problem"),
    [
        (np.zeros(0, np.float32), "too short"),
        (np.zeros(1, np.float32), "too short"),
        (np.zeros(399, np.float32), "too short"),
        (np.zeros((2, SR), np.float32), "1-D"),
        (np.r_[np.zeros(500), np.nan].astype(np.float32), "NaN or Inf"),
        (np.r_[np.zeros(500), np.inf].astype(np.float32), "NaN or Inf"),
    ],
    ids=["empty", "one-sample", "399-samples", "stereo", "nan", "inf"],
)
def test_bad_waveform_raises_naming_its_index(
    encoder: AcousticEncoder, waveform: np.ndarray, problem: str
) -> None:
    with pytest.raises(ValueError, match=rf"waveform 1 .*{problem}"):
        encoder.encode([np.zeros(SR, np.float32), waveform])


def test_empty_batch(encoder: AcousticEncoder) -> None:
    assert encoder.encode([]) == []


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="f0_min"):
        AcousticConfig(f0_min=600.0)
    with pytest.raises(ValueError, match="hop_ms"):
        AcousticConfig(hop_ms=30.0)


def test_deterministic_and_batch_independent(encoder: AcousticEncoder) -> None:
    clips = [harmonic(180.0, 0.7), white_noise(1.3, seed=1), tone(440.0, 0.03)]
    first = encoder.encode(clips)
    again = AcousticEncoder().encode(clips)
    alone = [encoder.encode([clip])[0] for clip in clips]
    for a, b, c in zip(first, again, alone, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_accepts_float64_and_strided_views(encoder: AcousticEncoder) -> None:
    clip = harmonic(180.0, 0.5)
    reversed_view = clip[::-1].copy()[::-1]  # negative strides
    reversed_view.setflags(write=False)
    expected = encoder.encode([clip])[0]
    for variant in (clip.astype(np.float64), reversed_view):
        np.testing.assert_array_equal(encoder.encode([variant])[0], expected)


@pytest.mark.parametrize("f0", [80.0, 140.0, 220.0, 330.0, 450.0])
def test_f0_of_harmonic_signal(encoder: AcousticEncoder, names: list[str], f0: float) -> None:
    noisy = harmonic(f0) + white_noise(scale=0.02)
    [features] = encoder.encode([noisy])
    voiced = column(features, names, "f0_hz") > 0
    assert voiced.mean() > 0.9
    np.testing.assert_allclose(column(features, names, "f0_hz")[voiced], f0, rtol=0.05)
    assert column(features, names, "voicing_probability")[voiced].min() > 0.75


def test_white_noise_is_mostly_unvoiced(encoder: AcousticEncoder, names: list[str]) -> None:
    [features] = encoder.encode([white_noise()])
    assert (column(features, names, "f0_hz") > 0).mean() < 0.1
    assert column(features, names, "voicing_probability").mean() < 0.5
    np.testing.assert_allclose(column(features, names, "zero_crossing_rate").mean(), 0.5, atol=0.05)


def test_louder_copy_has_higher_energy_but_same_spectral_shape(
    encoder: AcousticEncoder, names: list[str]
) -> None:
    clip = harmonic(200.0) + white_noise(scale=0.01)
    quiet, loud = encoder.encode([clip, 4.0 * clip])
    np.testing.assert_allclose(column(loud, names, "rms"), 4.0 * column(quiet, names, "rms"), rtol=1e-4)
    assert (column(loud, names, "log_energy") > column(quiet, names, "log_energy")).all()
    assert (column(loud, names, "mfcc_0") > column(quiet, names, "mfcc_0")).all()
    np.testing.assert_allclose(loud[:, 1:13], quiet[:, 1:13], atol=1e-2)  # mfcc_1..12
    np.testing.assert_allclose(
        column(loud, names, "spectral_centroid"), column(quiet, names, "spectral_centroid"), rtol=1e-4
    )


def test_bright_signal_has_higher_centroid_and_rolloff(encoder: AcousticEncoder, names: list[str]) -> None:
    dark = harmonic(150.0)
    bright = tone(3000.0) + tone(5000.0) + white_noise(scale=0.01)
    dark_features, bright_features = encoder.encode([dark, bright])
    for name in ("spectral_centroid", "spectral_rolloff"):
        assert column(bright_features, names, name).min() > 2 * column(dark_features, names, name).max()
    assert 2500 < np.median(column(bright_features, names, "spectral_centroid")) < 5500
    assert np.median(column(dark_features, names, "spectral_centroid")) < 600


def test_chroma_of_a440_peaks_at_a(encoder: AcousticEncoder, names: list[str]) -> None:
    [features] = encoder.encode([tone(440.0)])
    chroma = features[:, names.index("chroma_C") : names.index("chroma_B") + 1]  # (T, 12)
    assert (chroma.argmax(axis=1) == PITCH_CLASSES.index("A")).all()
    np.testing.assert_allclose(chroma.max(axis=1), 1.0, rtol=1e-5)


def test_deltas_of_stationary_tone_vanish(encoder: AcousticEncoder, names: list[str]) -> None:
    [features] = encoder.encode([tone(440.0)])
    mfcc = features[:, :13]
    deltas = features[:, 13:39]
    assert np.abs(deltas).max() < 1e-2 * np.abs(mfcc).max()
    flux = column(features, names, "spectral_flux")
    assert flux[0] == 0 and flux.max() < 0.5


def test_changing_signal_has_nonzero_deltas(encoder: AcousticEncoder) -> None:
    [features] = encoder.encode([np.r_[tone(300.0, 0.5), white_noise(0.5)].astype(np.float32)])
    boundary = features[20:30, 13:26]  # mfcc deltas around the switch at frame ~25
    assert np.abs(boundary).max() > 1.0
