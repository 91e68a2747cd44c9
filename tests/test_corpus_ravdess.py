"""RAVDESS loader on a fixture tree in the real layout (tests/fixtures_ravdess.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mer.corpora import ravdess
from mer.corpora.common import LayoutError
from mer.corpora.labels import SHARED4, label_map
from mer.schema import COLUMNS
from tests import fixtures_ravdess as fixture
from tests.corpus_media import write_corrupt, write_wav

EIGHT = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return fixture.build(tmp_path_factory.mktemp("ravdess"))


@pytest.fixture(scope="module")
def loaded(corpus):
    return ravdess.load(corpus)


@pytest.fixture
def clean_corpus(tmp_path) -> Path:
    """A defect-free tree of one's own, for tests that change files."""
    return fixture.build(tmp_path, defects=False)


def reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine["utt_id"], result.quarantine["reason"], strict=True))


def details(result) -> dict[str, str]:
    return dict(zip(result.quarantine["utt_id"], result.quarantine["detail"], strict=True))


def stem(clip: str) -> str:
    return clip.split("/")[1]


def test_table_matches_contract(loaded):
    table = loaded.table
    assert list(table.columns) == [*COLUMNS, *ravdess.EXTRA_COLUMNS]
    assert table["utt_id"].is_unique and table["utt_id"].tolist() == sorted(table["utt_id"])
    assert sorted(table["utt_id"]) == sorted(stem(c) for c in fixture.clean_clips())
    text_columns = ("utt_id", "corpus", "speaker", "session", "text", "label", "raw_label", "gender",
                    "intensity", "statement", "vocal_channel")  # fmt: skip
    for column in text_columns:
        assert pd.api.types.is_string_dtype(table[column]), column
    for column in ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration"):
        assert table[column].dtype == "float64", column
    assert table["label_id"].dtype == "int64" and table["repetition"].dtype == "int64"
    assert set(table["corpus"]) == {"ravdess"}
    assert table["split"].map(lambda s: s is None).all()
    classes = label_map("ravdess", "8class").classes
    assert classes == EIGHT
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert (table["raw_label"].astype(int) - 1 == table["label_id"]).all()
    for path in table["audio_path"]:
        assert Path(path).is_absolute() and Path(path).is_file(), path
    assert table["video_path"].map(lambda p: p is None or Path(p).is_file()).all()
    assert (table["start"] == 0).all() and (table["end"] == table["duration"]).all()
    assert table["duration"].between(0.39, 0.81).all()


def test_every_class_for_every_actor(loaded):
    """What makes any actor-disjoint split hold all 8 classes (>= 3 clips per actor)."""
    counts = loaded.table.groupby(["speaker", "label"]).size().unstack(fill_value=0)
    assert counts.shape == (len(fixture.ACTORS), 8) and (counts >= fixture.CLIPS_PER_CLASS).all().all()


def test_planted_counts(loaded):
    assert loaded.quarantine["reason"].value_counts().to_dict() == fixture.PLANTED
    assert loaded.repairs == {}
    assert not set(loaded.quarantine["utt_id"]) & set(loaded.table["utt_id"])


def test_corrupt_wav_quarantined(loaded):
    utt = stem(fixture.CORRUPT_WAV)
    assert reasons(loaded)[utt] == "corrupt_media" and "cannot read media header" in details(loaded)[utt]


def test_empty_wav_quarantined(loaded):
    utt = stem(fixture.EMPTY_WAV)
    assert reasons(loaded)[utt] == "corrupt_media" and "0 bytes" in details(loaded)[utt]


def test_unparsable_or_misplaced_names_are_bad_rows(loaded):
    bad = {utt: d for utt, d in details(loaded).items() if reasons(loaded)[utt] == "bad_row"}
    assert set(bad) == {stem(c) for c in fixture.BAD_NAMES}
    assert "6 fields, expected 7" in bad["03-01-05-01-02-05"]
    assert "actor 05 in the name but the file is in Actor_06/" in bad["03-01-03-01-02-02-05"]
    assert "unknown intensity code '03'" in bad["03-01-03-03-01-02-06"]


def test_emotion_outside_map(loaded):
    utt = stem(fixture.OUTSIDE_MAP)
    assert reasons(loaded)[utt] == "label_outside_map" and details(loaded)[utt] == "09"


def test_clean_build_has_no_defects(clean_corpus):
    result = ravdess.load(clean_corpus)
    assert result.quarantine.empty and len(result.table) == len(fixture.clean_clips())


def test_shared4_leaves_calm_and_others_out(corpus):
    result = ravdess.load(corpus, labels="shared4")
    table = result.table
    assert set(table["label"]) == set(SHARED4)
    assert (table["label_id"] == table["label"].map(SHARED4.index)).all()
    assert set(table["raw_label"]) == {"01", "03", "04", "05"}
    outside = result.quarantine[result.quarantine["reason"] == "label_outside_map"]
    n_per_class = len(fixture.ACTORS) * fixture.CLIPS_PER_CLASS
    expected = dict.fromkeys(("02", "06", "07", "08"), n_per_class) | {"09": 1}
    assert outside["detail"].value_counts().to_dict() == expected
    assert (result.quarantine["reason"] == "corrupt_media").sum() == fixture.PLANTED["corrupt_media"]
    assert (result.quarantine["reason"] == "bad_row").sum() == fixture.PLANTED["bad_row"]


