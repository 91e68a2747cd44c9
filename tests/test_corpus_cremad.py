"""CREMA-D loader on a fixture tree in the real layout (tests/fixtures_cremad.py)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mer.corpora import cremad
from mer.corpora.common import LayoutError
from mer.corpora.labels import SHARED4, label_map
from mer.schema import COLUMNS
from tests import fixtures_cremad as fixture
from tests.corpus_media import write_corrupt

# the 12 sentences as /work/shared/corpora.md gives them
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return fixture.build(tmp_path_factory.mktemp("cremad"))


@pytest.fixture(scope="module")
def loaded(corpus):
    return cremad.load(corpus)


@pytest.fixture
def clean_corpus(tmp_path) -> Path:
    """A defect-free tree of one's own, for tests that change files."""
    return fixture.build(tmp_path, defects=False)


def reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine["utt_id"], result.quarantine["reason"], strict=True))


def details(result) -> dict[str, str]:
    return dict(zip(result.quarantine["utt_id"], result.quarantine["detail"], strict=True))


def test_table_matches_contract(loaded):
    table = loaded.table
    assert list(table.columns) == [*COLUMNS, *cremad.EXTRA_COLUMNS]
    assert table["utt_id"].is_unique and table["utt_id"].tolist() == sorted(table["utt_id"])
    assert len(table) == len(fixture.clean_clips()) + len(fixture.UNLISTED_CLIPS)
    for column in ("utt_id", "corpus", "speaker", "session", "text", "label", "raw_label", "sentence_code"):
        assert pd.api.types.is_string_dtype(table[column]), column
    for column in ("valence", "arousal", "dominance", "sentiment", "start", "end", "duration", "age"):
        assert table[column].dtype == "float64", column
    assert table["label_id"].dtype == "int64"
    assert set(table["corpus"]) == {"cremad"}
    assert table["split"].map(lambda s: s is None).all()
    classes = label_map("cremad", "6class").classes
    assert (table["label_id"] == table["label"].map(classes.index)).all()
    assert (table["speaker"] == table["utt_id"].str[:4]).all() and (
        table["session"] == table["speaker"]
    ).all()
    assert table[["valence", "arousal", "dominance", "sentiment"]].isna().all().all()
    for path in table["audio_path"]:
        assert Path(path).is_absolute() and Path(path).is_file(), path
    assert table["video_path"].map(lambda p: p is None or Path(p).is_file()).all()
    # fixture clips are 0.4-0.8 s; the duration comes from the wav header
    assert (table["start"] == 0).all() and (table["end"] == table["duration"]).all()
    assert table["duration"].between(0.39, 0.81).all()


def test_every_class_for_every_actor(loaded):
    """What makes any actor-disjoint split hold every class (>= 3 clips per actor)."""
    table = loaded.table[loaded.table["speaker"].isin(fixture.ACTORS)]
    counts = table.groupby(["speaker", "label"]).size().unstack(fill_value=0)
    assert counts.shape == (len(fixture.ACTORS), 6) and (counts >= fixture.CLIPS_PER_CLASS).all().all()


def test_planted_counts(loaded):
    counts = loaded.quarantine["reason"].value_counts().to_dict()
    assert counts == {k: v for k, v in fixture.PLANTED.items() if k != "missing_demographics"}
    assert loaded.repairs == {"missing_demographics": fixture.PLANTED["missing_demographics"]}
    assert not set(loaded.quarantine["utt_id"]) & set(loaded.table["utt_id"])


def test_corrupt_wav_quarantined(loaded):
    assert reasons(loaded)[fixture.CORRUPT_WAV] == "corrupt_media"
    assert "cannot read media header" in details(loaded)[fixture.CORRUPT_WAV]


def test_zero_byte_wav_quarantined(loaded):
    assert reasons(loaded)[fixture.EMPTY_WAV] == "corrupt_media"
    assert "0 bytes" in details(loaded)[fixture.EMPTY_WAV]


