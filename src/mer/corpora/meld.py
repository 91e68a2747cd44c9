"""MELD (``MELD.Raw/``): the three label CSVs and their mp4 clips, on the official splits.

Layout: ``{train,dev,test}_sent_emo.csv`` (columns ``CSV_COLUMNS``) and one clip per row in
``train_splits/``, ``dev_splits_complete/`` and ``output_repeated_splits_test/``, named
``dia{Dialogue_ID}_utt{Utterance_ID}.mp4``; the audio is the clip's own audio stream, so
``audio_path`` = ``video_path`` = the mp4.

Rows: ``utt_id`` = ``{split}_dia{D}_utt{U}`` (dialogue ids restart in every split);
``speaker`` = the Speaker column (the same Friends characters appear in every split: that is the
official protocol, not leakage to repair); ``session`` = ``{split}_dia{D}`` (the dialogue);
``sentiment`` = -1.0 / 0.0 / +1.0 for negative / neutral / positive; ``start`` / ``end`` from
StartTime / EndTime (``00:16:16,059``) in seconds of the episode, ``duration`` = end - start.
``raw_label`` is the column the label map reads (Emotion, or Sentiment for ``sentiment3``).
Extra columns: ``dialogue_id``, ``utterance_id``, ``season``, ``episode`` (int64) and
``sentiment_label`` (the Sentiment string).

Defects of the public release, handled: missing clips (``missing_file``, e.g. train
``dia110_utt7``), corrupt clips (``corrupt_media``, e.g. ``dia125_utt3``), clips without an audio
stream (``no_audio_stream``), clips cut minutes long (``clip_too_long``), cp1252 mojibake in the
transcripts (``â€™`` for ``’``) and stray cp1252 bytes kept as C1 control characters
(``\\x92`` for ``’``, declare-lab/MELD#28), both repaired in place (``repairs["mojibake"]``
counts the rows kept), CSVs that are not UTF-8 (read as cp1252). The CSV column ``Sr No.`` is a
running number and takes no part in the duplicate check: two rows that agree on everything else
are the same utterance.

>>> parse_time("00:16:16,059")
976.059
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mer.corpora import common
from mer.corpora.labels import LabelMap, label_map
from mer.schema import COLUMNS

logger = logging.getLogger(__name__)

CORPUS = "meld"
#: Labels beside the emotion (mer.vocab.LABEL_KINDS): the Sentiment column, -1 / 0 / +1 in
#: ``sentiment`` (a polarity, not a continuous score); no VAD
LABEL_KINDS = ("sentiment_polarity",)
CSV_COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)  # fmt: skip
#: split -> (label CSV, clip folder, archive the clips come in)
SPLIT_FILES = {
    "train": ("train_sent_emo.csv", "train_splits", "train.tar.gz"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete", "dev.tar.gz"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test", "test.tar.gz"),
}
SENTIMENT = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
EXTRA_COLUMNS = ("raw_label", "dialogue_id", "utterance_id", "season", "episode", "sentiment_label")
_C1 = re.compile("[\x80-\x9f]")
_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")


def repair_text(text: str) -> tuple[str, bool]:
    """:func:`common.repair_mojibake`, then C1 controls read as the cp1252 characters they were.

    >>> repair_text("Iâ€™m"), repair_text("I\\x92m gonna miss you")
    (('I’m', True), ('I’m gonna miss you', True))
    """
    fixed, _ = common.repair_mojibake(text)
    if _C1.search(fixed):
        fixed = _C1.sub(_from_cp1252, fixed)
    return fixed, fixed != text


def _from_cp1252(match: re.Match) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: no cp1252 character, keep
        return match.group()


def parse_time(value: str) -> float:
    """``HH:MM:SS,mmm`` (the SRT-style stamp MELD uses) -> seconds; ValueError if unparsable."""
    match = _TIME.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a time like 00:16:16,059")
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"{value!r} has minutes or seconds above 59")
    fraction = int(millis.ljust(3, "0")) / 1000 if millis else 0.0
    return round(int(hours) * 3600 + int(minutes) * 60 + int(seconds) + fraction, 3)


def _header(path: Path) -> list[str]:
    """The column names on a CSV's first line (without reading the rest)."""
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        line = first.decode("cp1252", errors="replace")
    return [name.strip() for name in next(csv.reader([line]), [])]


