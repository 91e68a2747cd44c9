"""The uniform metadata table every corpus loader produces, and its validation.

One row per utterance. Real-corpus loaders and the synthetic corpus share this schema, so the
extract, train and evaluate code never needs to know which corpus it reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

#: Columns every metadata table has, in this order.
COLUMNS = (
    "utt_id", "corpus", "speaker", "session", "split", "label", "label_id",
    "valence", "arousal", "dominance", "sentiment", "text", "audio_path", "video_path",
    "start", "end", "duration",
)  # fmt: skip
#: Optional: ``video_start`` / ``video_end`` (seconds) cut an utterance's window out of a longer
#: ``video_path`` (IEMOCAP's dialog videos); absent or null means the whole clip.
#: Optional columns recording which modalities carry a usable cue (the synthetic corpus has them).
RELIABILITY_COLUMNS = ("text_reliable", "audio_reliable", "video_reliable")
SPLITS = ("train", "dev", "test")


class MetadataError(ValueError):
    """The metadata table breaks an invariant; the message names the offending ids."""


def _preview(values: list, limit: int = 5) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def validate(table: pd.DataFrame, name: str, check_files: bool = True) -> None:
    """Check a metadata table: schema, unique ids, known splits, files exist, speakers disjoint.

    Raises:
        MetadataError: naming the table and the offending ids / speakers / paths.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise MetadataError(f"{name}: missing columns {missing}; a loader must produce {list(COLUMNS)}")
    if table.empty:
        raise MetadataError(f"{name}: no utterances")
    dup = table.loc[table["utt_id"].duplicated(), "utt_id"].tolist()
    if dup:
        raise MetadataError(f"{name}: duplicated utt_id: {_preview(dup)}")
    from mer.params import EMOTIONS

    unknown = table.loc[~table["label"].isin(EMOTIONS), "utt_id"].tolist()
    if unknown:
        raise MetadataError(f"{name}: label not in {EMOTIONS} for utt_id {_preview(unknown)}")
    expected_ids = table["label"].map({label: i for i, label in enumerate(EMOTIONS)})
    mismatched = table.loc[table["label_id"] != expected_ids, "utt_id"].tolist()
    if mismatched:
        raise MetadataError(
            f"{name}: label_id does not match the label's index in {EMOTIONS} for {_preview(mismatched)}"
        )
    bad_split = table.loc[~table["split"].isin(SPLITS), "utt_id"].tolist()
    if bad_split:
        raise MetadataError(f"{name}: split not in {SPLITS} for utt_id {_preview(bad_split)}")
    leaking = table.groupby("speaker")["split"].nunique()
    leaking = leaking[leaking > 1].index.tolist()
    if leaking:
        detail = [
            f"{spk} in {sorted(table.loc[table['speaker'] == spk, 'split'].unique())}" for spk in leaking
        ]
        raise MetadataError(f"{name}: speakers in more than one split (speaker leakage): {_preview(detail)}")
    if check_files:
        for column in ("audio_path", "video_path"):
            paths = table[column].dropna()
            absent = table.loc[paths.index[~paths.map(lambda p: Path(p).is_file())], "utt_id"]
            if len(absent):
                first = table.loc[table["utt_id"] == absent.iloc[0], column].iloc[0]
                raise MetadataError(
                    f"{name}: {column} missing on disk for utt_id {_preview(absent.tolist())} "
                    f"(first: {first})"
                )
    logger.info("%s: %d utterances, %d speakers validated", name, len(table), table["speaker"].nunique())


def write(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a validated table to Parquet with the schema columns first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = list(COLUMNS) + [c for c in table.columns if c not in COLUMNS]
    table[ordered].reset_index(drop=True).to_parquet(path, index=False)
    return path


def read(path: str | Path) -> pd.DataFrame:
    """Read a metadata table written by :func:`write`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata table not found; run `dvc repro metadata` first")
    return pd.read_parquet(path)
