"""CMU-MOSI / CMU-MOSEI in the MMSA raw layout: ``label.csv`` plus ``Raw/{video_id}/{clip_id}.mp4``.

Both corpora ship the same layout (the one most users have, from the MMSA toolkit)::

    <root>/label.csv        video_id, clip_id, text, label, label_T, label_A, label_V, annotation, mode
    <root>/Raw/{video_id}/{clip_id}.mp4

``label`` is the sentiment score in [-3, 3] (the ``sentiment`` column); the label map bins it
(``2class``: negative vs non-negative, the Acc-2 "has0" convention; ``3class``; ``7class``:
rounded half to even and clipped, as MMSA's Acc-7). ``mode`` train / valid / test is the official
split (train / dev / test). One speaker per video in these corpora, so ``speaker`` and ``session``
are the ``video_id``. The audio is inside the mp4: ``audio_path`` and ``video_path`` are the same
file. ``start`` / ``end`` are NaN (whole clips); ``duration`` is read from the mp4 header.

Extra columns: ``raw_label`` (``label`` as written), ``video_id``, ``clip_id``, ``annotation``
(str), ``label_T``, ``label_A``, ``label_V`` (float64, the unimodal scores; NaN where the copy
leaves them empty, as some MOSEI copies do).

Features-only copies: with ``media=False`` (every audio / video modality the run reads comes from
released features, ``extract.<modality>.model: external:<path>``; see :mod:`mer.external`) the
table is built from ``label.csv`` alone: ``Raw/`` is neither needed nor read, ``audio_path`` /
``video_path`` are None and ``duration`` NaN.

Defects: a missing clip, an unreadable clip or an mp4 without audio is quarantined
(``missing_file`` / ``corrupt_media`` / ``no_audio_stream``); a label that is not a number or is
outside [-3, 3], an unknown ``mode``, a missing id, a non-numeric unimodal score or a line with
the wrong number of fields -> ``bad_row``; an empty ``text`` -> ``empty_transcript``; rows that
share an id but disagree -> ``conflicting_duplicate``. Exact duplicate rows are kept once and
cp1252 mojibake in ``text`` is repaired; both are counted in ``repairs``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer import schema
from mer.corpora.common import (
    LayoutError,
    LoadResult,
    Quarantine,
    check_media,
    drop_duplicates,
    probe_media,
    read_text,
    repair_mojibake,
    require,
)
from mer.corpora.labels import label_map

logger = logging.getLogger(__name__)

CORPORA = ("mosi", "mosei")
#: Labels beside the (binned) class (mer.vocab.LABEL_KINDS): ``label``, a continuous sentiment score
#: in [-3, 3], and so its polarity by its sign; no VAD
LABEL_KINDS = ("sentiment_score", "sentiment_polarity")
UNIMODAL_COLUMNS = ("label_T", "label_A", "label_V")
LABEL_COLUMNS = ("video_id", "clip_id", "text", "label", *UNIMODAL_COLUMNS, "annotation", "mode")
EXTRA_COLUMNS = ("raw_label", "video_id", "clip_id", "annotation", *UNIMODAL_COLUMNS)
SPLITS = {"train": "train", "valid": "dev", "test": "test"}
SCORE_RANGE = (-3.0, 3.0)
_FLOAT_COLUMNS = ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration")


def check_layout(root: Path, media: bool = True) -> None:
    """Raise :class:`LayoutError` unless ``root`` holds ``label.csv`` (MMSA columns) and, with
    ``media``, ``Raw/``."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not found; expected the MMSA CMU-MOSI / MOSEI folder (label.csv, Raw/)")
    labels = root / "label.csv"
    if not labels.is_file() and root.name in ("Raw", "Processed") and (root.parent / "label.csv").is_file():
        raise LayoutError(
            f"{labels}: not found; {root} is a subfolder of the MMSA layout, point the corpus root at "
            f"{root.parent} (the folder holding label.csv and Raw/)"
        )
    require(labels, f"the MMSA label CSV with columns {', '.join(LABEL_COLUMNS)}")
    with labels.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = next(csv.reader([handle.readline()]), [])
    missing = [c for c in LABEL_COLUMNS if c not in (name.strip() for name in header)]
    if missing:
        raise LayoutError(
            f"{labels}: header lacks {missing}; expected the MMSA label CSV with columns "
            f"{', '.join(LABEL_COLUMNS)} (found {header[:12]})"
        )
    raw = root / "Raw"
    if media and not raw.is_dir():
        raise LayoutError(
            f"{raw}: not found; expected the clip folder Raw/{{video_id}}/{{clip_id}}.mp4 (with only the "
            "released features, set extract.audio.model and extract.video.model to external:<file>)"
        )


def _score(value: str) -> float | None:
    """A float from a CSV field: NaN for an empty field, None when it is not a number."""
    if not value:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return None


def _read_rows(path: Path, quarantine: Quarantine) -> pd.DataFrame:
    """label.csv as stripped strings; lines with too many or too few fields become ``bad_row``."""

    def bad_line(fields: list[str]) -> None:
        utt_id = "_".join(f.strip() for f in fields[:2])
        quarantine.add(utt_id, "bad_row", f"{path}: {len(fields)} fields, expected {len(LABEL_COLUMNS)}")

    # keep_default_na=False: a transcript such as "NA" or "null" stays text
    rows = pd.read_csv(
        io.StringIO(read_text(path)), dtype=str, keep_default_na=False, engine="python", on_bad_lines=bad_line
    )
    rows.columns = [str(c).strip() for c in rows.columns]
    rows = rows[list(LABEL_COLUMNS)]
    short = rows.isna().any(axis=1)  # empty fields read as "", only absent ones as NaN
    for fields in rows[short].itertuples(index=False):
        utt_id = "_".join(str(f).strip() for f in fields[:2])
        quarantine.add(utt_id, "bad_row", f"{path}: fewer than {len(LABEL_COLUMNS)} fields")
    rows = rows[~short].apply(lambda column: column.str.strip())
    rows.insert(0, "utt_id", rows["video_id"] + "_" + rows["clip_id"])
    return rows


