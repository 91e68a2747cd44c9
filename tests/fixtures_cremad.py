"""A small CREMA-D tree in the real layout (``AudioWAV/``, ``VideoFlash/``, ``VideoDemographics.csv``).

Nine actors (1001-1009), each speaking every emotion in 3 clips (IEO at a graded level, two other
sentences at XX), so any actor-disjoint train / dev / test split has all 6 classes everywhere
and at least 3 clips per class per split. Actor 1001's IEO clips also have an flv.

``defects=True`` adds extra clips (none needed for class coverage) carrying the defects in
``PLANTED``, counted the same under ``6class`` and ``shared4``: a corrupt and a 0-byte wav
(``corrupt_media``), three names that do not parse (``bad_row``), an ``XXX`` emotion
(``label_outside_map``) and an actor missing from the demographics
(``repairs["missing_demographics"]``, one per clip).
"""

from __future__ import annotations

from pathlib import Path

from tests.corpus_media import write_corrupt, write_video, write_wav

ACTORS = tuple(str(a) for a in range(1001, 1010))
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
CLIPS_PER_CLASS = 3  # per actor
VIDEO_ACTOR = "1001"
DEMOGRAPHICS = {  # ActorID -> (Age, Sex, Race, Ethnicity), the real file's vocabulary
    "1001": (51, "Male", "Caucasian", "Not Hispanic"),
    "1002": (21, "Female", "Caucasian", "Not Hispanic"),
    "1003": (21, "Female", "Caucasian", "Not Hispanic"),
    "1004": (42, "Female", "Caucasian", "Not Hispanic"),
    "1005": (29, "Male", "African American", "Not Hispanic"),
    "1006": (58, "Female", "Caucasian", "Not Hispanic"),
    "1007": (38, "Female", "African American", "Not Hispanic"),
    "1008": (46, "Female", "Caucasian", "Not Hispanic"),
    "1009": (24, "Female", "Caucasian", "Hispanic"),
}
CORRUPT_WAV, EMPTY_WAV = "1002_TSI_ANG_XX", "1005_WSI_SAD_XX"
BAD_NAMES = ("1003_DFA_ANG", "1004_ABC_HAP_XX", "1004_IEO_HAP_ZZ")
OUTSIDE_MAP = "1006_TIE_XXX_XX"
UNLISTED_ACTOR = "1010"
UNLISTED_CLIPS = ("1010_DFA_ANG_XX", "1010_IEO_NEU_XX")
PLANTED = {"corrupt_media": 2, "bad_row": 3, "label_outside_map": 1, "missing_demographics": 2}


def clean_clips() -> list[str]:
    """Stems of the class-coverage clips (every actor x emotion x 3 sentences)."""
    stems = []
    others = SENTENCES[1:]
    for a, actor in enumerate(ACTORS):
        for e, emotion in enumerate(EMOTIONS):
            level = "XX" if emotion == "NEU" else ("LO", "MD", "HI")[(a + e) % 3]
            k = 2 * (a * len(EMOTIONS) + e)
            stems.append(f"{actor}_IEO_{emotion}_{level}")
            stems += [
                f"{actor}_{others[k % 11]}_{emotion}_XX",
                f"{actor}_{others[(k + 1) % 11]}_{emotion}_XX",
            ]
    return stems


def _write_clip(audio_dir: Path, stem: str, index: int) -> None:
    emotion = stem.split("_")[2] if stem.count("_") >= 2 else "NEU"
    freq = 150.0 + 60.0 * (EMOTIONS.index(emotion) if emotion in EMOTIONS else 0)
    write_wav(audio_dir / f"{stem}.wav", seconds=0.4 + 0.1 * (index % 5), freq=freq, seed=index)


def build(root: Path, defects: bool = True) -> Path:
    """Write the tree under ``root / "CREMA-D"`` and return that folder."""
    corpus = Path(root) / "CREMA-D"
    audio_dir, video_dir = corpus / "AudioWAV", corpus / "VideoFlash"
    audio_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)
    clean = clean_clips()
    for index, stem in enumerate(clean):
        _write_clip(audio_dir, stem, index)
        if stem.startswith(f"{VIDEO_ACTOR}_IEO_"):
            write_video(video_dir / f"{stem}.flv", seconds=0.4 + 0.1 * (index % 5), seed=index)
    lines = ["ActorID,Age,Sex,Race,Ethnicity"]
    lines += [
        f"{actor},{age},{sex},{race},{ethnicity}"
        for actor, (age, sex, race, ethnicity) in DEMOGRAPHICS.items()
    ]
    (corpus / "VideoDemographics.csv").write_text("\r\n".join(lines) + "\r\n")
    if defects:
        planted = [CORRUPT_WAV, EMPTY_WAV, *BAD_NAMES, OUTSIDE_MAP, *UNLISTED_CLIPS]
        assert not set(planted) & set(clean), "a defect must not replace a class-coverage clip"
        for index, stem in enumerate([*BAD_NAMES, OUTSIDE_MAP, *UNLISTED_CLIPS], start=len(clean)):
            _write_clip(audio_dir, stem, index)
        write_corrupt(audio_dir / f"{CORRUPT_WAV}.wav")
        (audio_dir / f"{EMPTY_WAV}.wav").write_bytes(b"")
    return corpus
