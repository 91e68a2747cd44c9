"""The built-in deterministic synthetic corpus: text + speech + face video with known cues.

The corpus exists to show that fusion learns. Every utterance carries an emotion cue in each
modality, coarse enough for frozen *random-weight* audio/video encoders to see:

- anger: F0 1.7x neutral with wide per-syllable jumps, 6 syllables/s, loud (RMS 0.16), bright
  (harmonic tilt k**-0.6); "I am furious that ...", "This is outrageous ..."; brows slanted
  inward-down, open tense rectangle mouth.
- happiness: F0 1.35x, rising contour (+45 %), 5/s, RMS 0.10, tilt 1.0; "What a wonderful day,
  ...", "I am so delighted that ..."; raised brows, wide smile.
- neutral: F0 1.0x, flat, 4/s, RMS 0.06, tilt 1.5; factual report wording ("The record shows
  that ... at noon."); level brows, flat mouth.
- sadness: F0 0.6x, narrow and falling, 2.5/s, quiet (RMS 0.025), dark (tilt 2.4); "It breaks my
  heart that ...", "I feel so heartbroken ..."; outer brow ends down, frown.

and one or two *unreliable* modalities whose cue is destroyed (ambiguous wording, loud noise,
occluded or blank face). The ``target`` domain shifts voices, channel, lexicon and face rendering
by ``SyntheticParams.target_shift`` while keeping every cue.

Everything is drawn from ``np.random.default_rng([seed, domain_index])`` (corpus plan) and from
per-utterance children of ``SeedSequence([seed, domain_index, speaker, utterance])`` (media), so
a corpus is byte-identical across runs and changing e.g. ``video_size`` leaves audio untouched.

>>> cfg = SyntheticParams(train_speakers=2, dev_speakers=1, test_speakers=1,
...                       utterances_per_speaker=4)
>>> plan = plan_corpus(cfg, "source")
>>> len(plan), sorted(plan["split"].unique())
(16, ['dev', 'test', 'train'])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from mer import schema
from mer.params import SyntheticParams
from mer.vocab import EMOTIONS, MODALITIES
from mer.workers import cpu_cores, forked_map

logger = logging.getLogger(__name__)

DOMAINS = ("source", "target")
#: Labels beside the emotion (mer.vocab.LABEL_KINDS): every utterance has VAD and a continuous
#: sentiment score derived from its valence
LABEL_KINDS = ("sentiment_score", "sentiment_polarity", "vad")
DOMAIN_PREFIX = {"source": "src", "target": "tgt"}
VIDEO_FPS = 4

RELIABLE_CONDITION = {"text": "emotional", "audio": "clean", "video": "clear"}
UNRELIABLE_CONDITIONS = {"text": ("ambiguous",), "audio": ("noisy",), "video": ("occluded", "blank")}

TRANSCRIPT_COLUMNS = (
    "utt_id",
    "speaker",
    "session",
    "split",
    "emotion",
    "valence",
    "arousal",
    "dominance",
    "sentiment",
    "text",
    "duration",
    "text_condition",
    "audio_condition",
    "video_condition",
)
#: The uniform metadata columns, then the synthetic corpus's reliability record.
METADATA_COLUMNS = (
    *schema.COLUMNS,
    *schema.RELIABILITY_COLUMNS,
    "text_condition",
    "audio_condition",
    "video_condition",
)


# --------------------------------------------------------------------------------------------
# Per-emotion cue tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prosody:
    """Audio cue of one emotion.

    Attributes:
        f0_factor (float): pitch level relative to the speaker's neutral F0.
        f0_range (float): std of per-syllable relative pitch jumps (pitch range).
        f0_slope (float): relative pitch change from start to end (contour).
        syllable_rate (float): syllables per second (tempo).
        rms (float): voiced-signal RMS before noise (energy).
        tilt (float): harmonic k has amplitude k**-tilt (low tilt = bright).
    """

    f0_factor: float
    f0_range: float
    f0_slope: float
    syllable_rate: float
    rms: float
    tilt: float


# Class differences are deliberately large (sadness 0.6x, anger 1.7x neutral F0): a
# random-weight WavLM only separates coarse spectral/energy differences.
PROSODY = {
    "anger": Prosody(f0_factor=1.7, f0_range=0.22, f0_slope=0.0, syllable_rate=6.0, rms=0.16, tilt=0.6),
    "happiness": Prosody(f0_factor=1.35, f0_range=0.08, f0_slope=0.45, syllable_rate=5.0, rms=0.10, tilt=1.0),
    "neutral": Prosody(f0_factor=1.0, f0_range=0.03, f0_slope=0.0, syllable_rate=4.0, rms=0.06, tilt=1.5),
    "sadness": Prosody(f0_factor=0.6, f0_range=0.015, f0_slope=-0.12, syllable_rate=2.5, rms=0.025, tilt=2.4),
}
NEUTRAL_F0_HZ = 150.0
BACKGROUND_SNR_DB = 25.0  # relative to neutral speech; the floor is a constant absolute level
NOISY_RMS = 0.07  # the noisy mixture is renormalised to this (x0.7-1.4) so loudness says nothing

# (valence, arousal, dominance) means on IEMOCAP's 1-5 scale.
VAD_MEANS = {
    "anger": (1.9, 4.2, 4.0),
    "happiness": (4.3, 3.9, 3.5),
    "neutral": (3.0, 2.8, 3.0),
    "sadness": (1.8, 2.0, 2.0),
}
VAD_STD = 0.35

# Face geometry in face units (fraction of the frame edge, before the per-speaker scale), y down.
# brows: (inner_y, outer_y); mouth: kind and parameters.
BROWS = {
    "anger": (-0.14, -0.29),  # inner ends down: slanted inward-down
    "happiness": (-0.30, -0.29),  # raised
    "neutral": (-0.21, -0.21),  # level
    "sadness": (-0.29, -0.15),  # outer ends down
}
MOUTHS = {
    "anger": ("rect", 0.17, 0.075),  # open tense rectangle: half-width, half-height
    "happiness": ("curve", 0.22, 0.11),  # smile: half-width, centre drop (corners up)
    "neutral": ("curve", 0.16, 0.0),  # flat line
    "sadness": ("curve", 0.16, -0.09),  # frown: corners down
}


# --------------------------------------------------------------------------------------------
# Lexicons
# --------------------------------------------------------------------------------------------

SUBJECTS = (
    "the meeting",
    "my brother",
    "the train",
    "our neighbour",
    "the landlord",
    "the test results",
    "my car",
    "the new manager",
    "the weekend trip",
    "the package",
    "my sister",
    "the council",
)
PREDICATES = (
    "was moved to Friday",
    "called me this morning",
    "arrived late again",
    "changed the plan",
    "came back today",
    "was cancelled",
    "sent the letter",
    "made a decision",
    "got the results",
    "finished the project",
    "turned up at the door",
    "changed the rules",
)
TIMES = ("nine o'clock", "noon", "half past two", "four fifteen", "six thirty")
DAYS = ("Monday", "Tuesday", "Thursday", "the third", "the twelfth")

# Shared by every emotion and both domains: hedged, cue-free wording, distinct from the
# factual pool of the neutral emotion.
AMBIGUOUS_TEMPLATES = (
    "I guess {event}.",
    "Well, {event}, I suppose.",
    "So, um, {event}.",
    "Hmm, {event}, or something like that.",
    "Okay, {event}. We will see.",
    "Apparently {event}, I don't know.",
)

# Each emotion: templates with {event} and slots filled from the emotion's word pools.
LEXICONS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "source": {
        "anger": {
            "templates": (
                "I am {adj} that {event}!",
                "This is {outrage}, {event} and nobody asked me!",
                "I can't believe {event}, I am absolutely {adj}!",
                "How dare they, {event}! I am {adj}.",
            ),
            "adj": ("furious", "outraged", "enraged", "fuming", "seething"),
            "outrage": ("outrageous", "unacceptable", "infuriating", "ridiculous"),
        },
        "happiness": {
            "templates": (
                "What a {good} day, {event}!",
                "I am so {adj} that {event}!",
                "Great news, {event} and I love it!",
                "I'm {adj}, {event}, this is {good}!",
            ),
            "adj": ("happy", "delighted", "thrilled", "overjoyed", "glad"),
            "good": ("wonderful", "fantastic", "amazing", "lovely"),
        },
        "neutral": {
            "templates": (
                "The record shows that {event} at {time}.",
                "According to the schedule, {event} on {day}.",
                "For reference, {event}; the note was filed on {day}.",
                "It was reported that {event} at {time}.",
            ),
        },
        "sadness": {
            "templates": (
                "I feel so {adj} that {event}.",
                "Sadly, {event} and I miss how things were.",
                "It breaks my heart that {event}.",
                "I am {adj}, {event}, and nothing helps.",
            ),
            "adj": ("sad", "heartbroken", "miserable", "down", "gloomy"),
        },
    },
    # Same emotions, different synonyms and templates ("livid" vs "furious").
    "target": {
        "anger": {
            "templates": (
                "I'm {adj} because {event}!",
                "Unbelievable, {event}! That is {outrage}.",
                "Honestly I'm {adj}, {event} yet again!",
            ),
            "adj": ("livid", "irate", "incensed", "mad", "steaming"),
            "outrage": ("absurd", "intolerable", "disgraceful", "insulting"),
        },
        "happiness": {
            "templates": (
                "Yay, {event}, I'm {adj}!",
                "This is {good}, {event}!",
                "I'm {adj} to hear {event}, how {good}!",
            ),
            "adj": ("ecstatic", "cheerful", "elated", "stoked", "pleased"),
            "good": ("brilliant", "awesome", "superb", "marvelous"),
        },
        "neutral": {
            "templates": (
                "The log states {event} at {time}.",
                "Per the timetable, {event} on {day}.",
                "Noted: {event} on {day}.",
            ),
        },
        "sadness": {
            "templates": (
                "I'm {adj}, {event}.",
                "Unfortunately {event}, and I feel {adj}.",
                "It hurts that {event}; I feel so alone.",
            ),
            "adj": ("sorrowful", "depressed", "devastated", "blue", "crushed"),
        },
    },
}


# --------------------------------------------------------------------------------------------
# Domain style
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainStyle:
    """How one domain renders its cues; the target departs from the source by ``shift``.

    Attributes:
        f0_factor (float): multiplies every speaker's neutral F0.
        formant_factor (float): multiplies every speaker's formant frequencies.
        lowcut_hz / highcut_hz (float): channel band-pass (0 / inf = no filter).
        background_snr_db (float): constant background noise level relative to neutral speech.
        lexicon_shift (float): probability that a sentence uses the target lexicon.
        face_scale (float): multiplies the face size.
        contrast (float): colours are pulled to mid-gray by this factor (1 = unchanged).
        tint (tuple[float, float, float]): RGB offset added to face and background colours.
    """

    f0_factor: float = 1.0
    formant_factor: float = 1.0
    lowcut_hz: float = 0.0
    highcut_hz: float = float("inf")
    background_snr_db: float = BACKGROUND_SNR_DB
    lexicon_shift: float = 0.0
    face_scale: float = 1.0
    contrast: float = 1.0
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)


def domain_style(domain: str, shift: float) -> DomainStyle:
    """The rendering style of ``domain``; ``target`` with ``shift=0`` equals ``source``.

    >>> domain_style("target", 0.0) == domain_style("source", 1.0)
    True
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if domain == "source" or shift == 0:
        return DomainStyle()
    return DomainStyle(
        f0_factor=1.0 + 0.12 * shift,
        formant_factor=1.0 + 0.15 * shift,
        # shift 1: a telephone-like 100-3400 Hz channel
        lowcut_hz=min(200.0, 100.0 * shift),
        highcut_hz=max(2500.0, 8000.0 - 4600.0 * shift),
        background_snr_db=BACKGROUND_SNR_DB - 10.0 * shift,
        lexicon_shift=min(1.0, shift),
        face_scale=max(0.75, 1.0 - 0.08 * shift),
        contrast=1.0 / (1.0 + 0.3 * shift),
        tint=(25.0 * shift, 5.0 * shift, -30.0 * shift),
    )