def test_unparsable_names_are_bad_rows(loaded):
    bad = {utt: d for utt, d in details(loaded).items() if reasons(loaded)[utt] == "bad_row"}
    assert set(bad) == set(fixture.BAD_NAMES)
    assert "3 fields" in bad["1003_DFA_ANG"]
    assert "unknown sentence code 'ABC'" in bad["1004_ABC_HAP_XX"]
    assert "unknown level 'ZZ'" in bad["1004_IEO_HAP_ZZ"]


def test_emotion_outside_map(loaded):
    assert reasons(loaded)[fixture.OUTSIDE_MAP] == "label_outside_map"
    assert details(loaded)[fixture.OUTSIDE_MAP] == "XXX"


def test_actor_missing_from_demographics_is_kept(loaded):
    table = loaded.table.set_index("utt_id")
    unlisted = table.loc[list(fixture.UNLISTED_CLIPS)]
    assert unlisted["age"].isna().all()
    assert unlisted[["sex", "race", "ethnicity"]].map(lambda v: v is None).all().all()
    assert loaded.repairs["missing_demographics"] == len(fixture.UNLISTED_CLIPS)
    # everyone else has the CSV's values joined
    listed = table[table["speaker"] != fixture.UNLISTED_ACTOR]
    for actor, (age, sex, race, ethnicity) in fixture.DEMOGRAPHICS.items():
        rows = listed[listed["speaker"] == actor]
        assert len(rows) == 6 * fixture.CLIPS_PER_CLASS
        assert (rows["age"] == float(age)).all() and set(rows["sex"]) == {sex}
        assert set(rows["race"]) == {race} and set(rows["ethnicity"]) == {ethnicity}


def test_clean_build_has_no_defects(clean_corpus):
    result = cremad.load(clean_corpus)
    assert result.quarantine.empty and result.repairs == {}
    assert len(result.table) == len(fixture.clean_clips())


def test_sentence_codes_give_the_exact_transcripts(loaded):
    assert cremad.SENTENCES == SENTENCES
    table = loaded.table
    assert (table["text"] == table["sentence_code"].map(SENTENCES)).all()
    assert set(table["sentence_code"]) == set(SENTENCES)
    row = table.set_index("utt_id").loc["1001_IEO_ANG_LO"]
    assert (row["text"], row["raw_label"], row["intensity"], row["label"]) == (
        "It's eleven o'clock", "ANG", "LO", "anger",
    )  # fmt: skip
    assert set(table["intensity"]) == {"LO", "MD", "HI", "XX"}
    assert cremad.parse_name("1091_WSI_SAD_HI") == {
        "actor": "1091",
        "sentence": "WSI",
        "emotion": "SAD",
        "level": "HI",
    }
    with pytest.raises(ValueError, match="actor id 'A001'"):
        cremad.parse_name("A001_WSI_SAD_HI")


def test_video_path_is_the_flv_when_there_is_one(loaded):
    table = loaded.table
    with_video = table[table["video_path"].notna()]
    assert sorted(with_video["utt_id"]) == sorted(
        s for s in fixture.clean_clips() if s.startswith(f"{fixture.VIDEO_ACTOR}_IEO_")
    )
    assert all(p == str(Path(a).parent.parent / "VideoFlash" / (Path(a).stem + ".flv"))
               for p, a in zip(with_video["video_path"], with_video["audio_path"], strict=True))  # fmt: skip
    assert table.loc[table["video_path"].isna(), "video_path"].map(lambda p: p is None).all()


def test_missing_flv_or_video_folder_is_not_a_defect(clean_corpus):
    flv = next((clean_corpus / "VideoFlash").glob("*.flv"))
    flv.unlink()
    result = cremad.load(clean_corpus)
    assert result.quarantine.empty
    assert result.table.set_index("utt_id").loc[flv.stem, "video_path"] is None
    shutil.rmtree(clean_corpus / "VideoFlash")
    result = cremad.load(clean_corpus)
    assert result.quarantine.empty and result.table["video_path"].isna().all()


def test_corrupt_flv_quarantined(clean_corpus):
    flv = next((clean_corpus / "VideoFlash").glob("*.flv"))
    write_corrupt(flv)
    result = cremad.load(clean_corpus)
    assert reasons(result) == {flv.stem: "corrupt_media"} and str(flv) in details(result)[flv.stem]


