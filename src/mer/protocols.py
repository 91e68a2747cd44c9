"""Evaluation protocols: which utterances train, tune and test, fold by fold, per corpus.

So that numbers compare with the literature (``../shared/corpora.md``):

- ``official``: the corpus's own splits (MELD, CMU-MOSI / MOSEI, the synthetic corpus).
- ``loso``: IEMOCAP leave-one-session-out. Fold ``k`` tests on session ``k``, tunes on the
  session before it (session 5 for fold 1) and trains on the other three, so no speaker and no
  dialog is in two splits of a fold. Random utterance splits leak speakers and inflate scores.
- ``speakers``: CREMA-D and RAVDESS have no official split: actors are shuffled with a seed and
  cut into disjoint train / dev / test sets.

Every protocol writes the same split file (``SPLIT_COLUMNS``: one row per utterance and fold),
versioned in git, and the metadata table's ``split`` column holds the ``MAIN_FOLD`` fold's split
(for IEMOCAP fold 5: sessions 1-3 train, 4 dev, 5 test).

>>> table = pd.DataFrame({"utt_id": list("abcdef"), "speaker": list("aabbcc"), "split": None})
>>> sorted(speaker_splits(table["speaker"], seed=0, dev_fraction=0.3, test_fraction=0.3).values())
['dev', 'test', 'train']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mer.schema import MetadataError, check_leakage

SPLIT_COLUMNS = ("utt_id", "fold", "split")
MAIN_FOLD = "main"
PROTOCOLS = {
    "synthetic": "official", "meld": "official", "mosi": "official", "mosei": "official",
    "iemocap": "loso", "cremad": "speakers", "ravdess": "speakers",
}  # fmt: skip
PROTOCOL_NAMES = {
    "official": "official split",
    "loso": "leave-one-session-out (fold k tests on session k)",
    "speakers": "speaker-independent split (speakers disjoint, seeded)",
}
# groups that must not straddle two splits of a fold: MELD's characters appear in every official
# split by design, so there it is the dialogue; one speaker per video in MOSI / MOSEI
LEAKAGE_KEYS = {
    "iemocap": ("speaker", "dialog"), "meld": ("session",), "mosi": ("speaker", "session"),
    "mosei": ("speaker", "session"),
}  # fmt: skip
DEFAULT_LEAKAGE_KEYS = ("speaker",)
# the metrics each corpus's literature reports, headline first
LITERATURE_METRICS = {
    "iemocap": ("ua", "wa"), "cremad": ("ua", "wa"), "ravdess": ("ua", "wa"), "synthetic": ("ua", "wa"),
    "meld": ("f1_weighted", "wa"), "mosi": ("f1_weighted", "wa"), "mosei": ("f1_weighted", "wa"),
}  # fmt: skip
LITERATURE_REGRESSION_METRICS = (
    "mae", "pearson", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5",
)  # fmt: skip
LOSO_MAIN_SESSION = 5


def leakage_keys(corpus: str) -> tuple[str, ...]:
    return LEAKAGE_KEYS.get(corpus, DEFAULT_LEAKAGE_KEYS)


def speaker_splits(
    speakers: pd.Series, seed: int, dev_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Speaker -> split, actors disjoint: a seeded shuffle, at least one speaker per split."""
    unique = sorted(speakers.unique())
    if len(unique) < 3:
        raise MetadataError(f"a speaker-independent split needs >= 3 speakers, found {unique}")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    n_test = max(1, round(test_fraction * len(unique)))
    n_dev = max(1, round(dev_fraction * len(unique)))
    if n_test + n_dev >= len(unique):
        n_test, n_dev = 1, 1
    assignment = {s: "test" for s in order[:n_test]}
    assignment |= {s: "dev" for s in order[n_test : n_test + n_dev]}
    assignment |= {s: "train" for s in order[n_test + n_dev :]}
    return assignment


def _session_number(session: str) -> int:
    digits = "".join(ch for ch in str(session) if ch.isdigit())
    if not digits:
        raise MetadataError(f"IEMOCAP session {session!r} has no session number")
    return int(digits)