# --------------------------------------------------------------------------------------------
# Corpus plan (metadata only)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """One speaker's identity: voice and face.

    Attributes:
        name (str): e.g. ``spk03``; index (int): global speaker number.
        f0_hz (float): neutral F0; gain (float): loudness multiplier.
        formants_hz (tuple[float, float]): F1, F2 centres of the voice coloration.
        face_rgb / background_rgb / feature_rgb (tuple[float, float, float]): colours.
        face_aspect (float): face ellipse width / height; face_size (float): scale.
    """

    name: str
    index: int
    f0_hz: float
    gain: float
    formants_hz: tuple[float, float]
    face_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    feature_rgb: tuple[float, float, float]
    face_aspect: float
    face_size: float


FACE_PALETTE = (
    (236, 200, 170),
    (250, 220, 120),
    (200, 230, 250),
    (240, 170, 150),
    (210, 240, 190),
    (230, 210, 250),
)
BACKGROUND_PALETTE = ((40, 70, 120), (30, 100, 70), (100, 50, 90), (60, 60, 60), (20, 90, 110), (110, 70, 40))


def _draw_speaker(rng: np.random.Generator, index: int, style: DomainStyle) -> Speaker:
    """Draw one speaker's voice and face; per-speaker variation is smaller than the cues."""
    register = (0.87, 1.13)[index % 2]  # male-ish / female-ish, alternating
    f0 = NEUTRAL_F0_HZ * register * rng.uniform(0.96, 1.04) * style.f0_factor
    formants = (rng.uniform(450, 800) * style.formant_factor, rng.uniform(1100, 2000) * style.formant_factor)
    face = np.asarray(FACE_PALETTE[rng.integers(len(FACE_PALETTE))]) + rng.uniform(-15, 15, 3)
    background = np.asarray(BACKGROUND_PALETTE[rng.integers(len(BACKGROUND_PALETTE))]) + rng.uniform(
        -15, 15, 3
    )
    feature = rng.uniform(10, 40, 3)
    return Speaker(
        name=f"spk{index:02d}",
        index=index,
        f0_hz=float(f0),
        gain=float(rng.uniform(0.85, 1.15)),
        formants_hz=(float(formants[0]), float(formants[1])),
        face_rgb=tuple(float(c) for c in face),
        background_rgb=tuple(float(c) for c in background),
        feature_rgb=tuple(float(c) for c in feature),
        face_aspect=float(rng.uniform(0.82, 0.98)),
        face_size=float(rng.uniform(0.93, 1.0)),
    )


