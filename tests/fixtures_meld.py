"""A small MELD.Raw tree in the real layout, with the public release's defects planted.

Per split, dialogues 0..6 with 3 utterances each carry every one of the 7 emotions 3 times
(clean, 0.4 s clips); dialogue ids repeat across splits as in the real CSVs. With
``defects=True`` extra rows (never the coverage ones) carry the defects counted in ``PLANTED``
(``label_outside_map`` counts the default ``7class`` map), and ``test_sent_emo.csv`` is written
in cp1252 instead of UTF-8.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.corpus_media import write_corrupt, write_video

EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
SENTIMENT_OF = {"neutral": "neutral", "joy": "positive", "surprise": "positive", "anger": "negative",
                "sadness": "negative", "disgust": "negative", "fear": "negative"}  # fmt: skip
SPEAKERS = ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")
LINES = (
    "Oh my God, you guys!",
    'He said "no", and then he left.',
    "Could this BE any more awkward?",
    "How you doin'?",
    "We were on a break!",
    "I know, I know.",
    "Okay, so, what do we do now?",
)
CSV_NAMES = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
CLIP_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
HEADER = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime")  # fmt: skip
CLIP_SECONDS = 0.4
N_DIALOGUES, N_UTTERANCES = 7, 3  # 21 coverage rows per split, each emotion 3 times

#: counts of each planted defect (quarantine reason or repair) for the default 7class map
PLANTED = {
    "missing_file": 1, "corrupt_media": 1, "no_audio_stream": 1, "clip_too_long": 1,
    "conflicting_duplicate": 1, "label_outside_map": 1, "empty_transcript": 1, "bad_row": 1,
    "mojibake": 2, "duplicate_row": 1,
}  # fmt: skip
#: planted utterances by the defect they carry
DEFECT_IDS = {
    "missing_file": "train_dia110_utt7", "corrupt_media": "train_dia125_utt3",
    "no_audio_stream": "dev_dia50_utt1", "clip_too_long": "test_dia60_utt2",
    "conflicting_duplicate": "train_dia130_utt0", "label_outside_map": "dev_dia51_utt0",
    "empty_transcript": "test_dia61_utt0", "bad_row": "train_dia140_utt0",
    "duplicate_row": "train_dia0_utt0",
}  # fmt: skip
#: rows whose transcript is mojibake, and the correct text the loader must restore
MOJIBAKE = {
    "train_dia120_utt0": "I’m fine, totally fine.",
    "train_dia120_utt1": "Pivot… don’t you get it, José?",
}
#: a row with non-ASCII text, in the cp1252-encoded test CSV under defects=True
CP1252_ID, CP1252_TEXT = "test_dia62_utt0", "Two coffees at the café… please."


def stamp(seconds: float) -> str:
    """Seconds -> MELD's ``HH:MM:SS,mmm``."""
    millis = round(seconds * 1000)
    hours, minutes, seconds = millis // 3_600_000, millis // 60_000 % 60, millis // 1000 % 60
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis % 1000:03d}"


def _row(dialogue: int, utterance: int, emotion: str, text: str, speaker: str | None = None,
         seconds: float = CLIP_SECONDS) -> dict:  # fmt: skip
    start = 600.0 + 37.5 * dialogue + 2.25 * utterance  # 00:10:00 on, distinct per utterance
    return {
        "Utterance": text, "Speaker": speaker or SPEAKERS[(dialogue + utterance) % len(SPEAKERS)],
        "Emotion": emotion, "Sentiment": SENTIMENT_OF.get(emotion, "neutral"),
        "Dialogue_ID": str(dialogue), "Utterance_ID": str(utterance), "Season": str(1 + dialogue % 9),
        "Episode": str(1 + (dialogue * 7) % 24), "StartTime": stamp(start), "EndTime": stamp(start + seconds),
    }  # fmt: skip


def _write_csv(path: Path, rows: list[dict], encoding: str) -> None:
    """Quoted where needed (commas in utterances and times), CRLF lines, as the release has them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(HEADER)
    for serial, row in enumerate(rows, start=1):
        writer.writerow([str(serial), *(row[c] for c in HEADER[1:])])
    path.write_bytes(buffer.getvalue().encode(encoding))


def build(root: Path, defects: bool = True) -> Path:
    """Write ``root/MELD.Raw`` (3 CSVs, 3 clip folders of real mp4s); return that folder."""
    meld = Path(root) / "MELD.Raw"
    seed = 0

    def clip(split: str, dialogue: int, utterance: int, **kwargs) -> None:
        nonlocal seed
        seed += 1
        path = meld / CLIP_DIRS[split] / f"dia{dialogue}_utt{utterance}.mp4"
        seconds = kwargs.pop("seconds", CLIP_SECONDS)
        write_video(path, seconds=seconds, freq=180.0 + 7 * seed, seed=seed, **kwargs)

    rows: dict[str, list[dict]] = {split: [] for split in CSV_NAMES}
    for split in CSV_NAMES:
        (meld / CLIP_DIRS[split]).mkdir(parents=True, exist_ok=True)
        for dialogue in range(N_DIALOGUES):
            for utterance in range(N_UTTERANCES):
                index = dialogue * N_UTTERANCES + utterance
                rows[split].append(_row(dialogue, utterance, EMOTIONS[index % 7], LINES[index % len(LINES)]))
                clip(split, dialogue, utterance)
        rows[split].append(_row(62, 0, "neutral", CP1252_TEXT))  # cp1252 bytes in test_sent_emo.csv
        clip(split, 62, 0)

    if defects:
        train, dev, test = rows["train"], rows["dev"], rows["test"]
        train.append(_row(110, 7, "neutral", "Where's the clip?"))  # no mp4 written
        train.append(_row(125, 3, "joy", "This one is broken."))
        write_corrupt(meld / CLIP_DIRS["train"] / "dia125_utt3.mp4")
        dev.append(_row(50, 1, "anger", "Silent movie."))
        clip("dev", 50, 1, audio=False)
        test.append(_row(60, 2, "sadness", "Way too long.", seconds=0.5))  # the times say 0.5 s ...
        clip("test", 60, 2, seconds=40.0)  # ... the clip runs 40 s
        for utterance, (utt_id, text) in enumerate(MOJIBAKE.items()):
            assert utt_id.endswith(f"utt{utterance}")
            train.append(_row(120, utterance, "joy", text.encode("utf-8").decode("cp1252")))
            clip("train", 120, utterance)
        train.append(dict(train[0]))  # an exact copy of train dia0_utt0
        train.append(_row(130, 0, "joy", "Same line, two labels."))
        train.append(_row(130, 0, "anger", "Same line, two labels."))
        clip("train", 130, 0)
        dev.append(_row(51, 0, "excitement", "Not a MELD emotion."))
        clip("dev", 51, 0)
        test.append(_row(61, 0, "neutral", ""))
        clip("test", 61, 0)
        bad = _row(140, 0, "fear", "Bad timestamp.")
        bad["StartTime"] = "00:1x:05,000"
        train.append(bad)
        clip("train", 140, 0)

    for split, name in CSV_NAMES.items():
        _write_csv(meld / name, rows[split], "cp1252" if defects and split == "test" else "utf-8")
    return meld
