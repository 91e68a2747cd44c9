"""Pretrained encoders are processor-exact: mer's prepared inputs and features equal those of the
official Hugging Face processors and the model's own forward.

No hub is reachable, so each test builds the processor from the published configuration values
of the real checkpoint (``openai/clip-vit-base-patch32``, ``microsoft/wavlm-base-plus``, the
packaged MiniLM vocabulary for BERT), saves it beside a tiny random-init model of the same
architecture, and loads that directory through mer as a pretrained spec would be loaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.encoders import AudioEncoder, TextEncoder, VideoEncoder, build_encoder, packaged_minilm_dir
from mer.encoders.base import split_revision

# openai/clip-vit-base-patch32's preprocessor_config.json
CLIP_B32_PROCESSOR = dict(
    do_resize=True,
    size={"shortest_edge": 224},
    resample=3,  # PIL bicubic
    do_center_crop=True,
    crop_size={"height": 224, "width": 224},
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    do_convert_rgb=True,
)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny CLIP ViT (224 px, 32 px patches as in ViT-B/32, projection 8) + the B/32 processor."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    path = tmp_path_factory.mktemp("clip")
    config = CLIPVisionConfig(
        image_size=224,
        patch_size=32,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    CLIPImageProcessor(**CLIP_B32_PROCESSOR).save_pretrained(path)
    return path


def _frames(seed: int, height: int, width: int, count: int = 3) -> np.ndarray:
    """Smooth-ish synthetic RGB frames (random noise plus gradients), uint8 ``(F, H, W, 3)``."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    noise = rng.normal(0, 40, (count, height, width, 3))
    return np.clip(grid + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("embedding", ["pooler", "projected"])
def test_video_pretrained_equals_clip_processor_and_forward(clip_dir, embedding):
    from transformers import CLIPImageProcessor, CLIPVisionModel, CLIPVisionModelWithProjection

    encoder = build_encoder("video", str(clip_dir), embedding=embedding)
    assert encoder.info.weights == "pretrained" and encoder.info.extra["embedding"] == embedding
    reference = CLIPImageProcessor(**CLIP_B32_PROCESSOR)  # slow (PIL) processor
    model_class = CLIPVisionModelWithProjection if embedding == "projected" else CLIPVisionModel
    model = model_class.from_pretrained(clip_dir).eval()
    std = torch.tensor(CLIP_B32_PROCESSOR["image_std"]).view(1, 3, 1, 1)
    clips = [_frames(1, 180, 320), _frames(2, 300, 240, count=2), _frames(3, 224, 224, count=1)]
    features = encoder.encode(clips)
    for clip, feature in zip(clips, features, strict=True):
        expected_pixels = reference(images=list(clip), return_tensors="pt").pixel_values
        ours = encoder.prepare(clip).cpu()
        # in [0, 1] pixel units before normalisation
        pixel_diff = ((ours - expected_pixels) * std).abs().max().item()
        assert pixel_diff <= 2 / 255, pixel_diff
        with torch.inference_mode():
            output = model(pixel_values=expected_pixels)
        expected = (output.image_embeds if embedding == "projected" else output.pooler_output).numpy()
        assert feature.shape == expected.shape == (clip.shape[0], encoder.info.hidden_dim)
        assert _cosine_rows(feature, expected).min() >= 0.9999
        np.testing.assert_allclose(feature, expected, atol=1e-5)
    assert encoder.info.hidden_dim == (8 if embedding == "projected" else 16)


def test_video_random_init_keeps_the_torch_path():
    """random-init specs use the fixed bilinear torch path (the default run's features)."""
    encoder = VideoEncoder.from_spec("random-init:clip-vision")
    assert encoder.image_processor is None and encoder.info.extra["embedding"] == "pooler"
    clip = _frames(4, 90, 120)
    with torch.inference_mode():
        expected = encoder.model(pixel_values=encoder.preprocess(clip)).pooler_output.numpy()
    np.testing.assert_array_equal(encoder.encode([clip])[0], expected)


def test_video_embedding_is_validated():
    with pytest.raises(ValueError, match="extract.video.embedding"):
        VideoEncoder.from_spec("random-init:clip-vision", embedding="cls")


def test_split_revision():
    assert split_revision("microsoft/wavlm-base-plus@abc123") == ("microsoft/wavlm-base-plus", "abc123")
    assert split_revision("bert-base-uncased") == ("bert-base-uncased", None)
    with pytest.raises(ValueError, match="empty"):
        split_revision("@abc")