def compose_text(rng: np.random.Generator, emotion: str, condition: str, lexicon_shift: float) -> str:
    """One sentence: emotional wording of ``emotion`` or, if ambiguous, cue-free hedging.

    >>> compose_text(np.random.default_rng(0), "anger", "emotional", 0.0).endswith(("!", "."))
    True
    """
    event = f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {PREDICATES[rng.integers(len(PREDICATES))]}"
    use_target = rng.random() < lexicon_shift
    if condition == "ambiguous":
        template = AMBIGUOUS_TEMPLATES[rng.integers(len(AMBIGUOUS_TEMPLATES))]
        return template.format(event=event)
    if condition != "emotional":
        raise ValueError(f"text condition must be 'emotional' or 'ambiguous', got {condition!r}")
    pools = LEXICONS["target" if use_target else "source"][emotion]
    template = pools["templates"][rng.integers(len(pools["templates"]))]
    slots = {key: pool[rng.integers(len(pool))] for key, pool in pools.items() if key != "templates"}
    slots.update(time=TIMES[rng.integers(len(TIMES))], day=DAYS[rng.integers(len(DAYS))])
    sentence = template.format(event=event, **slots)
    return sentence[0].upper() + sentence[1:]


def _speaker_splits(cfg: SyntheticParams) -> list[str]:
    """Split of each local speaker: train speakers first, then dev, then test."""
    return ["train"] * cfg.train_speakers + ["dev"] * cfg.dev_speakers + ["test"] * cfg.test_speakers