def load(
    root: Path,
    labels: str = "2class",
    corpus: str = "mosi",
    max_overrun_seconds: float | None = None,
    media: bool = True,
) -> LoadResult:
    """Load CMU-MOSI or CMU-MOSEI from the MMSA raw layout.

    Args:
        root: the folder holding ``label.csv`` and ``Raw/``.
        labels: label map name of ``mer.corpora.labels`` (``2class``, ``3class``, ``7class``).
        corpus: ``"mosi"`` or ``"mosei"`` (same layout); names the rows and picks the label maps.
        max_overrun_seconds: label.csv has no timestamps, so a clip longer than this many seconds
            is taken as mis-cut and quarantined as ``clip_too_long``; None (default) keeps all.
        media: read the clips in ``Raw/``; False builds the table from ``label.csv`` alone (the
            features are external), with no media paths.

    Raises:
        ValueError: an unknown ``corpus`` or ``labels``.
        LayoutError: ``root`` is not the MMSA layout (see :func:`check_layout`).
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus {corpus!r}: the MMSA loader reads one of {list(CORPORA)}")
    mapping = label_map(corpus, labels)
    root = Path(root).absolute()
    check_layout(root, media)
    quarantine = Quarantine(corpus)
    repairs: Counter = Counter()

    csv_path = root / "label.csv"
    rows = _read_rows(csv_path, quarantine)
    repaired = rows["text"].map(repair_mojibake)
    rows["text"] = repaired.str[0]
    # count once per utterance, not once per exact copy of a row
    repairs["mojibake"] += int((repaired.str[1].astype(bool) & ~rows.duplicated(keep="first")).sum())
    rows = drop_duplicates(rows, "utt_id", quarantine, repairs)

    records = []
    for row in tqdm(rows.itertuples(index=False), total=len(rows), desc=f"{corpus} clips", unit="clip"):
        utt_id = row.utt_id
        if not row.video_id or not row.clip_id:
            quarantine.add(utt_id, "bad_row", f"{csv_path}: empty video_id or clip_id")
            continue
        if row.mode.lower() not in SPLITS:
            quarantine.add(utt_id, "bad_row", f"{csv_path}: mode {row.mode!r} is not one of {list(SPLITS)}")
            continue
        score = _score(row.label)
        if score is None or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:  # NaN fails the range too
            quarantine.add(utt_id, "bad_row", f"{csv_path}: label {row.label!r} is not a score in [-3, 3]")
            continue
        unimodal = {column: _score(getattr(row, column)) for column in UNIMODAL_COLUMNS}
        unparsable = [f"{c}={getattr(row, c)!r}" for c, value in unimodal.items() if value is None]
        if unparsable:
            quarantine.add(utt_id, "bad_row", f"{csv_path}: not a number: {', '.join(unparsable)}")
            continue
        if not row.text:
            quarantine.add(utt_id, "empty_transcript", f"{csv_path}: empty text")
            continue
        label = mapping.map(score)
        if label is None:
            quarantine.add(utt_id, "label_outside_map", row.label)
            continue
        clip = root / "Raw" / row.video_id / f"{row.clip_id}.mp4"
        if media and not check_media(clip, utt_id, quarantine, need_audio=True):
            continue
        duration = probe_media(clip).duration if media else None  # a second header read: ~1 ms
        duration = math.nan if duration is None else float(duration)
        if max_overrun_seconds is not None and duration > max_overrun_seconds:
            quarantine.add(
                utt_id, "clip_too_long",
                f"{clip}: {duration:.1f} s long, over max_overrun_seconds={max_overrun_seconds} "
                f"(label.csv has no timestamps)",
            )  # fmt: skip
            continue
        records.append({
            "utt_id": utt_id, "corpus": corpus, "speaker": row.video_id, "session": row.video_id,
            "split": SPLITS[row.mode.lower()], "label": label, "label_id": mapping.label_id(label),
            "valence": np.nan, "arousal": np.nan, "dominance": np.nan, "sentiment": score, "text": row.text,
            "audio_path": str(clip) if media else None, "video_path": str(clip) if media else None,
            "start": np.nan, "end": np.nan,
            "duration": duration, "raw_label": row.label, "video_id": row.video_id, "clip_id": row.clip_id,
            "annotation": row.annotation, **unimodal,
        })  # fmt: skip

    table = pd.DataFrame(records, columns=[*schema.COLUMNS, *EXTRA_COLUMNS])
    table = table.astype({
        **{c: "float64" for c in (*_FLOAT_COLUMNS, *UNIMODAL_COLUMNS)},
        **{c: "str" for c in table.columns if c not in (*_FLOAT_COLUMNS, *UNIMODAL_COLUMNS, "label_id")},
    })  # fmt: skip
    table = table.astype({"label_id": "int64"}).sort_values("utt_id", kind="stable").reset_index(drop=True)
    if not media:  # no media files: null paths (the str cast above wrote "None")
        table["audio_path"] = table["video_path"] = pd.Series([None] * len(table), dtype=object)
    repairs = {kind: n for kind, n in repairs.items() if n}
    result = LoadResult(table=table, quarantine=quarantine.frame(), repairs=repairs)
    logger.info(
        "%s (%s): %d utterances; quarantined %s; repaired %s", corpus, root, len(table),
        dict(Counter(result.quarantine["reason"])) or "none", result.repairs or "none",
    )  # fmt: skip
    return result
