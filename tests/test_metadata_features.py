"""Metadata validation, feature shards, extraction with quarantine, evaluation report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import features, schema
from mer.corpora import synthetic
from mer.data import MultimodalData
from mer.evaluate import gate_analysis
from mer.extract import extract_modality
from mer.files import write_json
from mer.params import ExtractParams, SyntheticParams

TINY = SyntheticParams(train_speakers=2, dev_speakers=1, test_speakers=1, utterances_per_speaker=4,
                       target_utterances_per_speaker=4, video_frames=4, video_size=32,
                       min_seconds=1.0, max_seconds=1.2)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synthetic.generate(TINY, "source", root)
    return synthetic.load(root, "synthetic_source")


def test_synthetic_table_validates_and_roundtrips(corpus, tmp_path):
    schema.validate(corpus, "tiny")
    path = schema.write(corpus, tmp_path / "m.parquet")
    back = schema.read(path)
    assert list(back.columns[: len(schema.COLUMNS)]) == list(schema.COLUMNS)
    assert back["utt_id"].tolist() == corpus["utt_id"].tolist()


def test_validation_names_duplicates_leaks_and_missing_files(corpus):
    duplicated = pd.concat([corpus, corpus.iloc[:1]])
    with pytest.raises(schema.MetadataError, match=corpus["utt_id"].iloc[0]):
        schema.validate(duplicated, "tiny")
    leaking = corpus.copy()
    speaker = leaking.loc[leaking["split"] == "train", "speaker"].iloc[0]
    leaking.loc[leaking.index[leaking["speaker"] == speaker][0], "split"] = "test"
    with pytest.raises(schema.MetadataError, match=f"speaker leakage.*{speaker}"):
        schema.validate(leaking, "tiny")
    missing = corpus.copy()
    missing.loc[missing.index[2], "audio_path"] = "/nonexistent/a.wav"
    with pytest.raises(schema.MetadataError, match=r"audio_path missing.*/nonexistent/a\.wav"):
        schema.validate(missing, "tiny")
    with pytest.raises(schema.MetadataError, match="missing columns"):
        schema.validate(corpus.drop(columns=["speaker"]), "tiny")
    with pytest.raises(FileNotFoundError, match="dvc repro metadata"):
        schema.read("/nonexistent/table.parquet")


def _write_store(directory, arrays: dict, shard_size: int) -> None:
    items = list(arrays.items())
    manifests = [
        features.write_shard(directory, k, [u for u, _ in chunk], [a for _, a in chunk], [], "fp")
        for k, chunk in enumerate(items[i : i + shard_size] for i in range(0, len(items), shard_size))
    ]
    shards = [
        {"file": m["file"], "manifest": f"shard-{m['index']:05d}.json", "sha256": m["sha256"]}
        for m in manifests
    ]
    write_json(directory / "meta.json", {"hidden_dim": 4, "shards": shards})


def test_shards_roundtrip_ragged_memory_mapped_and_verified(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"u{i}": rng.normal(size=(i + 1, 4)).astype(np.float32) for i in range(5)}
    _write_store(tmp_path, arrays, shard_size=2)
    assert sorted(p.name for p in tmp_path.glob("shard-*.npy")) == [f"shard-0000{i}.npy" for i in range(3)]
    store = features.FeatureStore(tmp_path)
    assert store.ids == list(arrays)
    for utt_id, array in arrays.items():
        assert isinstance(store[utt_id], np.memmap)  # a view into the mapped shard, not a copy
        assert store[utt_id].dtype == np.float16 and store[utt_id].shape == array.shape
        assert np.allclose(store[utt_id], array, atol=1e-2)
    record = features.verify(tmp_path, [*arrays, "u9"], [{"utt_id": "u9", "reason": "corrupt"}])
    assert record["ok"] and record["n_quarantined"] == 1 and record["length_max"] == 5
    assert not features.verify(tmp_path, list(arrays)[:4], [])["ok"]  # ids not aligned
    with pytest.raises(ValueError, match="u7"):
        features.write_shard(tmp_path, 9, ["u7"], [np.zeros((0, 4))], [], "fp")


def test_complete_shard_checks_fingerprint_and_checksum(tmp_path):
    features.write_shard(tmp_path, 0, ["a"], [np.ones((2, 2))], [], "fp-1")
    assert features.complete_shard(tmp_path, 0, "fp-1")["utt_ids"] == ["a"]
    assert features.complete_shard(tmp_path, 0, "fp-2") is None  # made by other params
    assert features.complete_shard(tmp_path, 1, "fp-1") is None  # never written
    (tmp_path / "shard-00000.npy").write_bytes(b"torn write")
    assert features.complete_shard(tmp_path, 0, "fp-1") is None  # checksum mismatch


def test_verify_catches_a_corrupted_shard(tmp_path):
    _write_store(tmp_path, {"a": np.ones((2, 4))}, shard_size=4)
    np.save(tmp_path / "shard-00000.npy", np.full((2, 4), np.nan, dtype=np.float16))
    record = features.verify(tmp_path, ["a"], [])
    assert not record["ok"]
    assert any("checksum" in p for p in record["problems"]) and any("NaN" in p for p in record["problems"])


def test_extraction_quarantines_bad_inputs_and_keeps_the_rest(corpus, tmp_path):
    table = corpus.copy()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav")
    table.loc[table.index[1], "audio_path"] = str(corrupt)
    table.loc[table.index[2], "text"] = "   "
    short = tmp_path / "short.wav"  # 100 samples: shorter than one WavLM frame
    sf.write(short, np.zeros(100, dtype=np.float32), 16000)
    table.loc[table.index[3], "audio_path"] = str(short)
    resampled = tmp_path / "44k.wav"  # stereo 44.1 kHz: converted, counted
    sf.write(resampled, np.random.default_rng(0).normal(scale=0.1, size=(44100, 2)), 44100)
    table.loc[table.index[4], "audio_path"] = str(resampled)
    narrowband = tmp_path / "8k.wav"  # 8 kHz: converted, counted
    sf.write(narrowband, np.random.default_rng(1).normal(scale=0.1, size=8000), 8000)
    table.loc[table.index[5], "audio_path"] = str(narrowband)
    empty = tmp_path / "empty.wav"  # zero-length audio
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    table.loc[table.index[6], "audio_path"] = str(empty)
    table.loc[table.index[7], "audio_path"] = table["video_path"].iloc[7]  # an mp4 without audio
    cfg = ExtractParams(shard_size=5, batch_size=4, num_workers=0)
    audio = extract_modality(table, "audio", cfg, tmp_path / "audio")
    text = extract_modality(table, "text", cfg, tmp_path / "text")
    assert audio["ok"] and audio["n_stored"] == len(table) - 4
    assert [q["utt_id"] for q in audio["quarantined"]] == table["utt_id"].iloc[[1, 3, 6, 7]].tolist()
    reasons = [q["reason"] for q in audio["quarantined"]]
    assert "corrupt.wav" in reasons[0] and "encoder rejected" in reasons[1]
    assert "empty.wav" in reasons[2] and "no audio stream" in reasons[3]
    assert text["quarantined"] == [{"utt_id": table["utt_id"].iloc[2], "reason": "empty transcript"}]
    quarantine = pd.read_csv(tmp_path / "audio" / "quarantine.csv")
    assert quarantine["utt_id"].tolist() == table["utt_id"].iloc[[1, 3, 6, 7]].tolist()
    meta = json.loads((tmp_path / "audio" / "meta.json").read_text())
    assert meta["weights"] == "random-init" and meta["sample_rate"] == 16000
    assert (meta["n_quarantined"], meta["n_resampled"], meta["n_truncated"]) == (4, 2, 0)
    joined = MultimodalData.load(table, {"audio": tmp_path / "audio", "text": tmp_path / "text"})
    assert joined.n_missing == 5 and len(joined) == len(table) - 5
    first = joined.table["utt_id"].iloc[0]
    assert joined.sequences["audio"][0].shape == features.FeatureStore(tmp_path / "audio")[first].shape


def test_gate_analysis_reports_the_drop_and_the_weight_per_emotion():
    frame = pd.DataFrame({"gate_audio": [1.5, 1.4, 0.2, 0.4], "audio_reliable": [True, True, False, False],
                          "gate_text": [1.0] * 4, "text_reliable": [True] * 4,
                          "label_id": [0, 1, 0, 1]})  # fmt: skip
    analysis = gate_analysis({"main": {0: frame}}, ("anger", "happiness", "neutral", "sadness"))
    assert analysis["audio"] == {
        "reliable": 1.45, "unreliable": 0.3, "drop": 1.15,
        "by_emotion": {"anger": 0.85, "happiness": 0.9},
    }  # fmt: skip
    assert analysis["text"] == {"by_emotion": {"anger": 1.0, "happiness": 1.0}}  # no unreliable text: no drop


def test_validation_rejects_label_ids_that_do_not_match_labels(corpus):
    wrong = corpus.copy()
    wrong.loc[wrong.index[0], "label_id"] = (wrong["label_id"].iloc[0] + 1) % 4
    with pytest.raises(schema.MetadataError, match="label_id does not match"):
        schema.validate(wrong, "tiny", check_files=False)
    unknown = corpus.copy()
    unknown.loc[unknown.index[1], "label"] = "boredom"
    with pytest.raises(schema.MetadataError, match="label not in"):
        schema.validate(unknown, "tiny", check_files=False)