def speakers_of(cfg: SyntheticParams, domain: str) -> list[Speaker]:
    """The speakers of ``domain``: source spk00.., target numbered after all source speakers."""
    domain_index = DOMAINS.index(domain)
    style = domain_style(domain, cfg.target_shift)
    n_speakers = len(_speaker_splits(cfg))
    rng = np.random.default_rng([cfg.seed, domain_index, 1_000_000])
    return [_draw_speaker(rng, domain_index * n_speakers + local, style) for local in range(n_speakers)]


def plan_corpus(cfg: SyntheticParams, domain: str) -> pd.DataFrame:
    """The transcripts table of ``domain`` (no media): ids, splits, labels, conditions, text."""
    domain_index = DOMAINS.index(domain) if domain in DOMAINS else None
    if domain_index is None:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    rng = np.random.default_rng([cfg.seed, domain_index])
    style = domain_style(domain, cfg.target_shift)
    per_speaker = cfg.utterances_per_speaker if domain == "source" else cfg.target_utterances_per_speaker
    splits = _speaker_splits(cfg)
    # sessions pair speakers two by two inside a split, so no session spans two splits
    sessions: list[str] = []
    for count in (cfg.train_speakers, cfg.dev_speakers, cfg.test_speakers):
        first = len(set(sessions))
        sessions += [f"{domain}_s{first + j // 2}" for j in range(count)]
    rows = []
    for local, speaker in enumerate(speakers_of(cfg, domain)):
        # continue one emotion cycle across speakers (leftovers even out), then shuffle
        start = local * per_speaker
        emotions = [EMOTIONS[(start + i) % len(EMOTIONS)] for i in range(per_speaker)]
        emotions = [emotions[i] for i in rng.permutation(per_speaker)]
        for utt, emotion in enumerate(emotions):
            n_unreliable = 2 if rng.random() < cfg.two_unreliable_prob else 1
            unreliable = {MODALITIES[i] for i in rng.choice(len(MODALITIES), n_unreliable, replace=False)}
            conditions = {
                m: (
                    str(UNRELIABLE_CONDITIONS[m][rng.integers(len(UNRELIABLE_CONDITIONS[m]))])
                    if m in unreliable
                    else RELIABLE_CONDITION[m]
                )
                for m in MODALITIES
            }
            vad = np.clip(np.asarray(VAD_MEANS[emotion]) + rng.normal(0, VAD_STD, 3), 1, 5)
            sentiment = float(np.clip((vad[0] - 3.0) * 1.5 + rng.normal(0, 0.3), -3, 3))
            duration = round(float(rng.uniform(cfg.min_seconds, cfg.max_seconds)), 2)
            text = compose_text(rng, emotion, conditions["text"], style.lexicon_shift)
            rows.append(
                {
                    "utt_id": f"{DOMAIN_PREFIX[domain]}_{speaker.name}_u{utt:04d}",
                    "speaker": speaker.name,
                    "session": sessions[local],
                    "split": splits[local],
                    "emotion": emotion,
                    "valence": round(float(vad[0]), 2),
                    "arousal": round(float(vad[1]), 2),
                    "dominance": round(float(vad[2]), 2),
                    "sentiment": round(sentiment, 2),
                    "text": text,
                    "duration": duration,
                    "text_condition": conditions["text"],
                    "audio_condition": conditions["audio"],
                    "video_condition": conditions["video"],
                }
            )
    return pd.DataFrame(rows, columns=list(TRANSCRIPT_COLUMNS))


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