def check_layout(root: Path) -> None:
    """Check ``root`` is a ``MELD.Raw`` folder: the three CSVs with MELD's columns and the clip folders.

    Raises:
        common.LayoutError: naming the missing path (or the CSV with the wrong columns) and what
            was expected there.
    """
    root = Path(root)
    if not root.is_dir():
        raise common.LayoutError(f"{root}: not found or not a folder; expected the MELD.Raw folder")
    if (root / "MELD.Raw").is_dir() and not (root / SPLIT_FILES["train"][0]).exists():
        raise common.LayoutError(
            f"{root}: holds MELD.Raw/ but is not it; set corpora.meld.root to {root / 'MELD.Raw'}"
        )
    for split, (csv_name, clip_dir, archive) in SPLIT_FILES.items():
        csv_path = common.require(root / csv_name, f"the MELD {split} label CSV")
        missing = [c for c in CSV_COLUMNS if c not in _header(csv_path)]
        if missing:
            raise common.LayoutError(
                f"{csv_path}: columns {missing} not found; expected the MELD {split} label CSV "
                f"with columns {list(CSV_COLUMNS)}"
            )
        common.require(root / clip_dir, f"the MELD {split} clips dia{{D}}_utt{{U}}.mp4 (extract {archive})")


def _read_csv(path: Path, split: str) -> pd.DataFrame:
    """One split's CSV as strings (UTF-8, cp1252 fallback), with ``split`` and ``Sr No.`` kept."""
    rows = pd.read_csv(io.StringIO(common.read_text(path)), dtype=str, keep_default_na=False)
    rows.columns = [str(c).strip() for c in rows.columns]
    rows = rows[list(CSV_COLUMNS)].copy()
    rows.insert(0, "split", split)
    return rows


def _as_int(value: str) -> int:
    number = float(value.strip())  # "3.0" happens when a CSV went through a spreadsheet
    if not number.is_integer() or number < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return int(number)


def load(root: Path, labels: str = "7class", *, max_overrun_seconds: float = 10.0) -> common.LoadResult:
    """Read ``MELD.Raw`` into the uniform metadata table on the official train / dev / test splits.

    Args:
        root: the ``MELD.Raw`` folder.
        labels: label map (:mod:`mer.corpora.labels`): ``7class`` (Emotion), ``sentiment3``
            (Sentiment) or ``shared4`` (Emotion: anger, joy, neutral, sadness).
        max_overrun_seconds: a clip longer than StartTime..EndTime by more than this is mis-cut
            and quarantined as ``clip_too_long``.

    Raises:
        common.LayoutError: from :func:`check_layout`.
        ValueError: an unknown ``labels`` name or a negative ``max_overrun_seconds``.
    """
    mapping = label_map(CORPUS, labels)
    if not (isinstance(max_overrun_seconds, int | float) and max_overrun_seconds >= 0):
        raise ValueError(f"corpora.meld.max_overrun_seconds: {max_overrun_seconds!r} must be a number >= 0")
    root = Path(root).absolute()
    check_layout(root)
    label_column = "Sentiment" if labels == "sentiment3" else "Emotion"
    quarantine = common.Quarantine(CORPUS)
    repairs: Counter = Counter()

    frames = [_read_csv(root / csv_name, split) for split, (csv_name, _, _) in SPLIT_FILES.items()]
    raw = pd.concat(frames, ignore_index=True)
    # utt_id first: the duplicate check needs it, and a row without one can only be quarantined
    numbers = []
    for split, serial, dialogue, utterance in zip(
        raw["split"], raw["Sr No."], raw["Dialogue_ID"], raw["Utterance_ID"], strict=True
    ):
        try:
            numbers.append((_as_int(dialogue), _as_int(utterance)))
        except ValueError as exc:
            quarantine.add(f"{split}_row{serial.strip()}", "bad_row", f"Dialogue_ID / Utterance_ID: {exc}")
            numbers.append(None)
    parsed = pd.Series([n is not None for n in numbers], index=raw.index, dtype=bool)
    raw = raw.loc[parsed].drop(columns="Sr No.")
    raw["dialogue_id"] = [n[0] for n in numbers if n is not None]
    raw["utterance_id"] = [n[1] for n in numbers if n is not None]
    triples = zip(raw["split"], raw["dialogue_id"], raw["utterance_id"], strict=True)
    raw.insert(0, "utt_id", [f"{split}_dia{d}_utt{u}" for split, d, u in triples])
    raw = common.drop_duplicates(raw, "utt_id", quarantine, repairs)

    records = []
    for row in tqdm(raw.itertuples(index=False), total=len(raw), desc="meld", unit="utt", mininterval=2.0):
        record = _parse_row(row, root, mapping, label_column, quarantine, repairs, max_overrun_seconds)
        if record is not None:
            records.append(record)

    table = pd.DataFrame.from_records(records, columns=[*COLUMNS, *EXTRA_COLUMNS])
    table = table.astype(
        {"label_id": "int64", "dialogue_id": "int64", "utterance_id": "int64", "season": "int64",
         "episode": "int64", **{c: "float64" for c in ("valence", "arousal", "dominance", "sentiment",
                                                        "start", "end", "duration")}}
    )  # fmt: skip
    table = table.sort_values("utt_id", kind="stable").reset_index(drop=True)
    result = common.LoadResult(table=table, quarantine=quarantine.frame(), repairs=dict(repairs))
    logger.info(
        "meld (%s): %d utterances (%s), quarantined %s, repaired %s", labels, len(table),
        dict(Counter(table["split"])), dict(Counter(result.quarantine["reason"])), dict(repairs),
    )  # fmt: skip
    return result


