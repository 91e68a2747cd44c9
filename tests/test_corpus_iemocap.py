"""IEMOCAP loader on a small tree in the real layout (tests/fixtures_iemocap.py)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer import media, schema
from mer.corpora import common, iemocap
from mer.corpora.labels import SHARED4, label_map
from tests import fixtures_iemocap as fx

DEFECT_ID = {defect: utt_id for utt_id, defect in fx.DEFECTS.items() if defect != "outside_map"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Built once, read only; tests that change the tree use ``fresh``."""
    return fx.build(tmp_path_factory.mktemp("iemocap"))


@pytest.fixture(scope="module")
def result(corpus) -> common.LoadResult:
    return iemocap.load(corpus)


@pytest.fixture
def fresh(tmp_path) -> Path:
    return fx.build(tmp_path)


def reasons(res: common.LoadResult) -> dict[str, str]:
    """utt_id -> quarantine reason."""
    return dict(zip(res.quarantine["utt_id"], res.quarantine["reason"], strict=True))


# ---------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------


def test_table_matches_the_contract(result):
    table = result.table
    assert list(table.columns) == [*schema.COLUMNS, *iemocap.EXTRA_COLUMNS]
    for column in ("utt_id", "corpus", "speaker", "session", "text", "label", "raw_label", "dialog"):
        assert table[column].map(type).eq(str).all(), column
    for column in ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration",
                   "video_start", "video_end"):  # fmt: skip
        assert table[column].dtype == np.float64, column
    assert table["label_id"].dtype == np.int64
    assert table["improvised"].dtype == bool
    assert table["utt_id"].is_unique and table["utt_id"].is_monotonic_increasing
    assert (table["corpus"] == "iemocap").all()
    assert table["split"].isna().all() and table["sentiment"].isna().all()
    classes = label_map("iemocap", "4class").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    for column in ("audio_path", "video_path"):
        assert table[column].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all(), column
    clean = fx.CLEAN_PER_SESSION * len(fx.SESSIONS)
    assert len(table) == clean + 2  # + the repaired mojibake and duplicate utterances


def test_planted_defects_are_counted(result):
    counts = result.counts()
    for name, n in fx.PLANTED.items():
        assert counts.get(f"quarantine/{name}", counts.get(f"repaired/{name}")) == n, name
    assert len(result.quarantine) == sum(n for k, n in fx.PLANTED.items() if k in common.QUARANTINE_REASONS)
    assert not set(result.quarantine["utt_id"]) & set(result.table["utt_id"])


def test_clean_tree_has_no_defects(tmp_path):
    res = iemocap.load(fx.build(tmp_path, defects=False))
    assert res.quarantine.empty and res.repairs == {}
    assert len(res.table) == fx.CLEAN_PER_SESSION * len(fx.SESSIONS)


def test_every_session_has_every_class_from_both_speakers(result):
    """Any leave-one-session-out fold then has every class in train, dev and test."""
    table = result.table
    classes = set(label_map("iemocap", "4class").classes)
    for session, rows in table.groupby("session"):
        assert rows["label"].value_counts().min() >= 3 and set(rows["label"]) == classes, session
        for speaker, spoken in rows.groupby("speaker"):
            assert set(spoken["label"]) == classes, speaker
    assert sorted(table["session"].unique()) == [f"Ses0{n}" for n in fx.SESSIONS]


# ---------------------------------------------------------------------------------------------
# Defects
# ---------------------------------------------------------------------------------------------


def test_missing_wav_is_quarantined(result):
    utt_id = DEFECT_ID["missing_wav"]
    row = result.quarantine.set_index("utt_id").loc[utt_id]
    assert row["reason"] == "missing_file" and row["detail"].endswith(f"{utt_id}.wav")
    assert utt_id not in set(result.table["utt_id"])