def _spectral_filter(signal: np.ndarray, sample_rate: int, gain_fn) -> np.ndarray:
    """Filter ``signal`` (samples,) by a zero-phase magnitude response ``gain_fn(freqs_hz)``."""
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(len(signal), 1.0 / sample_rate)
    return np.fft.irfft(spectrum * gain_fn(freqs), n=len(signal))


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(signal**2)) + 1e-12)


def synthesize_audio(
    rng: np.random.Generator,
    emotion: str,
    condition: str,
    n_samples: int,
    sample_rate: int,
    speaker: Speaker,
    style: DomainStyle,
    noise_snr_db: float,
) -> np.ndarray:
    """One utterance's waveform, float64 of shape ``(samples,)`` in [-1, 1].

    A voiced harmonic signal (F0 contour, spectral tilt, syllable amplitude modulation, speaker
    formants) at the emotion's loudness; ``noisy`` mixes in loud coloured, modulated noise at
    ``noise_snr_db`` and renormalises the level; then the domain's channel and background noise.
    """
    prosody = PROSODY[emotion]
    seconds = n_samples / sample_rate
    t = np.arange(n_samples) / sample_rate
    rate = prosody.syllable_rate * rng.uniform(0.9, 1.1)
    syllable_phase = rate * t + rng.uniform(0, 1)  # one syllable per unit
    n_syllables = int(np.ceil(syllable_phase[-1])) + 1

    # F0 contour: per-syllable pitch targets (range), a global slope (contour), slight vibrato
    targets = rng.normal(0, prosody.f0_range, n_syllables)
    jumps = np.interp(syllable_phase, np.arange(n_syllables) + 0.5, targets)
    f0 = (
        speaker.f0_hz
        * prosody.f0_factor
        * (1 + prosody.f0_slope * (t / seconds - 0.5))
        * (1 + jumps)
        * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    )
    f0 = np.clip(f0, 50.0, 0.2 * sample_rate)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate

    # harmonics up to 0.45 * sample_rate, amplitude k**-tilt, random phases; sin(k * phase)
    # by the Chebyshev recurrence (3x faster than np.sin per harmonic)
    n_harmonics = max(1, min(80, int(0.45 * sample_rate / f0.max())))
    amplitudes = np.arange(1, n_harmonics + 1, dtype=np.float64) ** -prosody.tilt
    offsets = rng.uniform(0, 2 * np.pi, n_harmonics)
    voiced = np.zeros(n_samples)
    cos_phase = 2 * np.cos(phase)
    sin_prev, sin_k = np.zeros(n_samples), np.sin(phase)
    cos_prev, cos_k = np.ones(n_samples), np.cos(phase)
    for k in range(n_harmonics):
        # sin(k*phase + o) = sin(k*phase) cos(o) + cos(k*phase) sin(o)
        voiced += amplitudes[k] * (sin_k * np.cos(offsets[k]) + cos_k * np.sin(offsets[k]))
        sin_prev, sin_k = sin_k, cos_phase * sin_k - sin_prev
        cos_prev, cos_k = cos_k, cos_phase * cos_k - cos_prev

    # syllable-like amplitude modulation with per-syllable stress, 30 ms fades at the ends
    stress = rng.uniform(0.5, 1.0, n_syllables)[np.floor(syllable_phase).astype(int)]
    envelope = stress * np.sin(np.pi * syllable_phase) ** 2
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.03)
    voiced *= envelope * fade

    f1, f2 = speaker.formants_hz

    def formant_gain(freqs: np.ndarray) -> np.ndarray:
        return (
            1.0 + 1.5 * np.exp(-(((freqs - f1) / 150.0) ** 2)) + 1.0 * np.exp(-(((freqs - f2) / 250.0) ** 2))
        )

    voiced = _spectral_filter(voiced, sample_rate, formant_gain)
    signal = voiced * (prosody.rms * speaker.gain / _rms(voiced))

    if condition == "noisy":
        # coloured (random 1/f**alpha) noise with random bursts: masks tilt, tempo and pitch;
        # the mixture is renormalised so loudness carries no emotion either
        alpha = rng.uniform(0.0, 1.5)
        noise = _spectral_filter(
            rng.standard_normal(n_samples), sample_rate, lambda f: np.maximum(f, 50.0) ** (-alpha / 2)
        )
        noise *= 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(1, 8) * t + rng.uniform(0, 2 * np.pi))
        noise *= _rms(signal) / _rms(noise) * 10 ** (-noise_snr_db / 20)
        signal = signal + noise
        signal *= NOISY_RMS * rng.uniform(0.7, 1.4) / _rms(signal)
    elif condition != "clean":
        raise ValueError(f"audio condition must be 'clean' or 'noisy', got {condition!r}")

    # constant-level background noise, before the channel so the channel colours it too
    background_rms = PROSODY["neutral"].rms * 10 ** (-style.background_snr_db / 20)
    signal = signal + background_rms * rng.standard_normal(n_samples)

    if style.lowcut_hz > 0 or np.isfinite(style.highcut_hz):
        low, high = style.lowcut_hz, style.highcut_hz

        def channel_gain(freqs: np.ndarray) -> np.ndarray:
            # Butterworth-like band-pass magnitude: gentle 2nd-order high-pass (a steep one
            # would delete the ~100 Hz fundamental that carries sadness), 4th-order low-pass
            high_pass = 1.0 / np.sqrt(1.0 + (low / np.maximum(freqs, 1e-3)) ** 4)
            low_pass = 1.0 / np.sqrt(1.0 + (freqs / high) ** 8)
            return high_pass * low_pass

        signal = _spectral_filter(signal, sample_rate, channel_gain)

    return np.clip(signal, -1.0, 1.0)


