"""A tiny CMU-MOSI tree in the MMSA raw layout: ``MOSI/label.csv`` and ``MOSI/Raw/{video}/{clip}.mp4``.

Six videos per split (one speaker each), two clean clips per video: per split at least three
negative, three exactly-0.0 and three positive scores, so every class of ``2class`` and
``3class`` is in every split. With ``defects=True`` extra clips (clip 3 of some videos) carry the
planted defects, listed in ``DEFECTS`` (utt_id -> quarantine reason or repair) and counted in
``PLANTED``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tests.corpus_media import FPS, write_corrupt, write_video

HEADER = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
# YouTube-style ids; real MOSI / MOSEI ids may start with "-" and contain "_"
VIDEOS = {
    "train": ("-3g5yACwYnA", "03bSnISJMiM", "0h-zjBukYpk", "1DmNV9C1hbY", "2iD-tVS8NPw", "5W7Z1C_fDaE"),
    "dev": ("6Egk_28TtTM", "73jzhE8R1TQ", "7JsX8y1ysxY", "8d-gEyoeBzc", "9J25DZhivz8", "Af8D0E4ZXaw"),
    "test": ("BioHAh1qJAQ", "BvYR0L6f2Ig", "c5xsKMxpXnc", "c7UH_rxdZv4", "cM3Yna7AavY", "cW1FSBF59ik"),
}
MODES = {"train": "train", "dev": "valid", "test": "test"}
# two clips per video: video i gets SCORES[split][i] (clip 1) and SCORES[split][i + 6] (clip 2)
SCORES = {
    "train": ("-3.0", "-2.6", "-2.5", "-0.5", "0.0", "0.0", "0.0", "0.0", "0.5", "1.5", "2.5", "3.0"),
    "dev": ("-2.8", "-1.6", "-0.8", "-0.2", "0.0", "0.0", "0.0", "0.2", "0.8", "1.2", "2.2", "2.6"),
    "test": ("-2.4", "-1.2", "-1.0", "-0.6", "0.0", "0.0", "0.0", "0.6", "1.0", "1.4", "1.8", "2.4"),
}
TEXTS = {
    "Negative": ("it was a waste of two hours", "the acting was really bad", "i did not like it at all"),
    "Neutral": ("it is a movie about a family", "the film runs about two hours", "i saw it last week"),
    "Positive": ("i loved every minute of it", "the cast was great", "such a fun film, honestly"),
}
# a clean row whose text needs CSV quoting, and one with the unimodal scores left empty (MOSEI copies)
QUOTED_TEXT = ('he said "wow, just wow", then he left', "test", 1, 1)  # (text, split, video index, clip)
EMPTY_UNIMODAL = ("dev", 3, 2)  # (split, video index, clip)

MOJIBAKE_TEXT = "i donâ€™t think itâ€™s bad"
MOJIBAKE_FIXED = "i don’t think it’s bad"
# utt_id -> what happens to it; every one is clip 3, outside the class coverage above
DEFECTS = {
    f"{VIDEOS['train'][0]}_3": "missing_file",
    f"{VIDEOS['train'][1]}_3": "corrupt_media",
    f"{VIDEOS['dev'][0]}_3": "no_audio_stream",
    f"{VIDEOS['train'][2]}_3": "mojibake",
    f"{VIDEOS['test'][0]}_3": "duplicate_row",
    f"{VIDEOS['test'][1]}_3": "conflicting_duplicate",
    f"{VIDEOS['dev'][1]}_3": "empty_transcript",
    f"{VIDEOS['train'][3]}_3": "bad_row",  # label is not a number
    f"{VIDEOS['dev'][2]}_3": "bad_row",  # label outside [-3, 3]
    f"{VIDEOS['test'][2]}_3": "bad_row",  # unknown mode
}
PLANTED = {
    "missing_file": 1, "corrupt_media": 1, "no_audio_stream": 1, "conflicting_duplicate": 1,
    "empty_transcript": 1, "bad_row": 3, "mojibake": 1, "duplicate_row": 1,
}  # fmt: skip
REPAIRS = ("mojibake", "duplicate_row")


def annotation(score: float) -> str:
    return "Negative" if score < 0 else ("Neutral" if score == 0 else "Positive")


def _row(video: str, clip: int, text: str, label: str, mode: str, unimodal: bool = True) -> list[str]:
    try:
        score = float(label)
    except ValueError:  # the planted non-numeric label
        score = 0.0
    # unimodal scores near the overall one, as annotators of a single modality disagree a little
    offsets = (0.2, -0.4, 0.0) if unimodal else ()
    t, a, v = [f"{max(-3.0, min(3.0, score + d)):.1f}" for d in offsets] or ["", "", ""]
    return [video, str(clip), text, label, t, a, v, annotation(score), mode]


def _clip(root: Path, video: str, clip: int, index: int, audio: bool = True, faces: bool = False) -> None:
    seconds = 0.4 + 0.1 * (index % 5)
    frames = None
    if faces:  # a photographed face MediaPipe's detector finds (facemesh-65)
        from tests.face_media import face_frames

        frames = face_frames(round(seconds * FPS), seed=index)
    write_video(root / "Raw" / video / f"{clip}.mp4", seconds=seconds, audio=audio, seed=index, frames=frames)


def build(
    root: Path, defects: bool = True, faces: bool = False, media: bool = True, name: str = "MOSI"
) -> Path:
    """Write the tree under ``root``; returns the corpus root ``root/<name>``. ``faces``: the clips
    show a photographed face (tests/face_media.py) instead of flat grey frames; ``media`` False:
    ``label.csv`` alone, no ``Raw/`` (a features-only copy; the media defects are plain rows)."""
    corpus = Path(root) / name
    clip_file = _clip if media else (lambda *args, **kwargs: None)
    rows: list[list[str]] = []
    index = 0
    for split, videos in VIDEOS.items():
        for v, video in enumerate(videos):
            for clip in (1, 2):
                label = SCORES[split][v + 6 * (clip - 1)]
                text = TEXTS[annotation(float(label))][(v + clip) % 3]
                if (split, v, clip) == QUOTED_TEXT[1:]:
                    text = QUOTED_TEXT[0]
                rows.append(_row(video, clip, text, label, MODES[split], (split, v, clip) != EMPTY_UNIMODAL))
                clip_file(corpus, video, clip, index, faces=faces)
                index += 1
    if defects:
        train, dev, test = VIDEOS["train"], VIDEOS["dev"], VIDEOS["test"]
        rows.append(_row(train[0], 3, "no file was ever cut for this one", "1.0", "train"))
        rows.append(_row(train[1], 3, "the file on disk is garbage", "-1.0", "train"))
        if media:
            write_corrupt(corpus / "Raw" / train[1] / "3.mp4")
        rows.append(_row(dev[0], 3, "this clip lost its audio track", "0.8", "valid"))
        clip_file(corpus, dev[0], 3, index, audio=False, faces=faces)
        rows.append(_row(train[2], 3, MOJIBAKE_TEXT, "0.4", "train"))
        rows.append(_row(test[0], 3, "written out twice, identical", "-0.8", "test"))
        rows.append(rows[-1].copy())
        rows.append(_row(test[1], 3, "two annotations that disagree", "1.2", "test"))
        rows.append(_row(test[1], 3, "two annotations that disagree", "-1.2", "test"))
        rows.append(_row(dev[1], 3, "", "0.0", "valid"))
        rows.append(_row(train[3], 3, "the score got mangled", "abc", "train"))
        rows.append(_row(dev[2], 3, "a score out of range", "3.6", "valid"))
        rows.append(_row(test[2], 3, "a split nobody knows", "0.6", "validation"))
        for video in (train[2], test[0], test[1], dev[1], train[3], dev[2], test[2]):
            index += 1
            clip_file(corpus, video, 3, index, faces=faces)
    corpus.mkdir(parents=True, exist_ok=True)
    with (corpus / "label.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return corpus