def test_corrupt_wav_is_quarantined(result):
    utt_id = DEFECT_ID["corrupt_wav"]
    assert reasons(result)[utt_id] == "corrupt_media"
    assert utt_id not in set(result.table["utt_id"])
    # the other utterances of the same dialog are intact
    dialog = utt_id.rsplit("_", 1)[0]
    assert (result.table["dialog"] == dialog).sum() == fx.CLEAN_PER_SESSION // 2


def test_mojibake_is_repaired(result):
    row = result.table.set_index("utt_id").loc[DEFECT_ID["mojibake"]]
    assert row["text"] == fx.MOJIBAKE_REPAIRED
    assert result.repairs["mojibake"] == 1
    assert not result.table["text"].str.contains("â€").any()


def test_exact_duplicate_summary_line_is_kept_once(result):
    utt_id = DEFECT_ID["duplicate_summary"]
    assert result.repairs["duplicate_row"] == 1
    assert (result.table["utt_id"] == utt_id).sum() == 1
    assert utt_id not in reasons(result)


def test_disagreeing_duplicates_are_quarantined(fresh):
    path = fresh / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    with path.open("a", encoding="utf-8") as f:  # same utterance, another label
        f.write("[0.1000 - 0.6000]\tSes01F_impro01_F000\tsad\t[1.8000, 2.0000, 2.0000]\n")
    res = iemocap.load(fresh)
    assert reasons(res)["Ses01F_impro01_F000"] == "conflicting_duplicate"
    assert "Ses01F_impro01_F000" not in set(res.table["utt_id"])


def test_labels_outside_the_4class_map_are_quarantined(result):
    outside = result.quarantine[result.quarantine["reason"] == "label_outside_map"]
    assert sorted(outside["detail"]) == sorted(fx.OUTSIDE_4CLASS)
    assert not result.table["raw_label"].isin(list(fx.OUTSIDE_4CLASS)).any()


def test_utterance_without_transcript_line(result):
    assert reasons(result)[DEFECT_ID["no_transcript"]] == "empty_transcript"


def test_missing_transcript_file_quarantines_its_dialog(fresh):
    (fresh / "Session3" / "dialog" / "transcriptions" / "Ses03M_script01_1.txt").unlink()
    res = iemocap.load(fresh)
    empty = res.quarantine.loc[res.quarantine["reason"] == "empty_transcript", "utt_id"]
    assert {u for u in empty if u.startswith("Ses03M_script01_1_")} == {
        u.utt_id for u in fx.plan()["Ses03M_script01_1"] if u.raw_label not in fx.OUTSIDE_4CLASS
    }


def test_garbled_summary_lines_are_bad_rows(result, corpus):
    bad = result.quarantine[result.quarantine["reason"] == "bad_row"].set_index("utt_id")
    # the id is readable: quarantined under it
    assert "unparsable times" in bad.loc[DEFECT_ID["garbled_times"], "detail"]
    # the id is lost: quarantined under <file>:<line>, which points at the garbled line
    located = [u for u in bad.index if ".txt:" in u]
    assert len(located) == 1
    file, line = located[0].rsplit(":", 1)
    assert file == "Session5/dialog/EmoEvaluation/Ses05M_script01_1.txt"
    garbled = (corpus / file).read_text(encoding="utf-8").splitlines()[int(line) - 1]
    assert garbled.startswith("[") and "\t" not in garbled
    assert DEFECT_ID["garbled_line"] not in set(result.table["utt_id"])


def test_macos_resource_forks_are_ignored(fresh):
    fork = fresh / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt"
    fork.write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork [1.0 - 2.0]\tjunk")
    res = iemocap.load(fresh)
    assert res.counts() == fx_counts()
    assert not res.quarantine["utt_id"].str.contains("._Ses01F").any()


# ---------------------------------------------------------------------------------------------
# Video windows
# ---------------------------------------------------------------------------------------------