def _write_wav(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono; the int16 rounding is done here so the bytes do not depend on libsndfile."""
    pcm = np.round(signal * 32767).astype(np.int16)
    sf.write(str(path), pcm, sample_rate, subtype="PCM_16")


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------


def _segment_distance(
    xs: np.ndarray, ys: np.ndarray, start: tuple[float, float], end: tuple[float, float]
) -> np.ndarray:
    """Distance of every pixel (H, W) to the segment start-end."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    along = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(xs - (x0 + along * dx), ys - (y0 + along * dy))


def render_face(
    rng: np.random.Generator,
    emotion: str,
    condition: str,
    n_frames: int,
    size: int,
    speaker: Speaker,
    style: DomainStyle,
) -> np.ndarray:
    """A cartoon face clip, uint8 of shape ``(frames, size, size, 3)``.

    Face ellipse, eyes, brows and mouth with thick (>= 3 px at 64 px) high-contrast strokes;
    ``occluded`` hides brows, eyes and mouth under a gray block, ``blank`` is flat gray.
    """
    gray = np.full((n_frames, size, size, 3), 128, dtype=np.uint8)
    if condition == "blank":
        return gray
    if condition not in ("clear", "occluded"):
        raise ValueError(f"video condition must be clear/occluded/blank, got {condition!r}")

    def shade(rgb: tuple[float, float, float]) -> np.ndarray:
        tinted = np.asarray(rgb) + np.asarray(style.tint)
        return np.clip(128 + style.contrast * (tinted - 128), 0, 255)

    face_rgb, background_rgb = shade(speaker.face_rgb), shade(speaker.background_rgb)
    feature_rgb = shade(speaker.feature_rgb)
    mouth_inside_rgb = shade((200.0, 200.0, 200.0))

    # pixel grid in frame units, pixel centres
    coords = (np.arange(size) + 0.5) / size
    xs, ys = np.meshgrid(coords, coords)
    scale = speaker.face_size * style.face_scale
    half_height, half_width = 0.45 * scale, 0.45 * scale * speaker.face_aspect
    stroke = 0.065 * scale  # 4.2 px at 64 px
    jitter = max(1, round(2 * size / 64)) / size
    inner_y, outer_y = BROWS[emotion]
    kind, mouth_half_width, mouth_shape = MOUTHS[emotion]

    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for i in range(n_frames):
        cx = 0.5 + rng.integers(-1, 2) * jitter
        cy = 0.5 + rng.integers(-1, 2) * jitter
        liveliness = rng.uniform(0.9, 1.1)  # small per-frame change of the expression
        u, v = (xs - cx) / scale, (ys - cy) / scale  # face units
        image = np.empty((size, size, 3))
        image[:] = background_rgb
        image[((xs - cx) / half_width) ** 2 + ((ys - cy) / half_height) ** 2 <= 1.0] = face_rgb

        features = np.zeros((size, size), dtype=bool)
        for side in (-1.0, 1.0):
            features |= np.hypot(u - side * 0.15, v + 0.04) <= 0.055  # eyes
            features |= (
                _segment_distance(
                    u, v, (side * 0.06, inner_y * liveliness), (side * 0.26, outer_y * liveliness)
                )
                <= stroke / scale / 2
            )  # brows
        mouth_y = 0.22
        if kind == "rect":
            half_h = mouth_shape * liveliness
            outer = (np.abs(u) <= mouth_half_width) & (np.abs(v - mouth_y) <= half_h)
            teeth = (np.abs(u) <= mouth_half_width - 0.04) & (np.abs(v - mouth_y) <= 0.02)
            features |= outer & ~teeth
            inside = teeth
        else:
            curve = mouth_y + mouth_shape * liveliness * (1 - (u / mouth_half_width) ** 2)
            features |= (np.abs(u) <= mouth_half_width) & (np.abs(v - curve) <= stroke / scale / 2)
            inside = np.zeros_like(features)
        image[features] = feature_rgb
        image[inside] = mouth_inside_rgb
        if condition == "occluded":
            # brows (top -0.33) to mouth (bottom 0.34), across the whole face width
            block = (np.abs(u) <= 0.36) & (v >= -0.36) & (v <= 0.38)
            image[block] = 128
        frames[i] = np.round(image).astype(np.uint8)
    return frames


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    """H.264 (yuv420p, crf 18), byte-reproducible.

    One thread so the bytes do not depend on the core count; macroblock-tree rate control off
    because with it x264 gave 5 different byte streams in 15 encodes of the same 64x64 clip
    (same process, threads=1); with ``mbtree=0`` 60/60 encodes matched, across processes too.
    """
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "threads": "1", "x264-params": "mbtree=0:rc-lookahead=0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, VIDEO_FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


_JOB: dict = {}  # the corpus being written, for :func:`_write_utterance` (inherited by forked workers)
MIN_ROWS_PER_WORKER = 32  # below this a worker's start costs more than it saves


def _workers(n_rows: int) -> int:
    """Processes writing media: one per available core, none extra for a tiny corpus."""
    return max(1, min(cpu_cores(), n_rows // MIN_ROWS_PER_WORKER))


def _write_utterance(index: int) -> None:
    """Synthesize and write row ``index`` of :data:`_JOB`'s plan: its wav and its mp4."""
    cfg, style, root, row = _JOB["cfg"], _JOB["style"], _JOB["root"], _JOB["rows"][index]
    speaker = _JOB["speakers"][row["speaker"]]
    utt_index = int(row["utt_id"].rsplit("_u", 1)[1])
    # independent streams per modality: changing video_size leaves the audio unchanged
    seeds = np.random.SeedSequence([cfg.seed, _JOB["domain_index"], speaker.index, utt_index])
    audio_seed, video_seed = seeds.spawn(2)
    n_samples = round(row["duration"] * cfg.sample_rate)
    signal = synthesize_audio(
        np.random.default_rng(audio_seed), row["emotion"], row["audio_condition"], n_samples, cfg.sample_rate,
        speaker, style, cfg.noise_snr_db,
    )  # fmt: skip
    _write_wav(root / "wav" / f"{row['utt_id']}.wav", signal, cfg.sample_rate)
    frames = render_face(
        np.random.default_rng(video_seed), row["emotion"], row["video_condition"], cfg.video_frames,
        cfg.video_size, speaker, style,
    )  # fmt: skip
    _write_mp4(root / "video" / f"{row['utt_id']}.mp4", frames)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate(cfg: SyntheticParams, domain: str, root: Path) -> Path:
    """Write the raw corpus of one domain ('source' or 'target') under root; return transcripts.csv path.

    Layout: ``root/wav/<utt_id>.wav`` (16-bit PCM mono), ``root/video/<utt_id>.mp4`` (H.264),
    ``root/transcripts.csv`` (written last, columns ``TRANSCRIPT_COLUMNS``).
    """
    root = Path(root)
    plan = plan_corpus(cfg, domain)
    style = domain_style(domain, cfg.target_shift)
    speakers = {s.name: s for s in speakers_of(cfg, domain)}
    domain_index = DOMAINS.index(domain)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "video").mkdir(parents=True, exist_ok=True)
    logger.info("synthetic %s: %d utterances, %d speakers -> %s", domain, len(plan), len(speakers), root)
    rows = plan.to_dict("records")
    _JOB.update(cfg=cfg, style=style, speakers=speakers, domain_index=domain_index, root=root, rows=rows)
    try:
        # every utterance has its own seeds: the bytes do not depend on the worker count
        # (tests/test_synthetic.py)
        with forked_map(_write_utterance, len(rows), _workers(len(rows)), chunksize=8) as written:
            for _ in tqdm(written, total=len(rows), desc=f"synthetic {domain}"):
                pass
    finally:
        _JOB.clear()
    transcripts = root / "transcripts.csv"
    plan.to_csv(transcripts, index=False, lineterminator="\n")
    return transcripts


def load(root: Path, corpus: str) -> pd.DataFrame:
    """The loader: read root/transcripts.csv into the uniform metadata table (``METADATA_COLUMNS``)."""
    root = Path(root)
    path = root / "transcripts.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: synthetic transcripts not found (generate the corpus first, "
            f"mer.corpora.synthetic.generate)"
        )
    text_columns = [
        "utt_id",
        "speaker",
        "session",
        "split",
        "emotion",
        "text",
        "text_condition",
        "audio_condition",
        "video_condition",
    ]
    raw = pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=False)
    missing = [c for c in TRANSCRIPT_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    unknown = sorted(set(raw["emotion"]) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown emotions {unknown}, expected {list(EMOTIONS)}")

    table = pd.DataFrame(
        {
            "utt_id": raw["utt_id"].astype(str),
            "corpus": corpus,
            "speaker": raw["speaker"].astype(str),
            "session": raw["session"].astype(str),
            "split": raw["split"].astype(str),
            "label": raw["emotion"].astype(str),
            "label_id": raw["emotion"].map(EMOTIONS.index).astype("int64"),
            "valence": raw["valence"].astype("float64"),
            "arousal": raw["arousal"].astype("float64"),
            "dominance": raw["dominance"].astype("float64"),
            "sentiment": raw["sentiment"].astype("float64"),
            "text": raw["text"].astype(str),
            "audio_path": [str(root / "wav" / f"{u}.wav") for u in raw["utt_id"]],
            "video_path": [str(root / "video" / f"{u}.mp4") for u in raw["utt_id"]],
            "start": 0.0,
            "end": raw["duration"].astype("float64"),
            "duration": raw["duration"].astype("float64"),
        }
    )
    for modality in MODALITIES:
        conditions = raw[f"{modality}_condition"].astype(str)
        table[f"{modality}_reliable"] = (conditions == RELIABLE_CONDITION[modality]).astype(bool)
    for modality in MODALITIES:
        table[f"{modality}_condition"] = raw[f"{modality}_condition"].astype(str)
    return table[list(METADATA_COLUMNS)]
