"""The synthetic corpus: files decode, byte-reproducible, splits, unreliability, cues, domain shift."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

try:
    import mer  # noqa: F401
except ImportError:  # run without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mer.corpora import synthetic
from mer.params import SyntheticParams
from mer.vocab import EMOTIONS, MODALITIES

TINY = SyntheticParams(
    train_speakers=2,
    dev_speakers=1,
    test_speakers=1,
    utterances_per_speaker=8,
    target_utterances_per_speaker=6,
    min_seconds=0.5,
    max_seconds=0.8,
    video_frames=3,
    video_size=32,
    target_shift=1.0,  # the telephone-channel shift these tests describe; the default is stronger
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny corpus of both domains, generated once."""
    root = tmp_path_factory.mktemp("synthetic")
    return {domain: synthetic.generate(TINY, domain, root / domain).parent for domain in synthetic.DOMAINS}


def _spectral_centroid(signal: np.ndarray, sample_rate: int) -> float:
    power = np.abs(np.fft.rfft(signal)) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1.0 / sample_rate)
    return float((power * freqs).sum() / power.sum())


def _spectral_flatness(signal: np.ndarray) -> float:
    """Median over 32 ms frames of geometric / arithmetic mean power: ~0 tonal, ~0.5+ noise."""
    frames = signal[: len(signal) // 512 * 512].reshape(-1, 512) * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    return float(np.median(np.exp(np.log(power).mean(1)) / power.mean(1)))


def _audio(
    emotion: str,
    condition: str,
    domain: str = "source",
    seed: int = 0,
    cfg: SyntheticParams = TINY,
    speaker: int = 0,
) -> np.ndarray:
    style = synthetic.domain_style(domain, cfg.target_shift)
    return synthetic.synthesize_audio(
        np.random.default_rng(seed),
        emotion,
        condition,
        cfg.sample_rate,
        cfg.sample_rate,
        synthetic.speakers_of(cfg, domain)[speaker],
        style,
        cfg.noise_snr_db,
    )


def _face(emotion: str, condition: str, domain: str = "source", seed: int = 0, size: int = 64) -> np.ndarray:
    style = synthetic.domain_style(domain, TINY.target_shift)
    speaker = synthetic.speakers_of(TINY, domain)[0]
    return synthetic.render_face(
        np.random.default_rng(seed), emotion, condition, 4, size, speaker, style
    ).astype(np.float64)


# ------------------------------------------------------------------------------------- files


def test_files_exist_and_decode(corpus: dict[str, Path]) -> None:
    for domain, root in corpus.items():
        table = synthetic.load(root, domain)
        assert len(table) == 4 * (8 if domain == "source" else 6)
        for row in table.itertuples():
            info = sf.info(row.audio_path)
            assert (info.samplerate, info.channels, info.subtype) == (TINY.sample_rate, 1, "PCM_16")
            assert info.frames == round(row.duration * TINY.sample_rate)
            assert TINY.min_seconds <= row.duration <= TINY.max_seconds
            with av.open(row.video_path) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(frames) == TINY.video_frames
            assert frames[0].shape == (TINY.video_size, TINY.video_size, 3)


def test_generation_is_byte_identical(corpus: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """Again, and written by 3 worker processes where the fixture's 32 rows were written by one."""
    assert synthetic._workers(32) == 1
    monkeypatch.setattr(synthetic, "_workers", lambda n_rows: 3)
    again = synthetic.generate(TINY, "source", tmp_path / "again").parent
    first = corpus["source"]
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert any(n.suffix == ".mp4" for n in names) and any(n.suffix == ".wav" for n in names)
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


def test_other_seed_other_corpus(corpus: dict[str, Path], tmp_path: Path) -> None:
    cfg = SyntheticParams(**{**TINY.__dict__, "seed": TINY.seed + 1})
    other = pd.read_csv(synthetic.generate(cfg, "source", tmp_path / "other"))
    assert not other.equals(pd.read_csv(corpus["source"] / "transcripts.csv"))


# ------------------------------------------------------------------------------ the metadata


def test_load_columns_and_dtypes(corpus: dict[str, Path]) -> None:
    table = synthetic.load(corpus["source"], "synthetic")
    assert list(table.columns) == list(synthetic.METADATA_COLUMNS)
    assert (table["corpus"] == "synthetic").all()
    for column in (
        "utt_id",
        "corpus",
        "speaker",
        "session",
        "split",
        "label",
        "text",
        "audio_path",
        "video_path",
        "text_condition",
        "audio_condition",
        "video_condition",
    ):
        assert pd.api.types.is_string_dtype(table[column]), column
    assert table["label_id"].dtype == np.int64
    for column in ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration"):
        assert table[column].dtype == np.float64, column
    for modality in MODALITIES:
        reliable = table[f"{modality}_reliable"]
        assert reliable.dtype == bool
        conditions = table[f"{modality}_condition"]
        assert (reliable == (conditions == synthetic.RELIABLE_CONDITION[modality])).all()
        assert set(conditions) <= {
            synthetic.RELIABLE_CONDITION[modality],
            *synthetic.UNRELIABLE_CONDITIONS[modality],
        }
    assert (table["label_id"] == table["label"].map(EMOTIONS.index)).all()
    assert (table["start"] == 0.0).all() and (table["end"] == table["duration"]).all()
    assert table["audio_path"].iloc[0] == str(corpus["source"] / "wav" / f"{table.utt_id.iloc[0]}.wav")
    assert table["valence"].between(1, 5).all() and table["dominance"].between(1, 5).all()
    assert table["sentiment"].between(-3, 3).all()


def test_load_missing_transcripts_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "transcripts.csv"))):
        synthetic.load(tmp_path, "synthetic")