def test_video_path_and_window_columns(result, corpus):
    table = result.table
    expected = table.apply(
        lambda r: str(corpus / f"Session{int(r['session'][3:])}" / "dialog/avi/DivX" / f"{r['dialog']}.avi"),
        axis=1,
    )
    assert (table["video_path"] == expected).all()
    assert (table["video_start"] == table["start"]).all() and (table["video_end"] == table["end"]).all()
    # each dialog avi covers its windows, and the extract code can cut one out
    for path, rows in table.groupby("video_path"):
        assert common.probe_media(Path(path)).duration >= rows["video_end"].max()
    row = table.iloc[-1]
    frames = media.read_video_frames(row["video_path"], 2, start=row["video_start"], end=row["video_end"])
    assert frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_unusable_avi_is_not_quarantined(fresh, caplog, damage):
    avi = fresh / "Session2" / "dialog" / "avi" / "DivX" / "Ses02F_impro01.avi"
    if damage == "missing":
        avi.unlink()
    else:
        avi.write_bytes(b"not a video" * 50)
    with caplog.at_level(logging.WARNING, logger="mer.corpora.iemocap"):
        res = iemocap.load(fresh)
    assert res.counts() == fx_counts()
    rows = res.table[res.table["dialog"] == "Ses02F_impro01"]
    assert len(rows) and rows["video_path"].isna().all()
    assert rows[["video_start", "video_end"]].isna().all().all()
    others = res.table[res.table["dialog"] != "Ses02F_impro01"]
    assert others["video_path"].notna().all()
    assert sum("Ses02F_impro01.avi" in r.getMessage() for r in caplog.records) == 1  # once per dialog


def fx_counts() -> dict[str, int]:
    counts = {"utterances": fx.CLEAN_PER_SESSION * len(fx.SESSIONS) + 2}
    for name, n in fx.PLANTED.items():
        counts[f"quarantine/{name}" if name in common.QUARANTINE_REASONS else f"repaired/{name}"] = n
    return counts


# ---------------------------------------------------------------------------------------------
# Label maps
# ---------------------------------------------------------------------------------------------


def test_6class_map_keeps_frustration(corpus, result):
    res = iemocap.load(corpus, labels="6class")
    classes = label_map("iemocap", "6class").classes
    table = res.table
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert (table["raw_label"] == "fru").sum() == fx.OUTSIDE_4CLASS["fru"]
    assert (table.loc[table["raw_label"] == "fru", "label"] == "frustrated").all()
    outside = res.quarantine.loc[res.quarantine["reason"] == "label_outside_map", "detail"]
    assert sorted(outside) == sorted(set(fx.OUTSIDE_4CLASS) - {"fru"})
    # hap and exc are separate classes here, merged under 4class
    assert set(table.loc[table["raw_label"] == "exc", "label"]) == {"excited"}
    assert set(table.loc[table["raw_label"] == "hap", "label"]) == {"happiness"}
    assert set(result.table.loc[result.table["raw_label"] == "exc", "label"]) == {"happiness"}
    assert len(table) == len(result.table) + fx.OUTSIDE_4CLASS["fru"]


def test_shared4_map(corpus, result):
    res = iemocap.load(corpus, labels="shared4")
    assert set(res.table["label"]) == set(SHARED4)
    assert (res.table["label_id"] == res.table["label"].map(SHARED4.index)).all()
    assert res.table["utt_id"].tolist() == result.table["utt_id"].tolist()


def test_bad_label_map_name(corpus):
    with pytest.raises(ValueError, match=r"corpora\.iemocap\.labels.*7class"):
        iemocap.load(corpus, labels="7class")


# ---------------------------------------------------------------------------------------------
# Layout errors
# ---------------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    with pytest.raises(common.LayoutError, match=str(root)):
        iemocap.load(root)


def test_parent_folder_is_named(corpus):
    with pytest.raises(common.LayoutError, match=f"pass {corpus}"):
        iemocap.check_layout(corpus.parent)


@pytest.mark.parametrize(
    "removed, expected",
    [
        ("Session4", "IEMOCAP session folder"),
        ("Session2/dialog/EmoEvaluation", "emotion evaluation"),
        ("Session5/dialog/transcriptions", "transcripts"),
        ("Session1/sentences/wav", "utterance wavs"),
    ],
)
def test_missing_expected_path(fresh, removed, expected):
    shutil.rmtree(fresh / removed)
    with pytest.raises(common.LayoutError, match=f"{fresh / removed}: not found; expected .*{expected}"):
        iemocap.check_layout(fresh)


