"""Seed 002's cheap "real-time" acoustic extractor: 74 hand-crafted features per 20 ms frame.

An alternative audio encoder (spec ``acoustic-74``) computed with torch / torchaudio / numpy
only (no librosa, no model weights), in the spirit of seed 002's Librosa/COVAREP-style 74-d
vectors. Frames are 25 ms long with a 20 ms hop (``center=False``), so a clip of S samples gives
``T = 1 + (S - 400) // 320`` frames (the 20 ms hops in the clip, or one fewer): 50 Hz and exactly
the frame count of WavLM's conv stack (receptive field 400, total stride 320), so an adapter can
map these frames one to one onto WavLM frames.

Feature layout at the default :class:`AcousticConfig` (``AcousticEncoder.info.extra["features"]``
lists the names in this order):

=======  =====  ===========================  =======================================================
index    count  names                        definition
=======  =====  ===========================  =======================================================
0-12     13     ``mfcc_0..12``               ``torchaudio.transforms.MFCC`` (40 mels, n_fft 400,
                                             hop 320, dB with 80 dB top, orthonormal DCT-II)
13-25    13     ``mfcc_delta_0..12``         ``torchaudio.functional.compute_deltas`` (5 frames)
26-38    13     ``mfcc_delta2_0..12``        deltas of the deltas
39-50    12     ``chroma_C..chroma_B``       STFT power (windowed frame zero-padded to 2048) of
                                             the 55-4000 Hz bins folded into 12 pitch classes (each
                                             bin split linearly between its two nearest classes),
                                             divided by the frame's maximum (0 for silent frames)
51       1      ``spectral_centroid``        magnitude-weighted mean frequency (Hz)
52       1      ``spectral_rolloff``         frequency below which ``rolloff_percent`` of the
                                             magnitude lies (Hz)
53       1      ``spectral_flatness``        geometric / arithmetic mean of the power (floor 1e-10)
54       1      ``spectral_bandwidth``       magnitude-weighted std of frequency around the
                                             centroid (Hz)
55       1      ``spectral_flux``            mean rectified dB increase over the previous frame
                                             (0 for frame 0)
56       1      ``zero_crossing_rate``       fraction of adjacent sample pairs that change sign
57       1      ``rms``                      root mean square of the frame's samples
58       1      ``log_energy``               ``ln(sum of squared samples + 1e-10)``
59       1      ``f0_hz``                    YIN fundamental frequency in [f0_min, f0_max] (Hz),
                                             0 on unvoiced / silent frames
60       1      ``voicing_probability``      ``1 - min`` of YIN's normalised difference, in [0, 1];
                                             0 on silent frames
61-67    7      ``spectral_contrast_0..6``   octave bands (0-200, 200-400, ... 3200-6400,
                                             6400-8000 Hz): dB of the mean of the top 2 % of bins
                                             minus dB of the bottom 2 % (librosa's definition)
68-73    6      ``tonnetz_0..5``             tonal centroid (Harte et al. 2006; librosa.tonnetz) of
                                             the L1-normalised chroma: fifths, minor thirds, major
                                             thirds as (sin, cos) pairs
=======  =====  ===========================  =======================================================

Other configs change only the counts: ``D = 3 * n_mfcc + contrast_bands + 29``.
Values are in their natural units (Hz, dB, ratios); downstream models standardise with
train-split statistics. Every value is finite for any finite input, silence included.

Shape legend: S = audio samples, T = frames, K = FFT bins, L = pitch lags, D = feature size.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

from mer.encoders.base import EncoderInfo

ACOUSTIC_DIM = 74
ACOUSTIC_SPEC = "acoustic-74"
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# C0 in Hz (A4 = 440 Hz, equal temperament): pitch class 0 = C
_C0_HZ = 440.0 * 2.0 ** (-57 / 12)
# floor of power / energy values before logs and divisions (librosa's amin)
_AMIN = 1e-10
# tonnetz radii (fifths, minor thirds, major thirds) and angles per pitch class, Harte et al. 2006
_TONNETZ_RADII = (1.0, 1.0, 0.5)
_TONNETZ_ANGLES = (7 * math.pi / 6, 3 * math.pi / 2, 2 * math.pi / 3)


@dataclass(frozen=True)
class AcousticConfig:
    """Configuration of :class:`AcousticEncoder`.

    Attributes:
        sample_rate (int, 16000): sample rate of the input waveforms (Hz).
        frame_ms (float, 25.0): analysis frame length (ms); also the STFT / MFCC n_fft.
        hop_ms (float, 20.0): hop between frames (ms): 50 Hz, WavLM's frame rate.
        n_mels (int, 40): mel bands behind the MFCCs.
        n_mfcc (int, 13): cepstral coefficients (each also gets a delta and a delta-delta).
        f0_min (float, 60.0) / f0_max (float, 500.0): pitch search range (Hz).
        voicing_threshold (float, 0.25): a frame is voiced when YIN's normalised difference dips
            below this; the first dip's minimum gives the period.
        silence_rms (float, 1e-4): frames with a lower RMS (about -80 dBFS) are unvoiced.
        rolloff_percent (float, 0.85): share of the magnitude below the spectral rolloff.
        chroma_fmin (float, 55.0) / chroma_fmax (float, 4000.0): FFT bins folded into chroma (Hz).
        chroma_n_fft (int, 2048): FFT size of the chroma spectrum: the same windowed frame,
            zero-padded, so a partial's peak bin sits at its true frequency (at n_fft 400 the
            40 Hz bins put a 220 Hz tone's chroma peak on G; from 1024 on it is A).
        contrast_fmin (float, 200.0): upper edge of the first spectral-contrast band (Hz).
        contrast_bands (int, 6): octave bands above ``contrast_fmin`` (values: bands + 1).
        contrast_quantile (float, 0.02): share of a band's bins averaged for peak and valley.
    """

    sample_rate: int = 16000
    frame_ms: float = 25.0
    hop_ms: float = 20.0
    n_mels: int = 40
    n_mfcc: int = 13
    f0_min: float = 60.0
    f0_max: float = 500.0
    voicing_threshold: float = 0.25
    silence_rms: float = 1e-4
    rolloff_percent: float = 0.85
    chroma_fmin: float = 55.0
    chroma_fmax: float = 4000.0
    chroma_n_fft: int = 2048
    contrast_fmin: float = 200.0
    contrast_bands: int = 6
    contrast_quantile: float = 0.02

    def __post_init__(self) -> None:
        nyquist = self.sample_rate / 2
        checks = {
            "sample_rate": self.sample_rate >= 1000,
            "frame_ms": self.frame_ms > 0,
            "hop_ms": 0 < self.hop_ms <= self.frame_ms,
            "n_mels": self.n_mels >= 1,
            "n_mfcc": 1 <= self.n_mfcc <= self.n_mels,
            "f0_min": 0 < self.f0_min < self.f0_max,
            "f0_max": self.f0_max < nyquist,
            "voicing_threshold": 0 < self.voicing_threshold < 1,
            "silence_rms": self.silence_rms >= 0,
            "rolloff_percent": 0 < self.rolloff_percent <= 1,
            "chroma_fmin": 0 < self.chroma_fmin < self.chroma_fmax,
            "chroma_fmax": self.chroma_fmax <= nyquist,
            "chroma_n_fft": self.chroma_n_fft >= self.frame_length,
            "contrast_fmin": 0 < self.contrast_fmin < nyquist,
            "contrast_bands": self.contrast_bands >= 1,
            "contrast_quantile": 0 < self.contrast_quantile < 0.5,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AcousticConfig.{name}={getattr(self, name)!r} is out of range")
        if self.frame_length < 2 or self.hop_length < 1:
            raise ValueError(
                f"AcousticConfig: frame_ms={self.frame_ms} / hop_ms={self.hop_ms} give "
                f"{self.frame_length} / {self.hop_length} samples; need >= 2 / >= 1"
            )

    @property
    def frame_length(self) -> int:
        """Samples per frame (400 at the defaults)."""
        return round(self.sample_rate * self.frame_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Samples per hop (320 at the defaults)."""
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second (50.0 at the defaults)."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames T for a clip of ``num_samples`` samples (0 when shorter than one frame).

        >>> AcousticConfig().num_frames(32000)
        99
        """
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.hop_length

    def feature_names(self) -> list[str]:
        """Names of the D features in output order (74 at the defaults)."""
        mfcc = range(self.n_mfcc)
        return [
            *(f"mfcc_{i}" for i in mfcc),
            *(f"mfcc_delta_{i}" for i in mfcc),
            *(f"mfcc_delta2_{i}" for i in mfcc),
            *(f"chroma_{name}" for name in PITCH_CLASSES),
            "spectral_centroid",
            "spectral_rolloff",
            "spectral_flatness",
            "spectral_bandwidth",
            "spectral_flux",
            "zero_crossing_rate",
            "rms",
            "log_energy",
            "f0_hz",
            "voicing_probability",
            *(f"spectral_contrast_{i}" for i in range(self.contrast_bands + 1)),
            *(f"tonnetz_{i}" for i in range(2 * len(_TONNETZ_RADII))),
        ]

    def hash(self) -> str:
        """First 16 hex digits of the sha256 of the config as sorted-key JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _chroma_filterbank(config: AcousticConfig, frequencies: torch.Tensor) -> torch.Tensor:
    """(12, K) weights folding FFT bins into pitch classes; each bin in range splits its weight
    linearly between its two nearest pitch classes (so the weights of a bin sum to 1)."""
    in_range = (frequencies >= config.chroma_fmin) & (frequencies <= config.chroma_fmax)
    pitch = 12.0 * torch.log2(frequencies.clamp(min=1.0) / _C0_HZ)  # (K,) semitones above C0
    classes = torch.arange(12, dtype=torch.float64)
    distance = (pitch[None, :] - classes[:, None]) % 12.0  # (12, K)
    distance = torch.minimum(distance, 12.0 - distance)
    weights = (1.0 - distance).clamp(min=0.0) * in_range[None, :]
    return weights.float()


