"""The uniform metadata table every corpus loader produces, and its validation.

One row per utterance. Real-corpus loaders and the synthetic corpus share this schema, so the
extract, train and evaluate code never needs to know which corpus it reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from mer.vocab import EMOTIONS, LABEL_KINDS, MODALITIES

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
#: The columns each label kind (``mer.vocab.LABEL_KINDS``) is read from by training (``mer.data``).
LABEL_KIND_COLUMNS = {
    "sentiment_score": ("sentiment",), "sentiment_polarity": ("sentiment",),
    "vad": ("valence", "arousal", "dominance"),
}  # fmt: skip
#: The column each modality's extractor reads.
MODALITY_COLUMNS = {"text": "text", "audio": "audio_path", "video": "video_path"}


class MetadataError(ValueError):
    """The metadata table breaks an invariant; the message names the offending ids."""


def _preview(values: list, limit: int = 5) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def label_classes(table: pd.DataFrame) -> tuple[str, ...]:
    """The table's class names in ``label_id`` order.

    The metadata stage stores them in ``table.attrs["classes"]`` (kept in the Parquet file and
    through row selections), because a split need not contain every class. Tables built in code
    without a label map (tests, the synthetic corpus's loader) have the shared four.
    """
    return tuple(table.attrs.get("classes", EMOTIONS))


def observed_label_kinds(table: pd.DataFrame, declared: tuple[str, ...]) -> tuple[str, ...]:
    """The label kinds of ``declared`` (what the corpus's loader says its table carries, e.g.
    ``mer.corpora.meld.LABEL_KINDS``) that at least one train row has, in all of the kind's
    columns. The loader says what a column *means* (MELD's -1 / 0 / 1 sentiment is a polarity,
    not a score); the train split says whether this copy of the corpus has it.

    >>> table = pd.DataFrame({"split": ["train", "test"], "sentiment": [float("nan"), 1.0],
    ...                       "valence": [2.0, 3.0], "arousal": [2.0, 3.0], "dominance": [2.0, 3.0]})
    >>> observed_label_kinds(table, ("sentiment_polarity", "vad"))
    ('vad',)
    """
    unknown = sorted(set(declared) - set(LABEL_KINDS))
    if unknown:
        raise ValueError(f"label kinds {unknown} unknown; known: {list(LABEL_KINDS)}")
    train = table[table["split"] == "train"]
    found = []
    for kind in LABEL_KINDS:
        columns = LABEL_KIND_COLUMNS[kind]
        if kind in declared and all(c in train for c in columns):
            values = train[list(columns)].apply(pd.to_numeric, errors="coerce")
            if values.notna().all(axis=1).any():
                found.append(kind)
    return tuple(found)


def observed_modalities(table: pd.DataFrame) -> tuple[str, ...]:
    """The modalities at least one train row has an input for (a non-empty transcript, an
    ``audio_path``, a ``video_path``): RAVDESS's audio release has no video.

    >>> observed_modalities(pd.DataFrame({"split": ["train"], "text": ["hi"], "audio_path": ["a.wav"],
    ...                                   "video_path": [None]}))
    ('text', 'audio')
    """
    train = table[table["split"] == "train"]
    found = []
    for modality in MODALITIES:
        column = MODALITY_COLUMNS[modality]
        values = train[column] if column in train else pd.Series(dtype=object)
        if values.map(lambda v: isinstance(v, str) and bool(v.strip())).any():
            found.append(modality)
    return tuple(found)


def recorded(table: pd.DataFrame, attr: str, path: str | Path = "the metadata table") -> tuple[str, ...]:
    """What the metadata stage recorded in ``table.attrs[attr]`` (``label_kinds``,
    ``modalities``); a table written before mer recorded them fails, naming the fix."""
    if attr not in table.attrs:
        raise MetadataError(
            f"{path}: no {attr!r} recorded (a table from an older mer); re-run `dvc repro -f metadata`"
        )
    return tuple(table.attrs[attr])


def check_leakage(table: pd.DataFrame, name: str, keys: tuple[str, ...] = ("speaker",)) -> None:
    """Fail if any value of a group column in ``keys`` (speaker, dialog, ...) is in two splits.

    Raises:
        MetadataError: naming each leaking id and its splits.
    """
    for key in keys:
        leaking = table.groupby(key)["split"].nunique()
        leaking = leaking[leaking > 1].index.tolist()
        if leaking:
            detail = [f"{v} in {sorted(table.loc[table[key] == v, 'split'].unique())}" for v in leaking]
            raise MetadataError(f"{name}: {key}s in more than one split ({key} leakage): {_preview(detail)}")


def validate(
    table: pd.DataFrame, name: str, check_files: bool = True, leakage_keys: tuple[str, ...] = ("speaker",)
) -> None:
    """Check a metadata table: schema, unique ids, labels in its classes, known splits, files
    exist, and no ``leakage_keys`` group (speaker by default) in two splits.

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
    classes = label_classes(table)
    unknown = table.loc[~table["label"].isin(classes), "utt_id"].tolist()
    if unknown:
        raise MetadataError(f"{name}: label not in {classes} for utt_id {_preview(unknown)}")
    expected_ids = table["label"].map({label: i for i, label in enumerate(classes)})
    mismatched = table.loc[table["label_id"] != expected_ids, "utt_id"].tolist()
    if mismatched:
        raise MetadataError(
            f"{name}: label_id does not match the label's index in {classes} for {_preview(mismatched)}"
        )
    bad_split = table.loc[~table["split"].isin(SPLITS), "utt_id"].tolist()
    if bad_split:
        raise MetadataError(f"{name}: split not in {SPLITS} for utt_id {_preview(bad_split)}")
    check_leakage(table, name, leakage_keys)
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
    frame = table[ordered].reset_index(drop=True)
    frame.attrs = dict(table.attrs)  # the class names and corpus travel in the Parquet file
    frame.to_parquet(path, index=False)
    return path


def read(path: str | Path) -> pd.DataFrame:
    """Read a metadata table written by :func:`write`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata table not found; run `dvc repro metadata` first")
    return pd.read_parquet(path)