def test_unknown_domain_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'validation'"):
        synthetic.generate(TINY, "validation", tmp_path)


def test_ids_speakers_sessions_and_splits(corpus: dict[str, Path]) -> None:
    tables = {d: synthetic.load(root, d) for d, root in corpus.items()}
    assert tables["source"]["utt_id"].str.fullmatch(r"src_spk0[0-3]_u\d{4}").all()
    assert tables["target"]["utt_id"].str.fullmatch(r"tgt_spk0[4-7]_u\d{4}").all()
    assert not set(tables["source"]["speaker"]) & set(tables["target"]["speaker"])
    for domain, table in tables.items():
        assert table["utt_id"].is_unique
        by_split = table.groupby("split")["speaker"].apply(set)
        assert by_split.map(len).to_dict() == {"train": 2, "dev": 1, "test": 1}
        assert not (
            by_split["train"] & by_split["dev"]
            or by_split["train"] & by_split["test"]
            or by_split["dev"] & by_split["test"]
        )
        # sessions pair speakers inside a split and never span two
        assert (table.groupby("session")["split"].nunique() == 1).all()
        assert table["session"].str.startswith(f"{domain}_s").all()
        assert table.groupby("session")["speaker"].nunique().max() <= 2


def test_labels_balanced_per_speaker() -> None:
    cfg = SyntheticParams(utterances_per_speaker=10, target_utterances_per_speaker=30)
    for domain in synthetic.DOMAINS:
        plan = synthetic.plan_corpus(cfg, domain)
        counts = plan.groupby(["speaker", "emotion"]).size().unstack(fill_value=0)
        assert list(counts.columns) == list(EMOTIONS)
        assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()
        totals = counts.sum()
        assert totals.max() - totals.min() <= 1  # leftovers rotate across speakers
        # shuffled, not in cycle order
        first = plan[plan["speaker"] == plan["speaker"].iloc[0]]["emotion"].tolist()
        assert first != [EMOTIONS[i % 4] for i in range(len(first))]


def test_one_or_two_unreliable_modalities() -> None:
    cfg = SyntheticParams(
        train_speakers=10,
        dev_speakers=5,
        test_speakers=5,
        utterances_per_speaker=200,
        two_unreliable_prob=0.3,
    )
    plan = synthetic.plan_corpus(cfg, "source")
    unreliable = sum(
        (plan[f"{m}_condition"] != synthetic.RELIABLE_CONDITION[m]).astype(int) for m in MODALITIES
    )
    assert unreliable.between(1, 2).all()
    assert abs((unreliable == 2).mean() - 0.3) < 0.03  # 4000 draws: std 0.007
    for modality in MODALITIES:  # uniform over modalities: each unreliable in ~(0.7/3 + 0.3*2/3)
        share = (plan[f"{modality}_condition"] != synthetic.RELIABLE_CONDITION[modality]).mean()
        assert abs(share - 0.4333) < 0.04, modality
    assert set(plan["video_condition"]) == {"clear", "occluded", "blank"}
    for prob, count in ((0.0, 1), (1.0, 2)):
        plan = synthetic.plan_corpus(SyntheticParams(two_unreliable_prob=prob), "target")
        unreliable = sum(
            (plan[f"{m}_condition"] != synthetic.RELIABLE_CONDITION[m]).astype(int) for m in MODALITIES
        )
        assert (unreliable == count).all()


