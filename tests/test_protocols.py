"""Protocols: leave-one-session-out folds, speaker-independent splits, the leakage check."""

from __future__ import annotations

import pandas as pd
import pytest

from mer import protocols, schema
from mer.params import CremadParams
from mer.schema import MetadataError


def _iemocap_like() -> pd.DataFrame:
    rows = []
    for session in range(1, 6):
        for gender in "FM":
            for dialog in ("impro01", "script01"):
                for i in range(2):
                    rows.append({
                        "utt_id": f"Ses0{session}F_{dialog}_{gender}00{i}",
                        "speaker": f"Ses0{session}_{gender}", "session": f"Ses0{session}",
                        "dialog": f"Ses0{session}F_{dialog}", "split": None,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_loso_fold_k_tests_on_session_k_and_tunes_on_the_one_before() -> None:
    table = _iemocap_like()
    splits = protocols.assign_splits(table, "iemocap")
    assert sorted(splits["fold"].unique()) == ["1", "2", "3", "4", "5", "main"]
    session = table.set_index("utt_id")["session"]
    for fold in range(1, 6):
        rows = splits[splits["fold"] == str(fold)].set_index("utt_id")["split"]
        by_session = rows.groupby(session).agg(set)
        assert by_session[f"Ses0{fold}"] == {"test"}
        assert by_session[f"Ses0{5 if fold == 1 else fold - 1}"] == {"dev"}
        assert sum(v == {"train"} for v in by_session) == 3
    main = splits[splits["fold"] == "main"].set_index("utt_id")["split"]
    fold5 = splits[splits["fold"] == "5"].set_index("utt_id")["split"]
    assert main.equals(fold5)
    protocols.check_folds(table, splits, "iemocap", "iemocap")  # no speaker / dialog leakage


def test_loso_needs_all_five_sessions() -> None:
    table = _iemocap_like()
    table = table[table["session"] != "Ses03"]
    with pytest.raises(MetadataError, match=r"sessions 1-5, found \[1, 2, 4, 5\]"):
        protocols.assign_splits(table, "iemocap")


def test_speaker_split_is_disjoint_seeded_and_reproducible() -> None:
    table = pd.DataFrame(
        {"utt_id": [f"u{i}" for i in range(90)], "speaker": [f"{1001 + i % 30}" for i in range(90)]}
    )
    cfg = CremadParams(split_seed=3, dev_fraction=0.1, test_fraction=0.2)
    first = protocols.assign_splits(table, "cremad", cfg)
    assert first.equals(protocols.assign_splits(table, "cremad", cfg))
    merged = first.merge(table, on="utt_id")
    assert (merged.groupby("speaker")["split"].nunique() == 1).all()
    counts = merged.groupby("split")["speaker"].nunique()
    assert counts.to_dict() == {"dev": 3, "test": 6, "train": 21}
    other = protocols.assign_splits(table, "cremad", CremadParams(split_seed=4))
    assert not other["split"].equals(first["split"])


def test_official_protocol_keeps_the_corpus_splits_and_requires_them() -> None:
    table = pd.DataFrame(
        {"utt_id": ["a", "b", "c"], "speaker": ["x", "y", "z"], "split": ["train", "dev", "test"]}
    )
    splits = protocols.assign_splits(table, "meld")
    assert splits["split"].tolist() == ["train", "dev", "test"] and set(splits["fold"]) == {"main"}
    table.loc[1, "split"] = None
    with pytest.raises(MetadataError, match=r"no split for utt_id \['b'\]"):
        protocols.assign_splits(table, "meld")


def test_leakage_check_names_the_speaker_and_the_fold() -> None:
    table = _iemocap_like()
    splits = protocols.assign_splits(table, "iemocap")
    # one utterance of a session-1 speaker moved into fold 3's training data
    leak = (splits["fold"] == "1") & (splits["utt_id"] == "Ses01F_impro01_F000")
    splits.loc[leak, "split"] = "train"
    with pytest.raises(
        MetadataError, match=r"fold 1: speakers in more than one split.*Ses01_F in \['test', 'train'\]"
    ):
        protocols.check_folds(table, splits, "iemocap", "iemocap")


def test_leakage_check_covers_iemocap_dialogs() -> None:
    table = _iemocap_like()
    splits = protocols.assign_splits(table, "iemocap")
    # a dialog shared by two sessions' speakers: speakers stay disjoint, the dialog leaks
    table.loc[table["utt_id"] == "Ses02F_impro01_M000", "dialog"] = "Ses01F_impro01"
    with pytest.raises(MetadataError, match=r"dialogs in more than one split.*Ses01F_impro01"):
        protocols.check_folds(table, splits, "iemocap", "iemocap")


def test_meld_checks_dialogues_not_characters() -> None:
    # MELD's characters are in every official split by design; its dialogues must not be
    table = pd.DataFrame({"utt_id": ["a", "b", "c", "d"], "speaker": ["Joey"] * 4,
                          "session": ["train_dia1", "dev_dia1", "test_dia1", "test_dia1"],
                          "split": ["train", "dev", "test", "test"]})  # fmt: skip
    protocols.check_folds(table, protocols.assign_splits(table, "meld"), "meld", "meld")
    table.loc[3, "session"] = "train_dia1"
    with pytest.raises(MetadataError, match=r"sessions in more than one split.*train_dia1"):
        protocols.check_folds(table, protocols.assign_splits(table, "meld"), "meld", "meld")


def test_apply_fold_replaces_the_split_and_rejects_unknown_folds() -> None:
    table = _iemocap_like()
    table.attrs["classes"] = ["a", "b"]
    splits = protocols.assign_splits(table, "iemocap")
    fold2 = protocols.apply_fold(table, splits, 2)
    assert set(fold2.loc[fold2["session"] == "Ses02", "split"]) == {"test"}
    assert fold2.attrs["classes"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"no fold '7'.*check corpora.folds"):
        protocols.apply_fold(table, splits, 7)
    with pytest.raises(ValueError, match="has no split for utt_id"):
        protocols.apply_fold(table, splits[~splits["utt_id"].eq("Ses01F_impro01_F000")], 2)


def test_validate_uses_the_tables_own_classes() -> None:
    table = pd.DataFrame({c: [None] for c in schema.COLUMNS})
    table = table.assign(utt_id="u1", speaker="s", split="train", label="joy", label_id=1)
    table.attrs["classes"] = ["neutral", "joy"]
    schema.validate(table, "t", check_files=False)
    table.attrs["classes"] = ["joy", "neutral"]
    with pytest.raises(MetadataError, match="label_id does not match"):
        schema.validate(table, "t", check_files=False)
