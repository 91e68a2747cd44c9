"""Log-mel spectrogram frames: the ``logmel-40`` audio "encoder" (signal processing, no weights).

Seed 004 feeds 40 mel bands of a 1024-point FFT to a Conv1D CNN trained with the model (mer's
``fusion.audio_frontend: melcnn``, :mod:`mer.models.melcnn`), and seed 001's audio branch is a
CNN over a spectrogram; both start from these frames. :class:`LogMelEncoder` computes them with
``torchaudio.transforms.MelSpectrogram`` at librosa's defaults (which the seeds used), at a 10 ms
hop:

- 16 kHz mono input, ``n_fft = 1024`` (64 ms Hann window, ``win_length = n_fft``), hop 160
  samples (10 ms), ``center=True`` with zero padding (librosa >= 0.10's ``pad_mode="constant"``),
  so a clip of S samples gives ``T = 1 + S // 160`` frames, frame t centred at ``t * 10 ms``;
- power spectrogram (``power=2``) through 40 Slaney-scale, Slaney-normalised triangular filters
  over 0-8000 Hz (librosa's ``htk=False, norm="slaney"``; torchaudio's defaults are HTK and
  unnormalised);
- ``10 * log10(max(mel, 1e-10))``: decibels of the absolute power with librosa's ``amin`` floor
  (-100 dB, reached by digital silence), no ``ref`` and no ``top_db`` clipping, so values do not
  depend on the loudest frame of the clip. Downstream models standardise each band with
  train-split statistics (seed 004's "normalize").

Stored per utterance as ``(T, 40)`` float16 (100 frames per second; dB values in about -100 ..
+100, where float16 keeps 0.03 dB or better).

Shape legend: S = audio samples, T = frames, M = mel bands.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

from mer.encoders.base import EncoderInfo

LOGMEL_SPEC = "logmel-40"


@dataclass(frozen=True)
class LogMelConfig:
    """Configuration of :class:`LogMelEncoder`.

    Attributes:
        sample_rate (int, 16000): sample rate of the input waveforms (Hz).
        n_fft (int, 1024): FFT size and window length (samples; seed 004's 1024 FFT).
        hop_length (int, 160): hop between frames (samples): 10 ms at 16 kHz.
        n_mels (int, 40): mel bands (seed 004).
        amin (float, 1e-10): floor of the mel power before the log (librosa's ``amin``).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 40
    amin: float = 1e-10

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of ``num_samples`` samples (centred frames: ``1 + S // hop``).

        >>> LogMelConfig().num_frames(16000)
        101
        """
        return 1 + num_samples // self.hop_length if num_samples > 0 else 0

    def hash(self) -> str:
        """First 16 hex digits of the sha256 of the config as sorted-key JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class LogMelEncoder:
    """40 log-mel bands (dB) per 10 ms frame; see the module docstring for every setting.

    Args:
        config: the :class:`LogMelConfig` (defaults when ``None``).

    >>> encoder = LogMelEncoder()
    >>> t = np.arange(16000) / 16000
    >>> [frames] = encoder.encode([np.sin(2 * np.pi * 440.0 * t).astype(np.float32)])
    >>> frames.shape, frames.dtype, encoder.info.weights
    ((101, 40), dtype('float32'), 'none (signal processing)')
    >>> int(frames[50].argmax()) == int(encoder.band_of(440.0))
    True
    """

    def __init__(self, config: LogMelConfig | None = None) -> None:
        self.config = config or LogMelConfig()
        cfg = self.config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=0.0,
            f_max=cfg.sample_rate / 2,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )
        self.info = EncoderInfo(
            model=LOGMEL_SPEC,
            weights="none (signal processing)",
            hidden_dim=cfg.n_mels,
            config_hash=cfg.hash(),
            extra={
                "frame_rate_hz": cfg.frame_rate_hz,
                "sample_rate": cfg.sample_rate,
                "n_fft": cfg.n_fft,
                "hop_length": cfg.hop_length,
                "n_mels": cfg.n_mels,
                "log": f"10*log10(max(mel power, {cfg.amin}))",
            },
        )

    @classmethod
    def from_spec(cls, spec: str, *, init_seed: int = 0, device: str = "cpu") -> LogMelEncoder:
        """The default-config encoder behind ``logmel-40``. It has no weights and runs on the CPU,
        so ``init_seed`` and ``device`` are ignored.

        >>> LogMelEncoder.from_spec("logmel-40").info.hidden_dim
        40
        """
        if spec != LOGMEL_SPEC:
            raise ValueError(f"unknown log-mel spec {spec!r}; valid: {LOGMEL_SPEC}")
        return cls()

    def band_of(self, frequency_hz: float) -> int:
        """The mel band whose filter weighs ``frequency_hz`` most (for checks and plots)."""
        bins = torch.fft.rfftfreq(self.config.n_fft, d=1.0 / self.config.sample_rate)  # (K,)
        nearest = int((bins - frequency_hz).abs().argmin())
        return int(self.mel.mel_scale.fb[nearest].argmax())

    def output_lengths(self, num_samples: list[int]) -> list[int]:
        """Frames T_i for waveforms of ``num_samples`` samples (0: empty)."""
        return [self.config.num_frames(n) for n in num_samples]

    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Encode a batch of mono waveforms at ``config.sample_rate`` (16 kHz), one by one (no
        padding, so an item's frames never depend on its batch).

        Args:
            waveforms: B arrays of shape ``(S_i,)``, non-empty and finite.

        Returns:
            B float32 arrays of shape ``(T_i, 40)``, ``T_i = 1 + S_i // 160``, in dB.

        Raises:
            ValueError: naming the index of an empty, non-1-D or non-finite waveform.
        """
        prepared = []
        for index, waveform in enumerate(waveforms):
            waveform = np.array(waveform, dtype=np.float32)  # a copy: from_numpy warns on read-only
            if waveform.ndim != 1 or waveform.shape[0] == 0:
                raise ValueError(
                    f"waveform {index} must be non-empty mono 1-D (S,), got shape {waveform.shape}"
                )
            if not np.isfinite(waveform).all():
                raise ValueError(f"waveform {index} contains NaN or Inf samples")
            prepared.append(torch.from_numpy(waveform))
        outputs = []
        with torch.inference_mode():
            for waveform in prepared:
                power = self.mel(waveform)  # (M, T)
                decibels = 10.0 * torch.log10(power.clamp(min=self.config.amin))  # (M, T)
                outputs.append(decibels.T.contiguous().numpy().astype(np.float32, copy=False))  # (T, M)
        return outputs