def test_vad_follows_emotion() -> None:
    plan = synthetic.plan_corpus(SyntheticParams(), "source")
    means = plan.groupby("emotion")[["valence", "arousal", "dominance", "sentiment"]].mean()
    assert means.loc["happiness", "valence"] > means.loc["neutral", "valence"] + 1
    assert means.loc["neutral", "valence"] > means.loc["sadness", "valence"] + 0.8
    assert means.loc["anger", "arousal"] > means.loc["sadness", "arousal"] + 1.5
    assert means.loc["anger", "dominance"] > means.loc["sadness", "dominance"] + 1.5
    assert means.loc["happiness", "sentiment"] > 1 > -1 > means.loc["sadness", "sentiment"]


# ------------------------------------------------------------------------------------ cues


def _frame(sentence: str) -> str:
    """The sentence with its shared content (subject, predicate) removed: the emotional frame."""
    lowered = sentence.lower()
    for phrase in synthetic.SUBJECTS + synthetic.PREDICATES:
        lowered = lowered.replace(phrase.lower(), "")
    return lowered


def test_text_cues() -> None:
    rng = np.random.default_rng(0)
    frames = {
        e: {_frame(synthetic.compose_text(rng, e, "emotional", 0.0)) for _ in range(300)} for e in EMOTIONS
    }
    ambiguous = {
        _frame(synthetic.compose_text(rng, e, "ambiguous", 0.0)) for e in EMOTIONS for _ in range(100)
    }
    for i, first in enumerate(EMOTIONS):
        assert not frames[first] & ambiguous, first
        for second in EMOTIONS[i + 1 :]:
            assert not frames[first] & frames[second], (first, second)
    assert min(len(f) for f in frames.values()) >= 12  # wordings per emotion
    sentences = {synthetic.compose_text(rng, "anger", "emotional", 0.0) for _ in range(1000)}
    assert len(sentences) > 500  # times 144 shared events: many distinct sentences
    # ambiguous wording does not depend on the emotion at all
    for seed in range(20):
        texts = {synthetic.compose_text(np.random.default_rng(seed), e, "ambiguous", 1.0) for e in EMOTIONS}
        assert len(texts) == 1


def test_audio_cues_separate_anger_from_sadness() -> None:
    anger = [_audio("anger", "clean", seed=s, speaker=s % 4) for s in range(6)]
    sadness = [_audio("sadness", "clean", seed=s, speaker=s % 4) for s in range(6)]
    rms = {e: [np.sqrt(np.mean(x**2)) for x in xs] for e, xs in (("anger", anger), ("sadness", sadness))}
    centroid = {
        e: [_spectral_centroid(x, TINY.sample_rate) for x in xs]
        for e, xs in (("anger", anger), ("sadness", sadness))
    }
    assert min(rms["anger"]) > 3 * max(rms["sadness"])
    assert min(centroid["anger"]) > 2 * max(centroid["sadness"])

    # tempo: syllable rate shows as the dominant envelope modulation frequency
    def envelope_rate(x: np.ndarray) -> float:
        envelope = np.abs(x).reshape(-1, 160).mean(1)  # 10 ms frames
        spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
        return float(np.fft.rfftfreq(len(envelope), 0.01)[np.argmax(spectrum)])

    assert np.median([envelope_rate(x) for x in anger]) > 2 * np.median([envelope_rate(x) for x in sadness])


def test_noisy_audio_has_lower_snr_and_no_loudness_cue() -> None:
    clean = [_audio(e, "clean", seed=s) for s, e in enumerate(EMOTIONS)]
    noisy = [_audio(e, "noisy", seed=s) for s, e in enumerate(EMOTIONS)]
    assert min(_spectral_flatness(x) for x in noisy) > 5 * max(_spectral_flatness(x) for x in clean)
    noisy_rms = [np.sqrt(np.mean(x**2)) for x in noisy]
    assert max(noisy_rms) / min(noisy_rms) < 2.5  # clean: anger / sadness is ~6x


