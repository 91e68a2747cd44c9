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
    from transformers import CLIPImageProcessorPil, CLIPVisionModel, CLIPVisionModelWithProjection

    encoder = build_encoder("video", str(clip_dir), embedding=embedding)
    assert encoder.info.weights == "pretrained" and encoder.info.extra["embedding"] == embedding
    # the slow (PIL) processor: with torchvision installed, plain CLIPImageProcessor is the fast one
    reference = CLIPImageProcessorPil(**CLIP_B32_PROCESSOR)
    assert type(encoder.image_processor) is CLIPImageProcessorPil
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
    with pytest.raises(ValueError, match=r"extract\.video\.embedding"):
        VideoEncoder.from_spec("random-init:clip-vision", embedding="cls")


def test_split_revision():
    assert split_revision("microsoft/wavlm-base-plus@abc123") == ("microsoft/wavlm-base-plus", "abc123")
    assert split_revision("bert-base-uncased") == ("bert-base-uncased", None)
    with pytest.raises(ValueError, match="empty"):
        split_revision("@abc")


# microsoft/wavlm-base-plus's preprocessor_config.json sets do_normalize false; both are tested
WAVLM_BASE_PLUS_EXTRACTOR = dict(
    feature_size=1, sampling_rate=16000, padding_value=0.0, return_attention_mask=True
)


def _tiny_wavlm_config(feat_extract_norm: str):
    from transformers import WavLMConfig

    return WavLMConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=feat_extract_norm == "layer",
        apply_spec_augment=False,
    )


@pytest.mark.parametrize(
    "do_normalize, feat_extract_norm", [(False, "group"), (True, "layer"), (True, "group")]
)
def test_audio_pretrained_equals_feature_extractor_and_forward(tmp_path, do_normalize, feat_extract_norm):
    from transformers import Wav2Vec2FeatureExtractor, WavLMModel

    torch.manual_seed(0)
    WavLMModel(_tiny_wavlm_config(feat_extract_norm)).save_pretrained(tmp_path)
    extractor = Wav2Vec2FeatureExtractor(**WAVLM_BASE_PLUS_EXTRACTOR, do_normalize=do_normalize)
    extractor.save_pretrained(tmp_path)
    encoder = AudioEncoder.from_spec(str(tmp_path))
    assert encoder.info.extra["normalize"] is do_normalize
    model = WavLMModel.from_pretrained(tmp_path).eval()
    rng = np.random.default_rng(5)
    waveforms = [(0.3 * rng.standard_normal(n) + 0.1).astype(np.float32) for n in (8000, 12800, 4000)]
    features = encoder.encode(waveforms)
    batch = extractor(waveforms, sampling_rate=16000, padding=True, return_tensors="pt")
    for i, waveform in enumerate(waveforms):
        n = waveform.shape[0]
        np.testing.assert_allclose(
            encoder._prepare(i, waveform), batch.input_values[i, :n].numpy(), atol=1e-6
        )
        assert (batch.input_values[i, n:] == 0).all()  # padding value 0, as mer pads
        single = extractor(waveform, sampling_rate=16000, return_tensors="pt")  # no padding at all
        with torch.inference_mode():
            expected = model(**single).last_hidden_state[0].numpy()
        assert features[i].shape == expected.shape
        assert _cosine_rows(features[i], expected).min() >= 0.9999
        np.testing.assert_allclose(features[i], expected, atol=1e-4)


def test_text_pretrained_equals_bert_tokenizer_and_forward(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    tokenizer = BertTokenizer(vocab_file=str(packaged_minilm_dir() / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = TextEncoder.from_spec(str(tmp_path))
    model = BertModel.from_pretrained(tmp_path).eval()
    texts = ["I can't believe it's Friday!", "Well... okay, fine.", "Über naïve café; résumé 42"]
    features = encoder.encode(texts, max_len=12)
    ours = encoder.tokenizer(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")
    for i, text in enumerate(texts):
        reference = tokenizer(text, truncation=True, max_length=12, return_tensors="pt")
        length = reference.input_ids.shape[1]
        assert ours.input_ids[i, :length].tolist() == reference.input_ids[0].tolist()
        with torch.inference_mode():
            expected = model(**reference).last_hidden_state[0].numpy()
        assert features[i].shape == expected.shape == (length, 16)
        np.testing.assert_allclose(features[i], expected, atol=1e-5)


@pytest.mark.parametrize("modality", ["text", "audio", "video"])
def test_revision_reaches_from_pretrained_for_model_and_processor(monkeypatch, modality):
    """``org/name@<rev>`` passes ``revision=<rev>`` to every loader; no network (loaders faked)."""
    import transformers

    calls = []

    class Stop(Exception):
        pass

    def fake(name):
        def from_pretrained(source, *args, **kwargs):
            calls.append((name, source, kwargs.get("revision")))
            raise Stop

        return from_pretrained

    for name in ("AutoModel", "AutoTokenizer", "CLIPVisionModel", "CLIPVisionModelWithProjection"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", fake(name))
    with pytest.raises(Stop):
        build_encoder(modality, "org/checkpoint@0123abcd")
    assert calls and all(call[1:] == ("org/checkpoint", "0123abcd") for call in calls)


def test_video_revision_reaches_model_and_image_processor(monkeypatch, clip_dir):
    import transformers

    calls = []
    real_model = transformers.CLIPVisionModel.from_pretrained(clip_dir)

    def model_loader(source, *args, **kwargs):
        calls.append(("model", source, kwargs.get("revision")))
        return real_model

    def processor_loader(source, *args, **kwargs):
        calls.append(("processor", source, kwargs.get("revision")))
        return transformers.CLIPImageProcessor(**CLIP_B32_PROCESSOR)

    monkeypatch.setattr(transformers.CLIPVisionModel, "from_pretrained", model_loader)
    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", processor_loader)
    encoder = build_encoder("video", "org/clip@0123abcd")
    assert calls == [("model", "org/clip", "0123abcd"), ("processor", "org/clip", "0123abcd")]
    assert encoder.info.revision == "0123abcd" and encoder.image_processor is not None


def test_video_embedding_param_is_validated_naming_the_key():
    from mer.params import ExtractParams, ParamsError, section_from_mapping

    assert ExtractParams().video.embedding == "pooler"
    with pytest.raises(ParamsError, match=r"extract\.video\.embedding"):
        section_from_mapping(ExtractParams, {"video": {"embedding": "cls"}}, "extract")