def test_bad_label_map_name(corpus):
    with pytest.raises(ValueError, match=r"corpora\.ravdess\.labels: '6class'"):
        ravdess.load(corpus, labels="6class")


def test_codes_become_columns(loaded):
    table = loaded.table.set_index("utt_id")
    row = table.loc["03-01-05-02-02-01-01"]
    assert (row["speaker"], row["session"], row["gender"], row["label"], row["intensity"]) == (
        "Actor_01", "Actor_01", "male", "angry", "strong",
    )  # fmt: skip
    assert (row["statement"], row["repetition"], row["vocal_channel"], row["text"]) == (
        "02", 1, "speech", "Dogs are sitting by the door",
    )  # fmt: skip
    row = table.loc["03-01-01-01-01-02-04"]
    assert (row["speaker"], row["gender"], row["intensity"], row["repetition"], row["text"]) == (
        "Actor_04", "female", "normal", 2, "Kids are talking by the door",
    )  # fmt: skip
    assert set(table.loc[table["label"] == "neutral", "intensity"]) == {"normal"}
    odd_actor = table["speaker"].str[-2:].astype(int) % 2 == 1
    assert (table["gender"] == odd_actor.map({True: "male", False: "female"})).all()


def test_parse_name_fields():
    assert ravdess.parse_name("03-02-06-02-01-02-23") == {
        "modality": "03", "vocal_channel": "02", "emotion": "06", "intensity": "02", "statement": "01",
        "repetition": "02", "actor": "23",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown statement code '03'"):
        ravdess.parse_name("03-01-06-02-03-02-23")
    with pytest.raises(ValueError, match="actor '2x' is not a two-digit code"):
        ravdess.parse_name("03-01-06-02-01-02-2x")


def test_song_and_wrong_modality(clean_corpus):
    write_wav(clean_corpus / "Actor_02" / "03-02-04-02-01-02-02.wav")  # a song take
    write_wav(clean_corpus / "Actor_02" / "01-01-04-02-01-02-02.wav")  # a wav named as the AV release
    result = ravdess.load(clean_corpus)
    assert result.table.set_index("utt_id").loc["03-02-04-02-01-02-02", "vocal_channel"] == "song"
    assert reasons(result) == {"01-01-04-02-01-02-02": "bad_row"}
    assert "modality 01 in a .wav" in details(result)["01-01-04-02-01-02-02"]


def test_video_path_from_the_video_release(loaded, corpus):
    table = loaded.table.set_index("utt_id")
    with_video = table.loc[table["video_path"].notna(), "video_path"].to_dict()
    assert with_video == {
        # both 01 (full AV) and 02 (video-only): the full-AV one
        "03-01-01-01-01-01-01": str(corpus / "Actor_01" / "01-01-01-01-01-01-01.mp4"),
        "03-01-05-02-02-01-01": str(corpus / "Actor_01" / "01-01-05-02-02-01-01.mp4"),
        "03-01-03-01-01-01-02": str(corpus / "Actor_02" / "02-01-03-01-01-01-02.mp4"),
    }
    assert table.loc[table["video_path"].isna(), "video_path"].map(lambda p: p is None).all()
    # the mp4s are companions, not utterances
    assert not any(u.startswith(("01-", "02-")) for u in table.index)


def test_corrupt_mp4_quarantined(clean_corpus):
    mp4 = clean_corpus / "Actor_01" / "01-01-05-02-02-01-01.mp4"
    write_corrupt(mp4)
    result = ravdess.load(clean_corpus)
    assert reasons(result) == {"03-01-05-02-02-01-01": "corrupt_media"}
    assert str(mp4) in details(result)["03-01-05-02-02-01-01"]


def test_layout_missing_root(tmp_path):
    with pytest.raises(LayoutError, match=re.escape(f"{tmp_path / 'nope'}: not found")):
        ravdess.load(tmp_path / "nope")


def test_layout_without_actor_folders(tmp_path):
    empty = tmp_path / "Audio_Speech_Actors_01-24"
    empty.mkdir()
    with pytest.raises(
        LayoutError, match=re.escape(f"{empty / 'Actor_01'}: not found; expected the RAVDESS")
    ):
        ravdess.check_layout(empty)


def test_layout_parent_or_actor_folder(clean_corpus):
    parent = clean_corpus.parent
    with pytest.raises(
        LayoutError,
        match=re.escape(f"holds Audio_Speech_Actors_01-24/: point corpora.ravdess.root at {clean_corpus}"),
    ):
        ravdess.check_layout(parent)
    with pytest.raises(
        LayoutError, match=re.escape(f"{clean_corpus / 'Actor_03'}: this is one actor's folder")
    ):
        ravdess.check_layout(clean_corpus / "Actor_03")


def test_layout_another_corpus(tmp_path):
    cremad_root = tmp_path / "CREMA-D"
    write_wav(cremad_root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    (cremad_root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n")
    with pytest.raises(LayoutError, match=re.escape(f"{cremad_root / 'Actor_01'}: not found")):
        ravdess.check_layout(cremad_root)