def test_video_cues_separate_anger_from_sadness_and_occlusion_hides_them() -> None:
    def mouth_darkness(clip: np.ndarray) -> float:
        # mouth box around (0.5, 0.5 + 0.22 * scale) of a 64 px frame
        return float(255 - clip[:, 40:50, 24:40].mean())

    anger, sadness = _face("anger", "clear"), _face("sadness", "clear")
    assert mouth_darkness(anger) > mouth_darkness(sadness) + 40
    assert np.abs(anger.mean(0) - sadness.mean(0)).mean() > 10
    # the same speaker, occluded: the cue region is identical gray
    anger_occluded, sadness_occluded = _face("anger", "occluded"), _face("sadness", "occluded")
    centre = (slice(None), slice(18, 46), slice(18, 46))
    assert (anger_occluded[centre] == 128).all() and (sadness_occluded[centre] == 128).all()
    blank = _face("happiness", "blank")
    assert (blank == 128).all()


# ------------------------------------------------------------------------------ domain shift


def test_target_shift_zero_is_the_source_process() -> None:
    assert synthetic.domain_style("target", 0.0) == synthetic.domain_style("source", 1.0)
    assert synthetic.domain_style("target", 1.0) != synthetic.domain_style("source", 1.0)

    def vocabulary(shift: float) -> set[str]:
        rng = np.random.default_rng(1)
        return {
            w
            for e in EMOTIONS
            for _ in range(400)
            for w in re.findall(r"[a-z']+", synthetic.compose_text(rng, e, "emotional", shift).lower())
        }

    source = vocabulary(0.0)
    assert vocabulary(0.0) == source  # same process, same vocabulary
    shifted = vocabulary(1.0)
    assert {"livid", "ecstatic", "devastated"} <= shifted - source
    assert {"furious", "delighted", "heartbroken"} <= source - shifted


def test_target_differs_from_source(corpus: dict[str, Path]) -> None:
    # channel: the target band-limits to 3.4 kHz, so little energy is left above 4 kHz
    def high_band(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x)) ** 2
        return float(power[np.fft.rfftfreq(len(x), 1 / TINY.sample_rate) > 4000].sum() / power.sum())

    source = np.mean([high_band(_audio("anger", "clean", "source", s)) for s in range(4)])
    target = np.mean([high_band(_audio("anger", "clean", "target", s)) for s in range(4)])
    assert source > 5 * target
    # voices: target speakers are drawn higher (F0 x1.12) and with other formants
    source_f0 = np.mean([s.f0_hz for s in synthetic.speakers_of(SyntheticParams(), "source")])
    target_f0 = np.mean([s.f0_hz for s in synthetic.speakers_of(SyntheticParams(), "target")])
    assert target_f0 > 1.08 * source_f0
    # lexicon: the generated target uses target wording only
    target_texts = " ".join(synthetic.load(corpus["target"], "t")["text"]).lower()
    assert not re.search(r"furious|delighted|heartbroken|the record shows", target_texts)
    # faces: rendered with other colours and lower contrast, cues kept
    anger_source, anger_target = _face("anger", "clear", "source"), _face("anger", "clear", "target")
    assert np.abs(anger_source.mean((0, 1, 2)) - anger_target.mean((0, 1, 2))).max() > 10
    assert (
        _face("anger", "clear", "target")[:, 40:50, 24:40].mean()
        < _face("sadness", "clear", "target")[:, 40:50, 24:40].mean() - 30
    )
    # the cues survive the channel: anger still louder and brighter than sadness
    anger = _audio("anger", "clean", "target")
    sadness = _audio("sadness", "clean", "target")
    assert np.sqrt(np.mean(anger**2)) > 3 * np.sqrt(np.mean(sadness**2))
    assert _spectral_centroid(anger, TINY.sample_rate) > 1.5 * _spectral_centroid(sadness, TINY.sample_rate)
    # at the default (stronger) shift loudness still separates them
    strong = dataclasses.replace(TINY, target_shift=SyntheticParams().target_shift)
    anger = _audio("anger", "clean", "target", cfg=strong)
    sadness = _audio("sadness", "clean", "target", cfg=strong)
    assert np.sqrt(np.mean(anger**2)) > 2 * np.sqrt(np.mean(sadness**2))


def test_default_corpus_size() -> None:
    cfg = SyntheticParams()
    sizes = {d: len(synthetic.plan_corpus(cfg, d)) for d in synthetic.DOMAINS}
    assert sizes == {"source": 400, "target": 300}
