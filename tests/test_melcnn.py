"""Log-mel frames (``logmel-40``) and seed 004's mel-CNN audio frontend
(``fusion.audio_frontend: melcnn``): shapes, settings, masks, the 40-d check and a checkpoint
round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torchaudio

from mer.checkpoints import load_model, save_model
from mer.encoders import build_encoder
from mer.encoders.spectral import LogMelEncoder
from mer.models.config import FusionConfig
from mer.models.fusion import FusionModel, ModalityProjection
from mer.models.melcnn import MelCNNProjection
from mer.train import build_model
from mer.validation import ParamsError

SR = 16000


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# logmel-40
# --------------------------------------------------------------------------------------------


def test_logmel_frames_follow_the_documented_settings() -> None:
    encoder = build_encoder("audio", "logmel-40")
    assert isinstance(encoder, LogMelEncoder) and encoder.info.weights == "none (signal processing)"
    waveform = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    [frames] = encoder.encode([waveform])
    assert frames.shape == (1 + 8000 // 160, 40) and frames.dtype == np.float32
    # an independent computation: zero-padded centred frames, periodic Hann, |rfft|^2, the Slaney
    # mel filterbank, 10 log10 with the 1e-10 floor
    padded = np.pad(waveform.astype(np.float64), 512)
    starts = np.arange(0, len(padded) - 1024 + 1, 160)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(padded[starts[:, None] + np.arange(1024)] * window, axis=1)) ** 2  # (T, 513)
    bank = torchaudio.functional.melscale_fbanks(513, 0.0, 8000.0, 40, SR, norm="slaney", mel_scale="slaney")
    expected = 10 * np.log10(np.maximum(power @ bank.double().numpy(), 1e-10))
    np.testing.assert_allclose(frames, expected, atol=2e-3)


def test_logmel_tones_land_in_their_band_and_silence_on_the_floor() -> None:
    encoder = LogMelEncoder()
    low, high, silence = encoder.encode([_tone(0.5, 300.0), _tone(0.5, 3000.0), np.zeros(4000, np.float32)])
    assert int(np.median(low[5:-5].argmax(1))) == encoder.band_of(300.0)
    assert int(np.median(high[5:-5].argmax(1))) == encoder.band_of(3000.0) > encoder.band_of(300.0)
    assert np.all(silence == np.float32(-100.0))  # 10 log10(1e-10): the documented floor


def test_logmel_rejects_bad_waveforms_naming_the_item() -> None:
    encoder = LogMelEncoder()
    with pytest.raises(ValueError, match="waveform 1 must be non-empty"):
        encoder.encode([_tone(0.1, 200.0), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="waveform 0 contains NaN"):
        encoder.encode([np.full(400, np.nan, np.float32)])
    with pytest.raises(ValueError, match="'logmel-40' is an audio encoder, not a video one"):
        build_encoder("video", "logmel-40")


# --------------------------------------------------------------------------------------------
# fusion.audio_frontend: melcnn
# --------------------------------------------------------------------------------------------


def _config(**overrides) -> FusionConfig:
    values = {"input_dims": {"text": 8, "audio": 40}, "modalities": ("text", "audio"), "d_model": 16,
              "num_heads": 2, "num_classes": 4, "audio_frontend": "melcnn", "dropout": 0.0}  # fmt: skip
    return FusionConfig(**{**values, **overrides})


def _batch(lengths: list[int], seed: int = 0) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    audio = torch.randn(len(lengths), longest, 40, generator=generator)
    audio_mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    text = torch.randn(len(lengths), 3, 8, generator=generator)
    return {"text": text, "audio": audio}, {
        "text": torch.ones(len(lengths), 3, dtype=torch.bool),
        "audio": audio_mask,
    }


@pytest.mark.parametrize("mode", ["ensemble", "concat", "late", "crossmodal", "audio"])
def test_melcnn_shapes_and_parameters(mode: str) -> None:
    torch.manual_seed(0)
    model = FusionModel(_config(mode=mode)).eval()
    projection = model.projections["audio"]
    assert isinstance(projection, MelCNNProjection)
    if mode != "audio":
        assert isinstance(model.projections["text"], ModalityProjection)
    sizes = {name: tuple(p.shape) for name, p in projection.named_parameters()}
    assert sizes == {
        "cnn.conv1.weight": (64, 40, 3), "cnn.conv1.bias": (64,), "cnn.conv2.weight": (128, 64, 3),
        "cnn.conv2.bias": (128,), "linear.weight": (16, 128), "linear.bias": (16,),
    }  # fmt: skip
    features, masks = _batch([9, 5])
    hidden, pooled_mask = projection(features["audio"], masks["audio"])
    assert hidden.shape == (2, 5, 16) and pooled_mask.sum(-1).tolist() == [5, 3]  # ceil(T / 2)
    output = model(features, masks, labels=torch.tensor([0, 1]))
    assert output.logits.shape == (2, 4) and torch.isfinite(output.loss)
    output.loss.backward()
    assert projection.cnn.conv1.weight.grad is not None and projection.cnn.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["ensemble", "crossmodal"])
def test_melcnn_padding_changes_nothing_and_real_frames_do(mode: str) -> None:
    torch.manual_seed(0)
    model = FusionModel(_config(mode=mode)).eval()
    model.set_feature_statistics({"text": (torch.zeros(8), torch.ones(8)), "audio": (torch.full((40,), -3.0),
                                  torch.full((40,), 2.0))})  # fmt: skip
    features, masks = _batch([9, 5])
    with torch.no_grad():
        reference = model(features, masks).logits
        padded = {**features, "audio": features["audio"].clone()}
        padded["audio"][1, 5:] = 1e3  # padding of item 1 (its real frames are 0..4)
        assert torch.allclose(model(padded, masks).logits, reference, atol=1e-5)
        cut = {"audio": 5, "text": None}
        alone = model({m: f[1:, : cut[m]] for m, f in features.items()},
                      {m: k[1:, : cut[m]] for m, k in masks.items()}).logits  # fmt: skip
        assert torch.allclose(alone, reference[1:], atol=1e-5)  # unpadded item == padded in a batch
        changed = {**features, "audio": features["audio"].clone()}
        changed["audio"][1, 4] += 5.0  # its last real frame (odd length: a pooled window of its own)
        moved = model(changed, masks).logits
        assert not torch.allclose(moved[1], reference[1], atol=1e-4)
        assert torch.allclose(moved[0], reference[0], atol=1e-5)


def test_melcnn_absent_audio_and_one_frame_clips() -> None:
    torch.manual_seed(0)
    model = FusionModel(_config(mode="ensemble")).eval()
    features, masks = _batch([1, 4])
    masks["audio"][1] = False  # audio absent on row 1: the text scores it
    with torch.no_grad():
        output = model(features, masks)
        without = model({"text": features["text"]}, {"text": masks["text"]})
    assert torch.isfinite(output.logits).all()
    assert torch.allclose(output.logits[1], without.logits[1], atol=1e-5)


def test_melcnn_needs_40_d_audio_naming_the_keys_before_training() -> None:
    with pytest.raises(ParamsError, match=r"audio_frontend: melcnn .* needs 40 log-mel bands") as caught:
        build_model(_config(input_dims={}), {"text": 8, "audio": 768})
    assert "extract.audio.model: logmel-40" in str(caught.value) and "768-d" in str(caught.value)
    # a model that does not read audio (a text baseline) does not care
    assert build_model(_config(input_dims={}, mode="text"), {"text": 8, "audio": 768}).config.mode == "text"
    with pytest.raises(ParamsError, match=r"melcnn_kernel_size \(4\) must be odd"):
        _config(melcnn_kernel_size=4)
    with pytest.raises(ParamsError, match=r"audio_frontend: 'cnn' is not one of"):
        _config(audio_frontend="cnn")


def test_audio_frontend_none_builds_the_same_model_as_before() -> None:
    """The default builds no CNN and draws the same random numbers: the default run is unchanged."""
    default = dataclasses.replace(_config(), audio_frontend="none")
    assert FusionConfig().audio_frontend == "none"
    torch.manual_seed(0)
    model = FusionModel(default)
    after = torch.rand(1)
    assert isinstance(model.projections["audio"], ModalityProjection)
    assert not any("cnn" in name for name in model.state_dict())
    torch.manual_seed(0)
    unrelated = FusionModel(dataclasses.replace(default, melcnn_channels=(8, 8), melcnn_pool=3))
    assert torch.equal(torch.rand(1), after)  # melcnn_* settings do nothing without the frontend
    for (name, value), (other_name, other) in zip(
        model.state_dict().items(), unrelated.state_dict().items(), strict=True
    ):
        assert name == other_name and torch.equal(value, other)


def test_a_melcnn_model_round_trips_through_its_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    model = FusionModel(_config(mode="ensemble", melcnn_channels=(8, 12))).eval()
    model.set_feature_statistics({"text": (torch.zeros(8), torch.ones(8)), "audio": (torch.randn(40),
                                  torch.rand(40) + 0.5)})  # fmt: skip
    save_model(tmp_path / "model", model)
    loaded = load_model(tmp_path / "model").models[0]
    assert loaded.config.melcnn_channels == (8, 12) and loaded.config.audio_frontend == "melcnn"
    features, masks = _batch([6, 3])
    with torch.no_grad():
        assert torch.equal(loaded(features, masks).logits, model(features, masks).logits)
    assert math.isclose(
        float(loaded.projections["audio"].std.sum()), float(model.projections["audio"].std.sum())
    )