def _contrast_bands(config: AcousticConfig, frequencies: torch.Tensor) -> list[torch.Tensor]:
    """Bin indices of each spectral-contrast band, as ``librosa.feature.spectral_contrast``."""
    edges = [0.0] + [config.contrast_fmin * 2.0**k for k in range(config.contrast_bands + 1)]
    bands = []
    for k in range(config.contrast_bands + 1):
        in_band = (frequencies >= edges[k]) & (frequencies <= edges[k + 1])
        indices = torch.nonzero(in_band).flatten()
        if k > 0 and len(indices) and indices[0] > 0:  # librosa also takes the bin below the band
            in_band[indices[0] - 1] = True
        if k == config.contrast_bands:  # the last band runs to Nyquist
            in_band[frequencies >= edges[k]] = True
        indices = torch.nonzero(in_band).flatten()
        if k < config.contrast_bands and len(indices) > 1:  # drop the shared upper edge bin
            indices = indices[:-1]
        if len(indices) == 0:
            raise ValueError(
                f"AcousticConfig: spectral-contrast band {k} ({edges[k]:.0f}-{edges[k + 1]:.0f} Hz) "
                f"holds no FFT bin at frame_ms={config.frame_ms}; raise contrast_fmin or frame_ms"
            )
        bands.append(indices)
    return bands


