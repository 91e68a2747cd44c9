"""A small RAVDESS tree in the real layout (``Audio_Speech_Actors_01-24/Actor_XX/*.wav``).

Eight actors (01-08), each with 3 clips of every emotion (statement 01 repetitions 01 and 02,
statement 02 repetition 01; neutral at normal intensity only, as in the release, the others
strong on statement 02), so any actor-disjoint train / dev / test split has all 8 classes
everywhere and at least 3 clips per class per split. A few takes also have the mp4 of the video
release beside them (``VIDEOS``).

``defects=True`` adds extra clips (none needed for class coverage) carrying the defects in
``PLANTED``, counted the same under ``8class`` and ``shared4`` (where calm, fearful, disgust
and surprised are outside the map as well): a corrupt and a 0-byte wav (``corrupt_media``),
three names that do not parse or sit in the wrong actor's folder (``bad_row``) and an unknown
emotion ``09`` (``label_outside_map``).
"""

from __future__ import annotations

from pathlib import Path

from tests.corpus_media import write_corrupt, write_video, write_wav

ACTORS = tuple(f"{a:02d}" for a in range(1, 9))
EMOTIONS = tuple(f"{e:02d}" for e in range(1, 9))
CLIPS_PER_CLASS = 3  # per actor
# wav stem -> modalities of the mp4s written beside it (01 full AV, 02 video-only)
VIDEOS = {
    "03-01-01-01-01-01-01": ("01", "02"),
    "03-01-05-02-02-01-01": ("01",),
    "03-01-03-01-01-01-02": ("02",),
}
CORRUPT_WAV = "Actor_03/03-01-05-01-02-02-03"
EMPTY_WAV = "Actor_04/03-01-04-01-02-02-04"
BAD_NAMES = (
    "Actor_05/03-01-05-01-02-05",  # 6 fields
    "Actor_06/03-01-03-01-02-02-05",  # actor 05's take in Actor_06/
    "Actor_06/03-01-03-03-01-02-06",  # intensity 03 does not exist
)
OUTSIDE_MAP = "Actor_07/03-01-09-01-01-02-07"
PLANTED = {"corrupt_media": 2, "bad_row": 3, "label_outside_map": 1}


def clean_clips() -> list[str]:
    """``Actor_XX/<stem>`` of the class-coverage clips (every actor x emotion x 3 takes)."""
    clips = []
    for actor in ACTORS:
        for emotion in EMOTIONS:
            strong = "01" if emotion == "01" else "02"
            for intensity, statement, repetition in (
                ("01", "01", "01"),
                ("01", "01", "02"),
                (strong, "02", "01"),
            ):
                clips.append(f"Actor_{actor}/03-01-{emotion}-{intensity}-{statement}-{repetition}-{actor}")
    return clips


def _write_clip(corpus: Path, clip: str, index: int) -> None:
    emotion = clip.split("/")[1].split("-")[2]
    freq = 150.0 + 40.0 * (int(emotion) % 9)
    write_wav(corpus / f"{clip}.wav", seconds=0.4 + 0.1 * (index % 5), freq=freq, seed=index)


def build(root: Path, defects: bool = True) -> Path:
    """Write the tree under ``root / "Audio_Speech_Actors_01-24"`` and return that folder."""
    corpus = Path(root) / "Audio_Speech_Actors_01-24"
    clean = clean_clips()
    for index, clip in enumerate(clean):
        _write_clip(corpus, clip, index)
    for stem, modalities in VIDEOS.items():
        folder = corpus / f"Actor_{stem[-2:]}"
        assert (folder / f"{stem}.wav").is_file(), stem
        for modality in modalities:
            write_video(folder / f"{modality}-{stem[3:]}.mp4", audio=modality == "01", seed=int(modality))
    if defects:
        assert not {CORRUPT_WAV, EMPTY_WAV, *BAD_NAMES, OUTSIDE_MAP} & set(clean), (
            "defects must be extra clips"
        )
        for index, clip in enumerate([*BAD_NAMES, OUTSIDE_MAP], start=len(clean)):
            _write_clip(corpus, clip, index)
        write_corrupt(corpus / f"{CORRUPT_WAV}.wav")
        (corpus / f"{EMPTY_WAV}.wav").write_bytes(b"")
    return corpus