def test_empty_evaluation_folder(fresh):
    folder = fresh / "Session3" / "dialog" / "EmoEvaluation"
    for path in folder.glob("*.txt"):
        path.unlink()
    with pytest.raises(common.LayoutError, match=f"{folder}: no <dialog>.txt"):
        iemocap.check_layout(fresh)


def test_another_corpus_layout(tmp_path):
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    (root / "train_sent_emo.csv").write_text("Sr No.,Utterance\n")
    with pytest.raises(common.LayoutError, match=f"{root / 'Session1'}: not found"):
        iemocap.load(root)


# ---------------------------------------------------------------------------------------------
# Parsing details
# ---------------------------------------------------------------------------------------------


def test_speaker_session_dialog_and_values(result):
    table = result.table.set_index("utt_id")
    # the speaking actor is the letter after the last underscore, not the F/M in "Ses02M"
    row = table.loc["Ses02M_script01_1_F000"]
    assert (row["speaker"], row["session"], row["dialog"], row["improvised"]) == (
        "Ses02_F", "Ses02", "Ses02M_script01_1", False,
    )  # fmt: skip
    row = table.loc["Ses03F_impro01_M001"]
    assert (row["speaker"], row["dialog"], row["improvised"]) == ("Ses03_M", "Ses03F_impro01", True)
    assert sorted(table["speaker"].unique()) == [f"Ses0{n}_{g}" for n in fx.SESSIONS for g in "FM"]
    # times, V/A/D and text as written in the fixture (noise ids never become rows)
    planned = {u.utt_id: u for utts in fx.plan().values() for u in utts}
    for utt_id, row in table.iterrows():
        utt = planned[utt_id]
        assert (row["start"], row["end"]) == (utt.start, utt.end)
        assert row["duration"] == pytest.approx(fx.LENGTH)
        assert (row["valence"], row["arousal"], row["dominance"]) == utt.vad
        assert row["raw_label"] == utt.raw_label
        if utt.defect != "mojibake":
            assert row["text"] == utt.text
    assert not table.index.str.contains("XX0").any()


@pytest.mark.parametrize(
    "line, utt_id",
    [
        ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000]", "Ses01F_impro01_F000"),
        ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[a, 2.5000, 2.5000]", "Ses01F_impro01_F000"),
        ("[8.2901 - 6.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]", "Ses01F_impro01_F000"),
        ("[6.2901 - 8.2357]\tSes01F_impro01\tneu\t[2.5000, 2.5000, 2.5000]", None),
        ("[6.2901 - 8.2357] Ses01F_impro01_F000 neu [2.5000, 2.5000, 2.5000]", "Ses01F_impro01_F000"),
        ("[6.29", None),
    ],
)
def test_bad_summary_lines(line, utt_id):
    with pytest.raises(iemocap.SummaryLineError) as info:
        iemocap.parse_summary_line(line)
    assert info.value.utt_id == utt_id


def test_summary_line_with_real_spacing():
    parsed = iemocap.parse_summary_line(
        "[155.0000 - 158.5000]\tSes05M_script01_1b_F012\texc\t[4.0, 3.5, 2.5]  "
    )
    assert parsed == ("Ses05M_script01_1b_F012", 155.0, 158.5, "exc", (4.0, 3.5, 2.5))
    assert iemocap.speaker_of("Ses05M_script01_1b_F012") == "Ses05_F"
    with pytest.raises(ValueError, match="not an IEMOCAP utterance id"):
        iemocap.speaker_of("Ses05M_script01_1b")


def test_load_accepts_str_root_and_returns_nan_free_values(corpus):
    table = iemocap.load(str(corpus)).table
    assert not table[["valence", "arousal", "dominance", "start", "end", "duration"]].isna().any().any()
    assert pd.api.types.is_bool_dtype(table["improvised"])