class AcousticEncoder:
    """74 signal-processing features per 20 ms frame (see the module docstring for the layout).

    Args:
        config: the :class:`AcousticConfig` (defaults when ``None``).

    >>> encoder = AcousticEncoder()
    >>> t = np.arange(16000) / 16000
    >>> [features] = encoder.encode([np.sin(2 * np.pi * 220.0 * t).astype(np.float32)])
    >>> features.shape, features.dtype, encoder.info.hidden_dim
    ((49, 74), dtype('float32'), 74)
    >>> names = encoder.info.extra["features"]
    >>> round(float(features[10, names.index("f0_hz")]))
    220
    """

    def __init__(self, config: AcousticConfig | None = None) -> None:
        self.config = config or AcousticConfig()
        cfg = self.config
        self.frame_length = cfg.frame_length
        self.hop_length = cfg.hop_length
        self.n_fft = cfg.frame_length
        self.window = torch.hann_window(self.n_fft, dtype=torch.float32)  # (N,) periodic, as MFCC's
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=cfg.sample_rate,
            n_mfcc=cfg.n_mfcc,
            melkwargs={
                "n_fft": self.n_fft,
                "win_length": self.frame_length,
                "hop_length": self.hop_length,
                "n_mels": cfg.n_mels,
                "center": False,
            },
        )
        frequencies = torch.fft.rfftfreq(self.n_fft, d=1.0 / cfg.sample_rate).double()  # (K,)
        self.frequencies = frequencies.float()
        chroma_frequencies = torch.fft.rfftfreq(cfg.chroma_n_fft, d=1.0 / cfg.sample_rate).double()
        self.chroma_filters = _chroma_filterbank(cfg, chroma_frequencies)  # (12, K_chroma)
        self.contrast_bands = _contrast_bands(cfg, frequencies)
        angles = torch.tensor(_TONNETZ_ANGLES, dtype=torch.float64)[:, None] * torch.arange(12)  # (3, 12)
        radii = torch.tensor(_TONNETZ_RADII, dtype=torch.float64)[:, None]
        self.tonnetz_matrix = (
            torch.stack([radii * torch.sin(angles), radii * torch.cos(angles)], dim=1).reshape(6, 12).float()
        )  # (6, 12): rows sin/cos of fifths, minor thirds, major thirds
        # YIN: lags 0..max_lag + 1 (one past the range, for parabolic interpolation), integrated
        # over one frame; the pitch window (frame + max lag) is centred on the frame's centre
        self.min_lag = max(1, math.floor(cfg.sample_rate / cfg.f0_max))
        self.max_lag = math.ceil(cfg.sample_rate / cfg.f0_min)
        self.pitch_window = self.frame_length + self.max_lag + 1
        self.pitch_pad_left = self.pitch_window // 2 - self.frame_length // 2
        self.pitch_fft = 1 << (self.pitch_window - 1).bit_length()
        names = cfg.feature_names()
        self.info = EncoderInfo(
            model=f"acoustic-{len(names)}",
            weights="none (signal processing)",
            hidden_dim=len(names),
            config_hash=cfg.hash(),
            extra={
                "frame_rate_hz": cfg.frame_rate_hz,
                "sample_rate": cfg.sample_rate,
                "features": names,
            },
        )

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> AcousticEncoder:
        """The default-config encoder behind ``acoustic-74``. It has no weights and runs on the
        CPU, so ``init_seed`` and ``device`` are ignored.

        >>> AcousticEncoder.from_spec("acoustic-74").info.model
        'acoustic-74'
        """
        if spec != ACOUSTIC_SPEC:
            raise ValueError(f"unknown acoustic spec {spec!r}; valid: {ACOUSTIC_SPEC}")
        return cls()

    def output_lengths(self, num_samples: list[int]) -> list[int]:
        """Frames T_i for waveforms of ``num_samples`` samples (0: too short to encode)."""
        return [self.config.num_frames(n) for n in num_samples]

    def _prepare(self, index: int, waveform: np.ndarray) -> torch.Tensor:
        # a float32 copy: from_numpy needs positive strides and warns on read-only buffers
        waveform = np.array(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"waveform {index} must be mono 1-D (S,), got shape {waveform.shape}")
        if waveform.shape[0] < self.frame_length:
            raise ValueError(
                f"waveform {index} has {waveform.shape[0]} samples: too short for one frame (need "
                f">= {self.frame_length} samples = {self.config.frame_ms} ms at {self.config.sample_rate} Hz)"
            )
        if not np.isfinite(waveform).all():
            raise ValueError(f"waveform {index} contains NaN or Inf samples")
        return torch.from_numpy(waveform)

    def _pitch(self, waveform: torch.Tensor, num_frames: int, rms: torch.Tensor) -> torch.Tensor:
        """YIN F0 (Hz, 0 when unvoiced) and voicing probability: (T, 2)."""
        cfg = self.config
        pad_right = self.pitch_window - self.pitch_pad_left - self.frame_length
        padded = torch.nn.functional.pad(waveform, (self.pitch_pad_left, pad_right))
        segments = padded.unfold(0, self.pitch_window, self.hop_length)[:num_frames]  # (T, W + L)
        segments = segments - segments.mean(dim=1, keepdim=True)
        head = segments[:, : self.frame_length]  # (T, W)
        # r(tau) = sum_j head_j * segment_{j + tau}, all lags at once by FFT (no wrap: n >= W + L)
        spectrum = torch.fft.rfft(head, n=self.pitch_fft).conj() * torch.fft.rfft(segments, n=self.pitch_fft)
        lags = self.max_lag + 2
        correlation = torch.fft.irfft(spectrum, n=self.pitch_fft)[:, :lags]  # (T, L)
        energy_cumsum = torch.nn.functional.pad(torch.cumsum(segments.double() ** 2, dim=1), (1, 0))
        window_energy = (
            energy_cumsum[:, self.frame_length : self.frame_length + lags] - energy_cumsum[:, :lags]
        ).float()  # (T, L): sum of squares of segment[tau : tau + W]
        difference = (window_energy[:, :1] + window_energy - 2.0 * correlation).clamp(min=0.0)  # (T, L)
        # cumulative-mean-normalised difference d'(tau) = d(tau) * tau / sum_{k=1..tau} d(k)
        tau = torch.arange(lags, dtype=torch.float32)
        running = torch.cumsum(difference[:, 1:], dim=1)
        normalised = torch.ones_like(difference)
        normalised[:, 1:] = difference[:, 1:] * tau[1:] / running.clamp(min=_AMIN)
        searched = normalised[:, self.min_lag : self.max_lag + 1]  # (T, L')
        below = searched < cfg.voicing_threshold
        voiced = below.any(dim=1)
        # the first dip below the threshold, and its minimum (YIN's absolute-threshold step)
        first = below.int().argmax(dim=1, keepdim=True)
        positions = torch.arange(searched.shape[1])[None, :]
        after_first = positions >= first
        left_dip = torch.cumsum((~below & after_first).int(), dim=1) > 0
        dip = torch.where(after_first & ~left_dip, searched, torch.full_like(searched, math.inf))
        best = torch.where(voiced, dip.argmin(dim=1), searched.argmin(dim=1))  # (T,)
        best_value = searched.gather(1, best[:, None]).squeeze(1)
        # parabolic interpolation of the minimum (lags min_lag - 1 and max_lag + 1 exist)
        lag = best + self.min_lag
        left, centre, right = (normalised.gather(1, (lag + o)[:, None]).squeeze(1) for o in (-1, 0, 1))
        curvature = left - 2.0 * centre + right
        shift = torch.where(curvature > 0, 0.5 * (left - right) / curvature.clamp(min=_AMIN), 0.0)
        period = lag.float() + shift.clamp(-1.0, 1.0)
        audible = rms >= cfg.silence_rms
        voiced = voiced & audible
        f0 = torch.where(voiced, cfg.sample_rate / period, 0.0)
        probability = torch.where(audible, (1.0 - best_value).clamp(0.0, 1.0), 0.0)
        return torch.stack([f0, probability], dim=1)

    def _contrast(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Spectral contrast per band: (T, bands + 1) in dB."""
        contrasts = []
        for indices in self.contrast_bands:
            band = torch.sort(magnitude[:, indices], dim=1).values  # (T, n)
            count = max(1, round(self.config.contrast_quantile * band.shape[1]))
            valley = band[:, :count].mean(dim=1)
            peak = band[:, -count:].mean(dim=1)
            contrasts.append(
                10.0 * (torch.log10(peak.clamp(min=_AMIN)) - torch.log10(valley.clamp(min=_AMIN)))
            )
        return torch.stack(contrasts, dim=1)

    def _encode_one(self, waveform: torch.Tensor) -> np.ndarray:
        cfg = self.config
        num_frames = cfg.num_frames(waveform.shape[0])
        frames = waveform.unfold(0, self.frame_length, self.hop_length)  # (T, W)
        mfcc = self.mfcc(waveform)  # (n_mfcc, T)
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        cepstral = torch.cat([mfcc, delta, delta2]).T  # (T, 3 * n_mfcc)

        windowed = frames * self.window  # (T, W)
        magnitude = torch.fft.rfft(windowed, n=self.n_fft).abs()  # (T, K)
        power = magnitude**2

        chroma_power = torch.fft.rfft(windowed, n=self.config.chroma_n_fft).abs() ** 2  # (T, K_chroma)
        chroma = chroma_power @ self.chroma_filters.T  # (T, 12)
        peak = chroma.amax(dim=1, keepdim=True)
        chroma = torch.where(peak > _AMIN, chroma / peak.clamp(min=_AMIN), 0.0)
        tonal = chroma / chroma.sum(dim=1, keepdim=True).clamp(min=_AMIN)
        tonnetz = tonal @ self.tonnetz_matrix.T  # (T, 6)

        total = magnitude.sum(dim=1)
        weights = magnitude / total[:, None].clamp(min=_AMIN)  # (T, K)
        centroid = weights @ self.frequencies
        bandwidth = (weights * (self.frequencies[None, :] - centroid[:, None]) ** 2).sum(dim=1).sqrt()
        below_rolloff = torch.cumsum(magnitude, dim=1) < cfg.rolloff_percent * total[:, None]
        rolloff = self.frequencies[below_rolloff.sum(dim=1).clamp(max=len(self.frequencies) - 1)]
        floored = power.clamp(min=_AMIN)
        flatness = torch.exp(torch.log(floored).mean(dim=1)) / floored.mean(dim=1)
        decibels = 10.0 * torch.log10(floored)
        decibels = torch.maximum(decibels, decibels.max() - 80.0)  # (T, K), 80 dB range as MFCC
        flux = torch.zeros(num_frames)
        flux[1:] = (decibels[1:] - decibels[:-1]).clamp(min=0.0).mean(dim=1)
        spectral = torch.stack([centroid, rolloff, flatness, bandwidth, flux], dim=1)  # (T, 5)

        sign = torch.signbit(frames)
        zcr = (sign[:, 1:] != sign[:, :-1]).float().mean(dim=1)
        energy = (frames.double() ** 2).sum(dim=1)
        rms = (energy / self.frame_length).sqrt().float()
        log_energy = torch.log(energy + _AMIN).float()
        temporal = torch.stack([zcr, rms, log_energy], dim=1)  # (T, 3)

        pitch = self._pitch(waveform, num_frames, rms)  # (T, 2)
        contrast = self._contrast(magnitude)  # (T, bands + 1)
        features = torch.cat([cepstral, chroma, spectral, temporal, pitch, contrast, tonnetz], dim=1)
        return features.numpy().astype(np.float32, copy=False)  # (T, D)

    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Encode a batch of mono waveforms at ``config.sample_rate`` (16 kHz).

        Args:
            waveforms: B arrays of shape ``(S_i,)``, each at least one frame (400 samples) long
                and finite.

        Returns:
            B float32 arrays of shape ``(T_i, D)``, ``T_i = 1 + (S_i - 400) // 320`` (50 Hz,
            the WavLM frame count), ``D = 74`` at the default config; all values finite.

        Raises:
            ValueError: naming the index of an empty, too short, non-1-D or non-finite waveform.
        """
        prepared = [self._prepare(i, w) for i, w in enumerate(waveforms)]
        with torch.inference_mode():
            return [self._encode_one(waveform) for waveform in prepared]
