"""ResNet3D-18 video encoder (seed 001): Kinetics input preparation, windows of frames, seeded
random init, the offline error of the pretrained spec, and an extraction from a real video file."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.models.video import R3D_18_Weights

from mer import extract, features
from mer.encoders import build_encoder
from mer.encoders.r3d import R3DEncoder
from mer.params import ExtractParams, ParamsError, VideoExtractParams, section_from_mapping
from tests.corpus_media import write_video


@pytest.fixture(scope="module")
def encoder() -> R3DEncoder:
    return build_encoder("video", "random-init:r3d-18", init_seed=0)


def _frames(count: int, height: int = 90, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_windows_are_prepared_exactly_as_the_kinetics_weights_transform(encoder: R3DEncoder) -> None:
    frames = _frames(5)
    prepared = encoder.prepare(frames, frames_per_window=2)  # (N, C, W, 112, 112)
    transform = R3D_18_Weights.KINETICS400_V1.transforms()
    # torchvision's own call: a (T, C, H, W) uint8 clip per window; the last window repeats frame 4
    expected = torch.stack(
        [transform(torch.from_numpy(frames[picks]).permute(0, 3, 1, 2)) for picks in ([0, 1], [2, 3], [4, 4])]
    )
    assert prepared.shape == (3, 3, 2, 112, 112) and prepared.dtype == torch.float32
    assert torch.equal(prepared, expected)
    # and that transform is what its docs say: 128 x 171 bilinear (uint8, no antialias), crop 112
    assert transform.resize_size == [128, 171] and transform.crop_size == [112, 112]


def test_one_vector_per_window_independent_of_the_batch(encoder: R3DEncoder) -> None:
    long, short = _frames(5, seed=1), _frames(2, 48, 64, seed=2)
    out_long, out_short = encoder.encode([long, short], frames_per_window=2)
    assert out_long.shape == (3, 512) and out_short.shape == (1, 512)
    assert out_long.dtype == np.float32 and np.isfinite(out_long).all()
    [alone] = encoder.encode([short], frames_per_window=2)
    np.testing.assert_allclose(alone, out_short, atol=1e-5)
    [first_window] = encoder.encode([long[:2]], frames_per_window=2)  # windows do not see each other
    np.testing.assert_allclose(first_window[0], out_long[0], atol=1e-5)
    assert not np.allclose(out_long[0], out_long[1], atol=1e-3)  # different frames, different vectors
    assert encoder.info.weights == "random-init" and encoder.info.hidden_dim == 512
    assert encoder.info.extra["init_seed"] == 0 and encoder.info.extra["frames_per_window"] == 2


def test_random_init_is_seeded(encoder: R3DEncoder) -> None:
    same, other = (build_encoder("video", "random-init:r3d-18", init_seed=s) for s in (0, 1))
    assert extract.weights_hash(same) == extract.weights_hash(encoder) != extract.weights_hash(other)
    state = torch.random.get_rng_state()
    build_encoder("video", "random-init:r3d-18", init_seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched


def test_pretrained_weights_offline_fail_naming_the_random_init_spec(monkeypatch, tmp_path: Path) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"r3d-18 needs torchvision's Kinetics-400 weights") as caught:
        build_encoder("video", "r3d-18")
    assert "extract.video.model: random-init:r3d-18" in str(caught.value)
    assert R3D_18_Weights.KINETICS400_V1.url in str(caught.value)


def test_a_clip_embedding_choice_is_refused_for_r3d() -> None:
    with pytest.raises(ParamsError, match=r"extract.video.embedding: 'projected' is a CLIP choice"):
        section_from_mapping(
            VideoExtractParams, {"model": "r3d-18", "embedding": "projected"}, "extract.video"
        )


def test_extraction_of_real_videos_stores_one_vector_per_window(tmp_path: Path) -> None:
    paths = [
        write_video(tmp_path / f"clip{i}.mp4", seconds=s, size=48, seed=i) for i, s in enumerate((1.0, 0.3))
    ]
    table = pd.DataFrame({"utt_id": ["a", "b"], "video_path": [str(p) for p in paths],
                          "duration": [1.0, 0.3]})  # fmt: skip
    cfg = section_from_mapping(
        ExtractParams,
        {"video": {"model": "random-init:r3d-18", "frames_per_clip": 2, "fps": 5.0}, "device": "cpu"},
        "extract",
    )
    record = extract.extract_modality(table, "video", cfg, tmp_path / "features")
    assert record["ok"] and record["n_stored"] == 2
    meta = json.loads((tmp_path / "features/meta.json").read_text())
    assert (
        meta["weights"] == "random-init"
        and meta["hidden_dim"] == 512
        and meta["model"] == "random-init:r3d-18"
    )
    assert meta["encoder_extra"]["frames_per_window"] == 2 and meta["weights_hash"] != "none"
    stored = features.FeatureStore(tmp_path / "features")
    # 5 fps: ceil(1.0 * 5) = 5 frames -> 3 windows; ceil(0.3 * 5) = 2 frames -> 1 window
    assert stored["a"].shape == (math.ceil(5 / 2), 512) and stored["b"].shape == (1, 512)