def loso_split(session: int, fold: int) -> str:
    """The split of an IEMOCAP session in leave-one-session-out fold ``fold``."""
    dev_session = 5 if fold == 1 else fold - 1
    return "test" if session == fold else ("dev" if session == dev_session else "train")


def assign_splits(table: pd.DataFrame, corpus: str, cfg: object | None = None) -> pd.DataFrame:
    """The split file of one corpus: ``SPLIT_COLUMNS`` rows for every utterance and fold.

    Args:
        table: the loader's table (``split`` filled for official protocols).
        corpus: the corpus name (selects the protocol).
        cfg: the corpus's params section (``split_seed``, ``dev_fraction``, ``test_fraction``
            for the ``speakers`` protocol).
    """
    protocol = PROTOCOLS[corpus]
    ids = table["utt_id"].astype(str)
    if protocol == "official":
        missing = table.loc[table["split"].isna(), "utt_id"].tolist()
        if missing:
            raise MetadataError(f"{corpus}: official protocol but no split for utt_id {missing[:5]}")
        return pd.DataFrame({"utt_id": ids, "fold": MAIN_FOLD, "split": table["split"].astype(str)})
    if protocol == "speakers":
        assignment = speaker_splits(table["speaker"], cfg.split_seed, cfg.dev_fraction, cfg.test_fraction)
        return pd.DataFrame({"utt_id": ids, "fold": MAIN_FOLD, "split": table["speaker"].map(assignment)})
    sessions = table["session"].map(_session_number)
    present = sorted(int(s) for s in sessions.unique())
    if present != [1, 2, 3, 4, 5]:
        raise MetadataError(f"{corpus}: leave-one-session-out needs sessions 1-5, found {present}")
    frames = [pd.DataFrame({"utt_id": ids, "fold": MAIN_FOLD,
                            "split": sessions.map(lambda s: loso_split(s, LOSO_MAIN_SESSION))})]  # fmt: skip
    for fold in range(1, 6):
        frames.append(
            pd.DataFrame(
                {"utt_id": ids, "fold": str(fold), "split": sessions.map(lambda s, f=fold: loso_split(s, f))}
            )
        )
    return pd.concat(frames, ignore_index=True)


def check_folds(table: pd.DataFrame, splits: pd.DataFrame, corpus: str, name: str) -> None:
    """The leakage check, fold by fold: no speaker (and for IEMOCAP no dialog) in two splits.

    Raises:
        MetadataError: naming the fold, the leaking ids and their splits.
    """
    keys = leakage_keys(corpus)
    groups = table[["utt_id", *keys]]
    for fold, rows in splits.groupby("fold", sort=False):
        check_leakage(rows.merge(groups, on="utt_id", how="left"), f"{name} fold {fold}", keys)
        empty = [s for s in ("train", "dev", "test") if not (rows["split"] == s).any()]
        if empty:
            raise MetadataError(f"{name} fold {fold}: no utterance in split(s) {empty}")


def apply_fold(
    table: pd.DataFrame, splits: pd.DataFrame, fold: str | int, source: str = "split file"
) -> pd.DataFrame:
    """``table`` with its ``split`` column replaced by fold ``fold`` of the split file.

    Raises:
        ValueError: the fold is not in the split file (naming the folds it has).
    """
    fold = str(fold)
    rows = splits[splits["fold"].astype(str) == fold]
    if rows.empty:
        known = sorted(splits["fold"].astype(str).unique())
        raise ValueError(f"{source}: no fold {fold!r} (it has {known}); check corpora.folds")
    mapping = dict(zip(rows["utt_id"].astype(str), rows["split"], strict=True))
    out = table.copy()
    out["split"] = out["utt_id"].map(mapping)
    missing = out.loc[out["split"].isna(), "utt_id"].tolist()
    if missing:
        raise ValueError(
            f"{source}: fold {fold} has no split for utt_id {missing[:5]}; re-run the metadata stage"
        )
    return out
