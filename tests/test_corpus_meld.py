"""The MELD loader on a small MELD.Raw tree with the public release's defects planted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mer.corpora import meld
from mer.corpora.common import QUARANTINE_COLUMNS, LayoutError
from mer.corpora.labels import label_map
from mer.schema import COLUMNS
from tests import fixtures_meld

EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")


@pytest.fixture(scope="module")
def meld_root(tmp_path_factory) -> Path:
    return fixtures_meld.build(tmp_path_factory.mktemp("meld"))


@pytest.fixture(scope="module")
def loaded(meld_root):
    return meld.load(meld_root)


@pytest.fixture()
def meld_copy(meld_root, tmp_path) -> Path:
    """A private copy of the defect tree, for tests that edit it."""
    return Path(shutil.copytree(meld_root, tmp_path / "MELD.Raw"))


def quarantined(result, reason: str) -> list[str]:
    return result.quarantine.loc[result.quarantine["reason"] == reason, "utt_id"].tolist()


def row(result, utt_id: str) -> pd.Series:
    rows = result.table[result.table["utt_id"] == utt_id]
    assert len(rows) == 1, f"{utt_id}: {len(rows)} rows"
    return rows.iloc[0]


def edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------


def test_table_matches_the_contract(loaded):
    table = loaded.table
    for column in (*COLUMNS, *meld.EXTRA_COLUMNS):
        assert column in table.columns, column
    for column in ("utt_id", "corpus", "speaker", "session", "split", "label", "text", "raw_label",
                   "sentiment_label", "audio_path", "video_path"):  # fmt: skip
        assert table[column].map(type).eq(str).all(), column
    assert table["label_id"].dtype == "int64"
    for column in ("dialogue_id", "utterance_id", "season", "episode"):
        assert table[column].dtype == "int64", column
    for column in ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration"):
        assert table[column].dtype == "float64", column
    assert table[["valence", "arousal", "dominance"]].isna().all().all()
    assert table["utt_id"].is_unique
    assert table["utt_id"].tolist() == sorted(table["utt_id"])
    assert set(table["corpus"]) == {"meld"}
    assert set(table["split"]) == {"train", "dev", "test"}
    classes = label_map("meld", "7class").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert (table["label"] == table["raw_label"]).all()  # 7class maps every MELD emotion onto itself
    assert (table["audio_path"] == table["video_path"]).all()  # the audio is inside the mp4
    for path in table["video_path"]:
        assert Path(path).is_absolute() and Path(path).is_file() and path.endswith(".mp4"), path
    assert list(loaded.quarantine.columns) == list(QUARANTINE_COLUMNS)


def test_every_class_in_every_official_split(loaded):
    counts = loaded.table.groupby(["split", "label"]).size()
    for split in ("train", "dev", "test"):
        for emotion in EMOTIONS:
            assert counts.get((split, emotion), 0) >= 3, (split, emotion)


def test_clean_tree_loads_without_quarantine_or_repairs(tmp_path):
    result = meld.load(fixtures_meld.build(tmp_path, defects=False))
    assert result.quarantine.empty
    assert result.repairs == {}
    assert len(result.table) == 3 * (fixtures_meld.N_DIALOGUES * fixtures_meld.N_UTTERANCES + 1)


def test_counts_match_planted(loaded):
    counts = loaded.counts()
    expected = {f"repaired/{k}" if k in ("mojibake", "duplicate_row") else f"quarantine/{k}": n
                for k, n in fixtures_meld.PLANTED.items()}  # fmt: skip
    assert {k: v for k, v in counts.items() if k != "utterances"} == expected
    assert counts["utterances"] == len(loaded.table)


# ------------------------------------------------------------------------------------------------
# one test per planted defect
# ------------------------------------------------------------------------------------------------


def test_missing_clip_is_quarantined(loaded, meld_root):
    assert quarantined(loaded, "missing_file") == ["train_dia110_utt7"]
    detail = loaded.quarantine.set_index("utt_id").loc["train_dia110_utt7", "detail"]
    assert detail == str(meld_root / "train_splits" / "dia110_utt7.mp4")
    assert "train_dia110_utt7" not in set(loaded.table["utt_id"])


def test_corrupt_clip_is_quarantined(loaded):
    assert quarantined(loaded, "corrupt_media") == ["train_dia125_utt3"]
    assert "train_dia125_utt3" not in set(loaded.table["utt_id"])


def test_clip_without_audio_stream_is_quarantined(loaded):
    assert quarantined(loaded, "no_audio_stream") == ["dev_dia50_utt1"]
    assert "dev_dia50_utt1" not in set(loaded.table["utt_id"])


def test_clip_much_longer_than_its_times_is_quarantined(loaded, meld_root):
    assert quarantined(loaded, "clip_too_long") == ["test_dia60_utt2"]
    detail = loaded.quarantine.set_index("utt_id").loc["test_dia60_utt2", "detail"]
    assert "40.0 s long" in detail and "0.5 s" in detail
    # the allowance is an option: with a minute of slack the 40 s clip is kept
    lenient = meld.load(meld_root, max_overrun_seconds=60.0)
    assert quarantined(lenient, "clip_too_long") == []
    assert row(lenient, "test_dia60_utt2")["duration"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="max_overrun_seconds"):
        meld.load(meld_root, max_overrun_seconds=-1.0)


def test_mojibake_is_repaired_in_place(loaded):
    assert loaded.repairs["mojibake"] == fixtures_meld.PLANTED["mojibake"]
    for utt_id, text in fixtures_meld.MOJIBAKE.items():
        assert row(loaded, utt_id)["text"] == text
    assert not loaded.table["text"].str.contains("â€|Ã", regex=True).any()
    # an untouched line keeps its quotes and commas
    assert row(loaded, "train_dia0_utt1")["text"] == 'He said "no", and then he left.'


def test_mojibake_in_speaker_is_repaired(meld_copy):
    edit_csv(meld_copy / "train_sent_emo.csv", ",Joey,joy,", ",JoÃ©y,joy,")  # train dia0_utt1
    result = meld.load(meld_copy)
    assert row(result, "train_dia0_utt1")["speaker"] == "Joéy"
    assert result.repairs["mojibake"] == fixtures_meld.PLANTED["mojibake"] + 1


def test_exact_duplicate_row_is_kept_once(loaded):
    assert loaded.repairs["duplicate_row"] == 1
    kept = row(loaded, "train_dia0_utt0")
    assert kept["text"] == "Oh my God, you guys!" and kept["label"] == "neutral"
    assert "train_dia0_utt0" not in set(loaded.quarantine["utt_id"])


def test_duplicate_id_with_different_labels_is_quarantined(loaded):
    assert quarantined(loaded, "conflicting_duplicate") == ["train_dia130_utt0"]
    assert "train_dia130_utt0" not in set(loaded.table["utt_id"])


def test_unknown_emotion_is_outside_the_7class_map(loaded):
    entries = loaded.quarantine[loaded.quarantine["reason"] == "label_outside_map"]
    assert entries[["utt_id", "detail"]].values.tolist() == [["dev_dia51_utt0", "excitement"]]


def test_empty_utterance_is_quarantined(loaded):
    assert quarantined(loaded, "empty_transcript") == ["test_dia61_utt0"]
    assert (loaded.table["text"].str.strip() != "").all()


def test_unparsable_start_time_is_a_bad_row(loaded):
    entries = loaded.quarantine.set_index("utt_id")
    assert quarantined(loaded, "bad_row") == ["train_dia140_utt0"]
    assert "00:1x:05,000" in entries.loc["train_dia140_utt0", "detail"]


def test_other_field_defects_are_bad_rows(meld_copy):
    train_csv = meld_copy / "train_sent_emo.csv"
    edit_csv(train_csv, ",Joey,joy,positive,0,1,", ",Joey,joy,meh,0,1,")  # train dia0_utt1: sentiment
    edit_csv(train_csv, '"00:10:37,900"', '"00:10:36,000"')  # train dia1_utt0: EndTime before StartTime
    edit_csv(train_csv, ",Monica,sadness,negative,1,1,", ",Monica,sadness,negative,one,1,")  # dia1_utt1
    result = meld.load(meld_copy)
    details = dict(zip(*(result.quarantine[result.quarantine["reason"] == "bad_row"][c]
                         for c in ("utt_id", "detail")), strict=True))  # fmt: skip
    assert set(details) == {"train_dia140_utt0", "train_dia0_utt1", "train_dia1_utt0", "train_row5"}
    assert "meh" in details["train_dia0_utt1"]
    assert "before StartTime" in details["train_dia1_utt0"]
    assert "'one'" in details["train_row5"]


# ------------------------------------------------------------------------------------------------
# label maps
# ------------------------------------------------------------------------------------------------


def test_sentiment3_map_reads_the_sentiment_column(meld_root, loaded):
    result = meld.load(meld_root, labels="sentiment3")
    table = result.table
    assert set(table["label"]) == {"negative", "neutral", "positive"}
    assert (table["label"] == table["sentiment_label"]).all()
    assert (table["raw_label"] == table["sentiment_label"]).all()
    classes = label_map("meld", "sentiment3").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    # the 'excitement' row has a valid sentiment, so only the emotion maps leave it out
    assert quarantined(result, "label_outside_map") == []
    assert set(table["utt_id"]) == set(loaded.table["utt_id"]) | {"dev_dia51_utt0"}


def test_shared4_leaves_out_surprise_disgust_fear(meld_root, loaded):
    result = meld.load(meld_root, labels="shared4")
    assert set(result.table["label"]) == {"anger", "happiness", "neutral", "sadness"}
    left_out = loaded.table.loc[loaded.table["label"].isin(["surprise", "disgust", "fear"]), "utt_id"]
    assert sorted(quarantined(result, "label_outside_map")) == sorted([*left_out, "dev_dia51_utt0"])
    happy = result.table[result.table["label"] == "happiness"]
    assert (happy["raw_label"] == "joy").all() and len(happy) > 0


def test_bad_label_map_name(meld_root):
    with pytest.raises(ValueError, match=r"corpora\.meld\.labels"):
        meld.load(meld_root, labels="4class")


# ------------------------------------------------------------------------------------------------
# layout errors
# ------------------------------------------------------------------------------------------------


def skeleton(root: Path) -> Path:
    """CSV headers and empty clip folders: enough for check_layout."""
    root.mkdir(parents=True)
    for csv_name, clip_dir, _ in meld.SPLIT_FILES.values():
        (root / csv_name).write_text(",".join(meld.CSV_COLUMNS) + "\n", encoding="utf-8")
        (root / clip_dir).mkdir()
    meld.check_layout(root)
    return root


def test_missing_root(tmp_path):
    with pytest.raises(LayoutError, match=f"{tmp_path / 'nowhere'}: not found"):
        meld.load(tmp_path / "nowhere")


def test_missing_csv_is_named(tmp_path):
    root = skeleton(tmp_path / "MELD.Raw")
    (root / "dev_sent_emo.csv").unlink()
    with pytest.raises(LayoutError, match=r"dev_sent_emo\.csv: not found; expected the MELD dev label CSV"):
        meld.check_layout(root)


def test_missing_clip_folder_names_the_archive(tmp_path):
    root = skeleton(tmp_path / "MELD.Raw")
    (root / "output_repeated_splits_test").rmdir()
    with pytest.raises(LayoutError, match=r"output_repeated_splits_test: not found.*test\.tar\.gz"):
        meld.check_layout(root)


def test_csv_with_other_columns(tmp_path):
    root = skeleton(tmp_path / "MELD.Raw")
    (root / "train_sent_emo.csv").write_text("video_id,clip_id,text,label\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"train_sent_emo\.csv: columns \['Sr No\.', 'Utterance'"):
        meld.check_layout(root)


def test_other_corpus_layout(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    (root / "Session1" / "dialog").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"IEMOCAP_full_release/train_sent_emo\.csv: not found"):
        meld.check_layout(root)


def test_parent_of_meld_raw(tmp_path):
    skeleton(tmp_path / "MELD.Raw")
    with pytest.raises(LayoutError, match=r"holds MELD\.Raw/ but is not it"):
        meld.check_layout(tmp_path)


# ------------------------------------------------------------------------------------------------
# parsing details
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [("00:16:16,059", 976.059), ("01:02:03,5", 3723.5), ("00:00:01.250", 1.25), ("0:00:07", 7.0)],
)
def test_parse_time(stamp, seconds):
    assert meld.parse_time(stamp) == pytest.approx(seconds)


@pytest.mark.parametrize("stamp", ["00:1x:05,000", "", "16:16,059", "00:61:00,000", "00:00:05,0001"])
def test_parse_time_rejects(stamp):
    with pytest.raises(ValueError):
        meld.parse_time(stamp)


def test_times_come_from_the_csv(loaded):
    first = row(loaded, "dev_dia1_utt2")  # "00:10:42,000" -> "00:10:42,400"
    assert (first["start"], first["end"]) == (pytest.approx(642.0), pytest.approx(642.4))
    assert (loaded.table["duration"] - (loaded.table["end"] - loaded.table["start"])).abs().max() < 1e-9
    assert loaded.table["duration"].between(0.39, 0.41).all()


def test_sentiment_values(loaded):
    table = loaded.table
    assert (table["sentiment"] == table["sentiment_label"].map({"negative": -1.0, "neutral": 0.0,
                                                                "positive": 1.0})).all()  # fmt: skip
    assert set(table["sentiment"]) == {-1.0, 0.0, 1.0}
    assert row(loaded, "train_dia0_utt1")["sentiment"] == 1.0  # joy, positive


def test_ids_repeat_across_splits_without_colliding(loaded, meld_root):
    rows = [row(loaded, f"{split}_dia0_utt0") for split in ("train", "dev", "test")]
    assert [r["split"] for r in rows] == ["train", "dev", "test"]
    assert [r["session"] for r in rows] == ["train_dia0", "dev_dia0", "test_dia0"]
    assert [r["video_path"] for r in rows] == [
        str(meld_root / clip_dir / "dia0_utt0.mp4") for _, clip_dir, _ in meld.SPLIT_FILES.values()
    ]
    assert all((r["dialogue_id"], r["utterance_id"]) == (0, 0) for r in rows)
    # the same characters speak in every split: MELD's official protocol, kept as is
    assert loaded.table.groupby("speaker")["split"].nunique().max() == 3


def test_extra_columns(loaded):
    first = row(loaded, "train_dia1_utt2")
    assert (first["dialogue_id"], first["utterance_id"], first["season"], first["episode"]) == (1, 2, 2, 8)
    assert first["raw_label"] == "disgust" and first["sentiment_label"] == "negative"


def test_cp1252_csv_is_read(loaded, meld_root):
    raw = (meld_root / "test_sent_emo.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert row(loaded, fixtures_meld.CP1252_ID)["text"] == fixtures_meld.CP1252_TEXT


def test_stray_cp1252_bytes_are_repaired(meld_copy):
    # the release kept some cp1252 characters as C1 controls ("I\x92m"; declare-lab/MELD#28)
    edit_csv(meld_copy / "train_sent_emo.csv", "How you doin'?", "How you doin\x92? I\x92m \x85 here.")
    result = meld.load(meld_copy)
    assert row(result, "train_dia1_utt0")["text"] == "How you doin’? I’m … here."
    assert result.repairs["mojibake"] == fixtures_meld.PLANTED["mojibake"] + 1


def test_csvs_without_rows_give_an_empty_table(tmp_path):
    result = meld.load(skeleton(tmp_path / "MELD.Raw"))
    assert result.table.empty and result.quarantine.empty
    assert list(result.table.columns) == [*COLUMNS, *meld.EXTRA_COLUMNS]
    assert result.table["label_id"].dtype == "int64" and result.table["start"].dtype == "float64"
