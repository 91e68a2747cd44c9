"""Audio frame pooling (``model.audio_pool``): the masked window means, padding that changes
nothing, the model equal to one fed pre-pooled frames, and old checkpoints read back unpooled."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mer.checkpoints import load_model, save_model
from mer.models.config import FusionConfig
from mer.models.frame_pooling import pool_frames
from mer.models.fusion import FusionModel
from mer.validation import ParamsError


def _padded(lengths: list[int], dim: int, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rows of ``lengths`` frames, padded with ``fill``."""
    frames = torch.full((len(lengths), max(lengths), dim), fill)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    frames[mask] = torch.randn(int(mask.sum()), dim)
    return frames, mask


@pytest.mark.parametrize("width", [2, 3, 4])
def test_each_window_is_the_mean_of_its_real_frames(width: int) -> None:
    torch.manual_seed(0)
    lengths = [9, 1, 4, 7, 8]
    frames, mask = _padded(lengths, 5, fill=1e6)  # huge padding: any leak shows
    pooled, pooled_mask = pool_frames(frames, mask, width)
    assert pooled.shape == (5, -(-9 // width), 5)
    assert pooled_mask.sum(-1).tolist() == [-(-n // width) for n in lengths]
    for row, n in enumerate(lengths):
        for window, start in enumerate(range(0, n, width)):
            expected = frames[row, start : min(start + width, n)].mean(0)
            torch.testing.assert_close(pooled[row, window], expected)
        assert torch.all(pooled[row, -(-n // width) :] == 0)


def test_width_one_returns_the_inputs() -> None:
    frames, mask = _padded([3, 2], 4)
    pooled, pooled_mask = pool_frames(frames, mask, 1)
    assert pooled is frames and pooled_mask is mask


def _config(**overrides) -> FusionConfig:
    return FusionConfig(input_dims={"text": 6, "audio": 5, "video": 4}, d_model=8, num_heads=2, **overrides)


def _batch(audio_lengths: list[int]) -> tuple[dict, dict]:
    features, masks = {}, {}
    for modality, dim, lengths in (("text", 6, [4] * len(audio_lengths)), ("audio", 5, audio_lengths),
                                   ("video", 4, [3] * len(audio_lengths))):  # fmt: skip
        features[modality], masks[modality] = _padded(lengths, dim)
    return features, masks


@pytest.mark.parametrize("mode", ["crossmodal", "concat", "audio"])
def test_the_model_pools_audio_exactly_as_pre_pooled_frames_read_unpooled(mode: str) -> None:
    torch.manual_seed(0)
    pooled_model = FusionModel(_config(mode=mode, audio_pool=2)).eval()
    plain = FusionModel(_config(mode=mode))
    audio = pooled_model.projections["audio"]
    audio.mean.copy_(torch.randn(5))
    audio.std.copy_(torch.rand(5) + 0.5)
    plain.load_state_dict(pooled_model.state_dict())  # the same weights and buffers: pooling adds none
    plain.eval()
    features, masks = _batch([7, 2, 5])
    pre = dict(features)
    pre_masks = dict(masks)
    pre["audio"], pre_masks["audio"] = pool_frames(features["audio"], masks["audio"], 2)
    with torch.no_grad():
        torch.testing.assert_close(pooled_model(features, masks).logits, plain(pre, pre_masks).logits)
        # ... and differs from reading the 50 Hz frames unpooled (the pooling does something)
        assert not torch.allclose(pooled_model(features, masks).logits, plain(features, masks).logits)
    assert masks["audio"].shape == (3, 7), "the caller's masks are not replaced"


def test_a_row_scores_the_same_alone_and_in_a_longer_batch() -> None:
    torch.manual_seed(0)
    model = FusionModel(_config(audio_pool=3)).eval()
    features, masks = _batch([11, 4, 5])
    with torch.no_grad():
        together = model(features, masks).logits
        alone = model({m: f[1:2, : int(masks[m][1].sum())] for m, f in features.items()},
                      {m: k[1:2, : int(k[1].sum())] for m, k in masks.items()}).logits  # fmt: skip
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-5)


def test_audio_pool_is_validated_and_old_checkpoints_read_back_unpooled(tmp_path) -> None:
    with pytest.raises(ParamsError, match="audio_pool"):
        _config(audio_pool=0)
    torch.manual_seed(0)
    model = FusionModel(_config(audio_pool=2)).eval()
    save_model(tmp_path / "pooled", model)
    assert load_model(tmp_path / "pooled").models[0].config.audio_pool == 2
    # a checkpoint written before the field existed: no audio_pool in its config
    config_path = tmp_path / "pooled" / "config.json"
    description = json.loads(config_path.read_text())
    description["model_config"].pop("audio_pool")
    config_path.write_text(json.dumps(description))
    assert load_model(tmp_path / "pooled").models[0].config.audio_pool == 1
    assert dataclasses.replace(model.config, audio_pool=1) == load_model(tmp_path / "pooled").models[0].config
