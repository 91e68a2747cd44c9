"""The CMU-MOSI / CMU-MOSEI loader on a tiny MMSA raw tree (tests/fixtures_mmsa.py)."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer import schema
from mer.corpora import mmsa
from mer.corpora.common import QUARANTINE_COLUMNS, LayoutError
from mer.corpora.labels import label_map
from tests import fixtures_mmsa as fx

STR_COLUMNS = ("utt_id", "corpus", "speaker", "session", "split", "label", "text", "audio_path", "video_path",
               "raw_label", "video_id", "clip_id", "annotation")  # fmt: skip
FLOAT_COLUMNS = ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration",
                 "label_T", "label_A", "label_V")  # fmt: skip


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mmsa")
    return {"defects": fx.build(base / "defects"), "clean": fx.build(base / "clean", defects=False)}


@pytest.fixture(scope="module")
def loaded(trees):
    return mmsa.load(trees["defects"])


@pytest.fixture(scope="module")
def clean(trees):
    return mmsa.load(trees["clean"])


def copy_tree(trees, tmp_path: Path, which: str = "clean") -> Path:
    return Path(shutil.copytree(trees[which], tmp_path / "MOSI"))


def append_rows(root: Path, *lines: str) -> None:
    with (root / "label.csv").open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine["utt_id"], result.quarantine["reason"], strict=True))


def utt(split: str, video: int, clip: int) -> str:
    return f"{fx.VIDEOS[split][video]}_{clip}"


# --- the table contract --------------------------------------------------------------------------


def test_table_matches_the_contract(loaded):
    table = loaded.table
    assert list(table.columns) == [*schema.COLUMNS, *mmsa.EXTRA_COLUMNS]
    for column in STR_COLUMNS:
        assert pd.api.types.is_string_dtype(table[column]), column
        assert all(isinstance(value, str) for value in table[column]), column
    for column in FLOAT_COLUMNS:
        assert table[column].dtype == np.float64, column
    assert table["label_id"].dtype == np.int64
    assert table["utt_id"].is_unique and table["utt_id"].tolist() == sorted(table["utt_id"])
    assert set(table["corpus"]) == {"mosi"} and set(table["split"]) == {"train", "dev", "test"}
    classes = label_map("mosi", "2class").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert (table["speaker"] == table["video_id"]).all() and (table["session"] == table["video_id"]).all()
    assert (table["utt_id"] == table["video_id"] + "_" + table["clip_id"]).all()
    assert (table["audio_path"] == table["video_path"]).all()
    for path, row in zip(table["video_path"], table.itertuples(), strict=True):
        assert Path(path).is_absolute() and Path(path).is_file()
        assert Path(path).parts[-3:] == ("Raw", row.video_id, f"{row.clip_id}.mp4")
    assert table[["valence", "arousal", "dominance", "start", "end"]].isna().all().all()
    assert table["duration"].between(0.3, 1.0).all()  # 0.4-0.8 s clips, read from the mp4 header
    assert list(loaded.quarantine.columns) == list(QUARANTINE_COLUMNS)
    # one video, one speaker: no speaker crosses splits
    assert (table.groupby("speaker")["split"].nunique() == 1).all()


def test_every_class_in_every_split(trees):
    for labels in ("2class", "3class"):
        counts = mmsa.load(trees["defects"], labels=labels).table.groupby(["split", "label"]).size()
        for split in ("train", "dev", "test"):
            for name in label_map("mosi", labels).classes:
                assert counts.get((split, name), 0) >= 3, (labels, split, name)


def test_clean_tree_has_no_defects(clean):
    assert clean.quarantine.empty and clean.repairs == {}
    assert len(clean.table) == sum(len(v) for v in fx.VIDEOS.values()) * 2


def test_planted_defects_are_counted(loaded, clean):
    counts = Counter(loaded.quarantine["reason"])
    assert dict(counts) == {k: v for k, v in fx.PLANTED.items() if k not in fx.REPAIRS}
    assert loaded.repairs == {k: fx.PLANTED[k] for k in fx.REPAIRS}
    assert loaded.counts()["quarantine/bad_row"] == 3
    # the clean rows come through the defective tree unchanged
    kept = loaded.table.set_index("utt_id").loc[clean.table["utt_id"]].reset_index()
    compare = [c for c in kept.columns if c not in ("audio_path", "video_path")]
    pd.testing.assert_frame_equal(kept[compare], clean.table[compare])


# --- one test per defect ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utt_id", "reason", "detail"),
    [
        (utt("train", 0, 3), "missing_file", "3.mp4"),
        (utt("train", 1, 3), "corrupt_media", "cannot read media header"),
        (utt("dev", 0, 3), "no_audio_stream", "3.mp4"),
        (utt("test", 1, 3), "conflicting_duplicate", "2 rows disagree"),
        (utt("dev", 1, 3), "empty_transcript", "empty text"),
        (utt("train", 3, 3), "bad_row", "label 'abc'"),
        (utt("dev", 2, 3), "bad_row", "label '3.6'"),
        (utt("test", 2, 3), "bad_row", "mode 'validation'"),
    ],
)
def test_defect_is_quarantined(loaded, utt_id, reason, detail):
    entries = loaded.quarantine[loaded.quarantine["utt_id"] == utt_id]
    assert len(entries) == 1 and entries["reason"].iloc[0] == reason
    assert detail in entries["detail"].iloc[0] and entries["corpus"].iloc[0] == "mosi"
    assert utt_id not in set(loaded.table["utt_id"])
    # the other clips of the same video are intact
    video = utt_id.rsplit("_", 1)[0]
    assert set(loaded.table.loc[loaded.table["video_id"] == video, "clip_id"]) == {"1", "2"}


def test_mojibake_is_repaired(loaded):
    utt_id = utt("train", 2, 3)
    row = loaded.table.set_index("utt_id").loc[utt_id]
    assert row["text"] == fx.MOJIBAKE_FIXED and "â€" not in row["text"]
    assert loaded.repairs["mojibake"] == 1 and utt_id not in set(loaded.quarantine["utt_id"])
    assert row["sentiment"] == 0.4 and row["label"] == "non_negative"


def test_exact_duplicate_row_is_kept_once(loaded):
    utt_id = utt("test", 0, 3)
    assert (loaded.table["utt_id"] == utt_id).sum() == 1
    assert loaded.repairs["duplicate_row"] == 1 and utt_id not in set(loaded.quarantine["utt_id"])
    assert loaded.table.set_index("utt_id").loc[utt_id, "sentiment"] == -0.8


def test_mojibake_in_a_duplicated_row_counts_once(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    video = fx.VIDEOS["train"][0]
    line = f"{video},9,{fx.MOJIBAKE_TEXT},0.4,,,,Positive,train"
    append_rows(root, line, line)
    shutil.copy(root / "Raw" / video / "1.mp4", root / "Raw" / video / "9.mp4")
    result = mmsa.load(root)
    assert result.repairs == {"mojibake": 1, "duplicate_row": 1}
    assert result.table.set_index("utt_id").loc[f"{video}_9", "text"] == fx.MOJIBAKE_FIXED


def test_malformed_lines_are_bad_rows(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    too_many = 'aaaaaaaaaaa,4,"too, many",0.1,0.1,0.1,0.1,Neutral,train,surplus'
    append_rows(root, too_many, "bbbbbbbbbbb,2,short")
    result = mmsa.load(root)
    assert reasons(result) == {"aaaaaaaaaaa_4": "bad_row", "bbbbbbbbbbb_2": "bad_row"}
    assert "10 fields" in result.quarantine["detail"].iloc[0]
    assert len(result.table) == len(mmsa.load(trees["clean"]).table)


def test_clip_longer_than_max_overrun_is_quarantined(trees, clean):
    threshold = 0.65
    result = mmsa.load(trees["clean"], max_overrun_seconds=threshold)
    too_long = set(clean.table.loc[clean.table["duration"] > threshold, "utt_id"])
    assert 0 < len(too_long) < len(clean.table)
    assert reasons(result) == dict.fromkeys(too_long, "clip_too_long")
    assert "max_overrun_seconds=0.65" in result.quarantine["detail"].iloc[0]
    assert set(result.table["utt_id"]) == set(clean.table["utt_id"]) - too_long


# --- label maps --------------------------------------------------------------------------------------


def test_2class_is_negative_vs_non_negative(loaded):
    table = loaded.table
    assert ((table["sentiment"] < 0) == (table["label"] == "negative")).all()
    zeros = table[table["sentiment"] == 0.0]
    assert len(zeros) >= 9 and set(zeros["label"]) == {"non_negative"}
    assert set(table["label_id"]) == {0, 1}


def test_3class_keeps_exact_zero_neutral(trees):
    table = mmsa.load(trees["clean"], labels="3class").table
    score = table["sentiment"]
    expected = np.select([score < 0, score == 0], ["negative", "neutral"], "positive")
    assert (table["label"] == expected).all()
    assert (table["label_id"] == table["label"].map(("negative", "neutral", "positive").index)).all()


def test_7class_rounds_half_to_even_and_clips(trees):
    table = mmsa.load(trees["clean"], labels="7class").table.set_index("utt_id")
    expected = {  # score -> class, written out: MMSA's Acc-7 is np.round (half to even) after clipping
        -3.0: "strongly_negative", -2.6: "strongly_negative", -2.5: "negative", -2.4: "negative",
        -0.5: "neutral", -0.6: "weakly_negative", 0.0: "neutral", 0.2: "neutral", 0.5: "neutral",
        1.5: "positive", 2.5: "positive", 2.6: "strongly_positive", 3.0: "strongly_positive",
    }  # fmt: skip
    seen = set()
    for score, name in expected.items():
        rows = table[table["sentiment"] == score]
        assert len(rows), score
        assert set(rows["label"]) == {name}, score
        seen.add(name)
    classes = label_map("mosi", "7class").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert len(seen) == 6
    # clipping: out-of-range scores never reach the table (bad_row), the map itself clips them
    assert label_map("mosi", "7class").map(3.4) == "strongly_positive"
    assert label_map("mosi", "7class").map(-7.0) == "strongly_negative"


def test_bad_label_map_name(trees):
    with pytest.raises(ValueError, match=r"corpora\.mosi\.labels: '4class'"):
        mmsa.load(trees["clean"], labels="4class")
    with pytest.raises(ValueError, match=r"corpora\.mosei\.labels"):
        mmsa.load(trees["clean"], labels="sentiment", corpus="mosei")


def test_unknown_corpus_name(trees):
    with pytest.raises(ValueError, match=r"'iemocap'.*mosi.*mosei"):
        mmsa.load(trees["clean"], corpus="iemocap")


def test_mosei_labels_rows_mosei(trees):
    result = mmsa.load(trees["defects"], corpus="mosei", labels="3class")
    assert set(result.table["corpus"]) == {"mosei"} and set(result.quarantine["corpus"]) == {"mosei"}
    assert len(result.table) == len(mmsa.load(trees["defects"]).table)
    assert set(result.table["label"]) == {"negative", "neutral", "positive"}


# --- check_layout -------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(LayoutError, match=str(root)):
        mmsa.check_layout(root)
    with pytest.raises(LayoutError, match="MMSA"):
        mmsa.load(root)


def test_missing_label_csv(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    (root / "label.csv").unlink()
    with pytest.raises(LayoutError) as error:
        mmsa.load(root)
    assert f"{root / 'label.csv'}: not found" in str(error.value) and "video_id, clip_id" in str(error.value)


def test_missing_raw_folder(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    shutil.rmtree(root / "Raw")
    with pytest.raises(LayoutError, match=f"{root / 'Raw'}: not found"):
        mmsa.check_layout(root)


def test_other_layouts_are_rejected(trees, tmp_path):
    meld = tmp_path / "MELD.Raw"
    meld.mkdir()
    (meld / "train_sent_emo.csv").write_text("Sr No.,Utterance,Speaker,Emotion\n")
    with pytest.raises(LayoutError, match=f"{meld / 'label.csv'}: not found"):
        mmsa.check_layout(meld)
    # a label.csv of another format
    other = tmp_path / "other"
    (other / "Raw").mkdir(parents=True)
    (other / "label.csv").write_text("path,emotion\na.wav,ang\n")
    with pytest.raises(LayoutError, match=r"label\.csv: header lacks \['video_id'"):
        mmsa.check_layout(other)
    # pointed at the Raw/ subfolder: the message says where the root is
    with pytest.raises(LayoutError, match=f"point the corpus root at {trees['clean']}"):
        mmsa.check_layout(trees["clean"] / "Raw")


# --- parsing details ------------------------------------------------------------------------------------


def test_parsing_details(loaded):
    table = loaded.table.set_index("utt_id")
    # a YouTube id starting with "-" stays an id, clip ids stay strings
    row = table.loc["-3g5yACwYnA_1"]
    assert row["video_id"] == "-3g5yACwYnA" and row["clip_id"] == "1" and row["speaker"] == "-3g5yACwYnA"
    assert row["raw_label"] == "-3.0" and row["sentiment"] == -3.0 and row["annotation"] == "Negative"
    assert (row["label_T"], row["label_A"], row["label_V"]) == (-2.8, -3.0, -3.0)
    # mode valid -> dev, the official split
    assert set(table.loc[table["video_id"].isin(fx.VIDEOS["dev"]), "split"]) == {"dev"}
    assert set(table.loc[table["video_id"].isin(fx.VIDEOS["test"]), "split"]) == {"test"}
    # a quoted transcript with commas and quotes comes back exactly
    text, split, video, clip = fx.QUOTED_TEXT
    assert table.loc[utt(split, video, clip), "text"] == text
    # unimodal scores left empty (as in some MOSEI copies) are NaN, the row is kept
    empty = table.loc[utt(*fx.EMPTY_UNIMODAL)]
    assert all(math.isnan(empty[c]) for c in ("label_T", "label_A", "label_V")) and empty["sentiment"] == 1.2
    assert table[["label_T", "label_A", "label_V"]].isna().sum().tolist() == [1, 1, 1]


def test_transcript_like_na_stays_text_and_bad_unimodal_is_bad_row(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    video = fx.VIDEOS["train"][4]
    append_rows(root, f"{video},7,NA,1.0,,,,Positive,train", f"{video},8,fine,1.0,x,,,Positive,train")
    for clip in (7, 8):
        shutil.copy(root / "Raw" / video / "1.mp4", root / "Raw" / video / f"{clip}.mp4")
    result = mmsa.load(root)
    assert result.table.set_index("utt_id").loc[f"{video}_7", "text"] == "NA"
    assert reasons(result) == {f"{video}_8": "bad_row"}
    assert "label_T='x'" in result.quarantine["detail"].iloc[0]


def test_header_only_label_csv_gives_an_empty_typed_table(trees, tmp_path):
    root = copy_tree(trees, tmp_path)
    (root / "label.csv").write_text(",".join(fx.HEADER) + "\n")
    result = mmsa.load(root)
    assert result.table.empty and result.quarantine.empty
    assert list(result.table.columns) == [*schema.COLUMNS, *mmsa.EXTRA_COLUMNS]
    assert result.table["label_id"].dtype == np.int64 and result.table["sentiment"].dtype == np.float64