def test_shared4_leaves_disgust_and_fear_out(corpus):
    result = cremad.load(corpus, labels="shared4")
    table = result.table
    assert set(table["label"]) == set(SHARED4) and set(table["raw_label"]) == {"ANG", "HAP", "NEU", "SAD"}
    assert (table["label_id"] == table["label"].map(SHARED4.index)).all()
    outside = result.quarantine[result.quarantine["reason"] == "label_outside_map"]
    n_per_class = len(fixture.ACTORS) * fixture.CLIPS_PER_CLASS
    assert len(outside) == 2 * n_per_class + fixture.PLANTED["label_outside_map"]
    assert outside["detail"].value_counts().to_dict() == {"DIS": n_per_class, "FEA": n_per_class, "XXX": 1}
    # the other defects are counted the same under both maps
    assert (result.quarantine["reason"] == "corrupt_media").sum() == fixture.PLANTED["corrupt_media"]
    assert (result.quarantine["reason"] == "bad_row").sum() == fixture.PLANTED["bad_row"]


def test_bad_label_map_name(corpus):
    with pytest.raises(ValueError, match=r"corpora\.cremad\.labels: '4class'"):
        cremad.load(corpus, labels="4class")


def test_layout_missing_root(tmp_path):
    with pytest.raises(LayoutError, match=re.escape(f"{tmp_path / 'nope'}: not found")):
        cremad.check_layout(tmp_path / "nope")


def test_layout_missing_audio_folder(clean_corpus):
    shutil.rmtree(clean_corpus / "AudioWAV")
    with pytest.raises(
        LayoutError,
        match=re.escape(f"{clean_corpus / 'AudioWAV'}: not found; expected the CREMA-D AudioWAV/"),
    ):
        cremad.load(clean_corpus)


def test_layout_missing_demographics(clean_corpus):
    (clean_corpus / "VideoDemographics.csv").unlink()
    with pytest.raises(LayoutError, match=re.escape(f"{clean_corpus / 'VideoDemographics.csv'}: not found")):
        cremad.check_layout(clean_corpus)


def test_layout_demographics_without_columns(clean_corpus):
    (clean_corpus / "VideoDemographics.csv").write_text("ActorID,Age\n1001,51\n")
    with pytest.raises(LayoutError, match=r"VideoDemographics.csv: columns \['Sex', 'Race', 'Ethnicity'\]"):
        cremad.check_layout(clean_corpus)


def test_layout_audio_folder_itself_or_another_corpus(clean_corpus, tmp_path):
    with pytest.raises(
        LayoutError, match=r"AudioWAV/ folder itself; point corpora\.cremad\.root at its parent"
    ):
        cremad.check_layout(clean_corpus / "AudioWAV")
    meld = tmp_path / "MELD.Raw"
    meld.mkdir()
    (meld / "train_sent_emo.csv").write_text("Sr No.,Utterance\n")
    with pytest.raises(LayoutError, match=re.escape(f"{meld / 'AudioWAV'}: not found")):
        cremad.check_layout(meld)


def test_layout_git_lfs_pointers(clean_corpus):
    first = next((clean_corpus / "AudioWAV").glob("*.wav"))
    first.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 52524\n")
    with pytest.raises(
        LayoutError, match=re.escape(f"{first}: a Git LFS pointer, not audio; run `git lfs pull`")
    ):
        cremad.check_layout(clean_corpus)


def test_relative_root_gives_absolute_paths(clean_corpus, monkeypatch):
    monkeypatch.chdir(clean_corpus.parent)
    table = cremad.load(Path(clean_corpus.name)).table
    assert table["audio_path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert table["video_path"].dropna().map(lambda p: Path(p).is_absolute()).all()


def test_demographics_age_is_float_and_bad_age_is_nan(clean_corpus):
    csv = clean_corpus / "VideoDemographics.csv"
    csv.write_text(csv.read_text().replace("1002,21,", "1002,unknown,"))
    result = cremad.load(clean_corpus)
    ages = result.table.groupby("speaker")["age"].first()
    assert math.isnan(ages["1002"]) and ages["1001"] == 51.0
    assert result.repairs == {}