def _parse_row(
    row: tuple, root: Path, mapping: LabelMap, label_column: str, quarantine: common.Quarantine,
    repairs: Counter, max_overrun_seconds: float,
) -> dict | None:  # fmt: skip
    """One CSV row -> a table record, or None after adding its quarantine entry."""
    utt_id = row.utt_id
    text, text_fixed = repair_text(row.Utterance)
    speaker, speaker_fixed = repair_text(row.Speaker)
    try:
        start, end = parse_time(row.StartTime), parse_time(row.EndTime)
        if end < start:
            raise ValueError(f"EndTime {row.EndTime!r} is before StartTime {row.StartTime!r}")
        season, episode = _as_int(row.Season), _as_int(row.Episode)
    except ValueError as exc:
        quarantine.add(utt_id, "bad_row", str(exc))
        return None
    sentiment_label = row.Sentiment.strip()
    if sentiment_label.lower() not in SENTIMENT:
        quarantine.add(utt_id, "bad_row", f"Sentiment {sentiment_label!r} is not one of {sorted(SENTIMENT)}")
        return None
    raw_label = getattr(row, label_column).strip()
    label = mapping.map(raw_label.lower())
    if label is None:
        quarantine.add(utt_id, "label_outside_map", raw_label)
        return None
    text = text.strip()
    if not text:
        quarantine.add(utt_id, "empty_transcript", "Utterance is empty")
        return None
    dialogue, utterance = row.dialogue_id, row.utterance_id
    clip = root / SPLIT_FILES[row.split][1] / f"dia{dialogue}_utt{utterance}.mp4"
    if not common.check_media(
        clip, utt_id, quarantine, need_audio=True, need_video=True, expected_seconds=end - start,
        max_overrun_seconds=max_overrun_seconds,
    ):  # fmt: skip
        return None
    if text_fixed or speaker_fixed:  # counted on kept rows only, so counts match the table
        repairs["mojibake"] += 1
    return {
        "utt_id": utt_id, "corpus": CORPUS, "speaker": speaker.strip(),
        "session": f"{row.split}_dia{dialogue}", "split": row.split, "label": label,
        "label_id": mapping.label_id(label),
        "valence": math.nan, "arousal": math.nan, "dominance": math.nan,
        "sentiment": SENTIMENT[sentiment_label.lower()], "text": text,
        "audio_path": str(clip), "video_path": str(clip), "start": start, "end": end,
        "duration": round(end - start, 3), "raw_label": raw_label, "dialogue_id": dialogue,
        "utterance_id": utterance, "season": season, "episode": episode, "sentiment_label": sentiment_label,
    }  # fmt: skip
