"""Released feature sets (``extract.<modality>.model: external:<path>``): the CMU-SDK ``.csd`` and
MMSA ``.pkl`` readers on files in their exact formats, the feature folder they write, the
features-only MOSI table, and a features-only MOSI run through DVC."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mer import features, metadata, schema
from mer.checkpoints import load_model
from mer.corpora import mmsa
from mer.corpora.common import LayoutError
from mer.encoders import build_encoder
from mer.external import ExternalFormatError, external_by_role, external_modalities, media_needed
from mer.external.importer import NONFINITE_COUNTS, ExternalImportError, clean, import_features, read_features
from mer.extract import extract_modality
from mer.params import CorporaParams, ExtractParams, ParamsError, SyntheticParams, section_from_mapping
from mer.predict import PredictError, Predictor
from mer.report import _card_limitations
from tests import fixtures_external as fx
from tests import fixtures_mmsa
from tests.pipeline_utils import make_tiny_repo, ran_stages, run


def _same(stored: np.ndarray, source: np.ndarray) -> None:
    """Stored frames are the source's, rounded to the shards' float16."""
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored, np.asarray(source).astype(np.float16))


def _cfg(**models: str) -> ExtractParams:
    return section_from_mapping(
        ExtractParams, {"shard_size": 3, **{m: {"model": spec} for m, spec in models.items()}}, "extract"
    )


# --- params ----------------------------------------------------------------------------------


def test_a_missing_external_file_is_named_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"extract\.audio\.model: .*nowhere\.csd not found"):
        _cfg(audio=f"external:{tmp_path / 'nowhere.csd'}")


def test_an_unknown_external_suffix_is_named_with_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "features.h5"
    path.write_bytes(b"")
    with pytest.raises(ParamsError, match=r"extract\.video\.model: .*\.h5 file; .*\.csd \(csd\), \.pkl"):
        _cfg(video=f"external:{path}")


def test_external_modalities_and_media_need(tmp_path: Path) -> None:
    path = fx.write_csd(tmp_path / "a.csd", "A", {"v": fx.frames(2, 3)})
    cfg = _cfg(audio=f"external:{path}", video=f"external:{path}")
    assert external_modalities(cfg) == ("audio", "video")
    assert not media_needed(external_modalities(cfg))
    assert media_needed(("audio",), ("text", "audio", "video"))


def test_an_external_spec_is_no_encoder() -> None:
    with pytest.raises(ValueError, match="names released audio features, not an encoder"):
        build_encoder("audio", "external:x.csd")


# --- .csd ------------------------------------------------------------------------------------


def _dialog_table() -> pd.DataFrame:
    """IEMOCAP-like rows: the dialog video and the utterance's window in it."""
    rows = [
        ("u1", "dlg1", 0.0, 0.5),  # frames 0-4 of dlg1 (frame 3 is -inf: dropped)
        ("u2", "dlg1", 0.5, 1.0),  # frames 5-9
        ("u3", "dlg1", 5.0, 6.0),  # outside dlg1's [0, 1] s
        ("u4", "dlgX", 0.0, 1.0),  # no entry
        ("u5", "dlg2", 0.25, 0.55),  # frames overlapping: 2 (0.2-0.3) .. 5 (0.5-0.6)
        ("u6", "dlg3", 0.0, 1.0),  # 3 feature rows, 2 intervals
        ("u7", "dlg4", 0.0, 1.0),  # every frame -inf
    ]
    return pd.DataFrame(rows, columns=["utt_id", "dialog", "video_start", "video_end"])


def _dialog_csd(tmp_path: Path) -> tuple[Path, dict]:
    entries = {
        "dlg1": fx.frames(10, 4, seed=1),
        "dlg2": fx.frames(8, 4, seed=2),
        "dlg3": (np.ones((3, 4)), np.array([[0.0, 0.1], [0.1, 0.2]])),
        "dlg4": (np.full((4, 4), -np.inf), fx.frames(4, 4)[1]),
        "orphan": fx.frames(3, 4, seed=3),  # a video the metadata does not have
    }
    entries["dlg1"][0][3, 2] = -np.inf
    return fx.write_csd(tmp_path / "CMU_MOSEI_COVAREP.csd", "COVAREP", entries), entries


def test_csd_aligns_by_video_and_clip_interval(tmp_path: Path) -> None:
    path, entries = _dialog_csd(tmp_path)
    imported = read_features(_dialog_table(), "audio", f"external:{path}")
    got = dict(zip(imported.ids, imported.arrays, strict=True))
    assert imported.ids == ["u1", "u2", "u5"]
    _same(got["u1"], entries["dlg1"][0][[0, 1, 2, 4]])
    _same(got["u2"], entries["dlg1"][0][5:10])
    _same(got["u5"], entries["dlg2"][0][2:6])
    reasons = {q["utt_id"]: q["reason"] for q in imported.quarantined}
    assert set(reasons) == {"u3", "u4", "u6", "u7"}
    assert reasons["u3"].startswith("clip interval [5.000, 6.000] s outside the video's feature intervals")
    assert "no features in CMU_MOSEI_COVAREP.csd" in reasons["u4"] and "dlgX" in reasons["u4"]
    assert reasons["u6"].startswith("length mismatch in entry 'dlg3': 3 feature rows but 2 intervals")
    assert reasons["u7"] == "no finite frame: all 4 frames have NaN/Inf values"
    assert imported.unmatched == ["orphan"]
    assert imported.counts["nonfinite_frames_dropped"] == 1  # u1's (u7 is quarantined)
    assert imported.counts["utterances_with_nonfinite_frames"] == 1
    assert imported.feature_dim == 4 and imported.source["metadata"]["root name"] == "COVAREP"


def test_csd_segmented_keys_and_whole_videos(tmp_path: Path) -> None:
    """After the SDK's align entries are per segment (``vid[i]``); mer's ids and MMSA's match too.
    MMSA's table has no clip times: a per-video entry serves only a video's single utterance."""
    path = fx.write_csd(tmp_path / "seg.csd", "OpenFace_2", {
        "vidA[1]": fx.frames(3, 2, seed=1), "vidA_2": fx.frames(4, 2, seed=2), "vidB$_$1": fx.frames(2, 2),
        "vidC": fx.frames(5, 2, seed=5), "vidD": fx.frames(6, 2, seed=6),
    })  # fmt: skip
    table = pd.DataFrame({
        "utt_id": ["vidA_1", "vidA_2", "vidB_1", "vidC_1", "vidD_1", "vidD_2"],
        "video_id": ["vidA", "vidA", "vidB", "vidC", "vidD", "vidD"],
        "clip_id": ["1", "2", "1", "1", "1", "2"], "start": np.nan, "end": np.nan,
    })  # fmt: skip
    imported = read_features(table, "video", f"external:{path}")
    assert imported.ids == ["vidA_1", "vidA_2", "vidB_1", "vidC_1"]
    assert [len(a) for a in imported.arrays] == [3, 4, 2, 5]
    assert imported.counts["segmented_matches"] == 3 and imported.counts["whole_video_matches"] == 1
    reasons = {q["utt_id"]: q["reason"] for q in imported.quarantined}
    assert set(reasons) == {"vidD_1", "vidD_2"}
    assert "its 2 utterances no clip interval" in reasons["vidD_1"]
    assert imported.unmatched == []


def test_a_words_csd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "words.csd"
    words = np.array([[b"hello"], [b"world"]])
    fx.write_csd(path, "words", {"v": (words, np.array([[0.0, 0.5], [0.5, 1.0]]))})
    table = pd.DataFrame({"utt_id": ["v_1"], "video_id": ["v"], "clip_id": ["1"]})
    with pytest.raises(ExternalFormatError, match=r"not numbers .*TimestampedWordVectors"):
        read_features(table, "text", f"external:{path}")


def test_a_file_that_is_not_hdf5_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.csd"
    path.write_bytes(b"not hdf5")
    with pytest.raises(ExternalFormatError, match="not an HDF5 computational sequence"):
        read_features(pd.DataFrame({"utt_id": ["a"]}), "audio", f"external:{path}")


# --- MMSA pickle ---------------------------------------------------------------------------------


def _mmsa_pickle(tmp_path: Path) -> tuple[Path, dict]:
    items = {
        "train": [fx.utterance("v1$_$1", 1.0, 1, (4, 6, 5)), fx.utterance("v1$_$2", -1.0, 2, (3, 8, 2))],
        "valid": [fx.utterance("v2$_$1", 0.5, 3), fx.utterance("orphan$_$9", 0.0, 4)],
        "test": [fx.utterance("v3$_$1", -0.5, 5)],
    }
    items["train"][0]["audio"][2, 1] = -np.inf  # COVAREP -inf
    items["valid"][0]["audio_length"] = 40  # longer than the padded array: a length mismatch
    return fx.write_mmsa_pickle(tmp_path / "Processed" / "unaligned_50.pkl", items), items


def _mmsa_table() -> pd.DataFrame:
    ids = [("v1", "1"), ("v1", "2"), ("v2", "1"), ("v3", "1"), ("v4", "1")]
    return pd.DataFrame({"utt_id": [f"{v}_{c}" for v, c in ids], "video_id": [v for v, _ in ids],
                         "clip_id": [c for _, c in ids], "start": np.nan, "end": np.nan})  # fmt: skip


def test_mmsa_pickle_modalities_are_trimmed_to_their_real_lengths(tmp_path: Path) -> None:
    path, items = _mmsa_pickle(tmp_path)
    spec = f"external:{path}"
    text = read_features(_mmsa_table(), "text", spec)
    assert text.ids == ["v1_1", "v1_2", "v2_1", "v3_1"] and text.feature_dim == fx.DIMS["text"]
    _same(text.arrays[1], items["train"][1]["text"])  # 3 real tokens of 8
    assert text.counts["length_from_text"] == 5  # text_bert's attention mask, every pickle entry
    video = read_features(_mmsa_table(), "video", spec)
    assert [len(a) for a in video.arrays] == [5, 2, 7, 7]
    audio = read_features(_mmsa_table(), "audio", spec)
    assert audio.ids == ["v1_1", "v1_2", "v3_1"]
    _same(audio.arrays[0], np.delete(items["train"][0]["audio"], 2, axis=0))
    assert audio.counts["nonfinite_frames_dropped"] == 1
    reasons = {q["utt_id"]: q["reason"] for q in audio.quarantined}
    assert reasons == {
        "v2_1": "length mismatch: audio_lengths says 40 frames, the 'audio' array holds 12",
        "v4_1": "no features in unaligned_50.pkl (no id 'v4$_$1')",
    }
    assert audio.unmatched == ["orphan_9"]  # features without an utterance


def test_mmsa_pickle_with_only_token_ids_is_refused_for_text(tmp_path: Path) -> None:
    path, _ = _mmsa_pickle(tmp_path)
    data = pickle.loads(path.read_bytes())
    for split in data.values():
        del split["text"]
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ExternalFormatError, match="'text_bert' holds BERT token ids and masks, not features"):
        read_features(_mmsa_table(), "text", f"external:{path}")


def test_a_pickle_that_is_not_mmsa_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"features": [1, 2]}))
    with pytest.raises(ExternalFormatError, match="expected MMSA's dict of splits"):
        read_features(_mmsa_table(), "audio", f"external:{path}")


def test_nonfinite_frames_are_dropped_and_float16_overflow_quarantined() -> None:
    counts = dict(NONFINITE_COUNTS)
    kept = clean(np.array([[np.nan, 1.0], [2.0, 3.0], [-np.inf, 0.0]]), counts)
    assert kept.tolist() == [[2.0, 3.0]] and kept.dtype == np.float16
    assert counts == {"nonfinite_frames_dropped": 2, "utterances_with_nonfinite_frames": 1}
    assert "beyond float16's range" in clean(np.array([[1e6, 0.0]]), counts)  # would store inf


# --- the feature folder ----------------------------------------------------------------------


def test_extract_writes_a_normal_feature_folder_from_a_csd(tmp_path: Path) -> None:
    """Through mer.extract's entry point, as the extract stage calls it: shards, meta.json with
    the source's sha256 / format / dim, quarantine.csv, unmatched_features.csv, verify.json."""
    path, entries = _dialog_csd(tmp_path)
    table = _dialog_table().iloc[[0, 1, 2, 4]]  # u3 (outside) quarantined: 1 of 4
    out = tmp_path / "features" / "audio"
    (out.mkdir(parents=True))
    (out / "shard-00009.npy").write_bytes(b"stale")  # a persisted output of an earlier run
    record = extract_modality(table=table, modality="audio", cfg=_cfg(audio=f"external:{path}"), out_dir=out)
    assert record["ok"] and record["n_stored"] == 3 and record["n_quarantined"] == 1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["weights"] == "external" and meta["model"] == f"external:{path}"
    assert meta["source"]["sha256"] == features.sha256(path) and meta["source"]["format"] == "csd"
    assert meta["hidden_dim"] == meta["source"]["feature_dim"] == 4 and meta["n_unmatched_features"] == 3
    assert len(meta["shards"]) == 2  # shard_size 3: rows u1 u2 u3 | u5
    store = features.FeatureStore(out)
    assert store.ids == ["u1", "u2", "u5"] and store["u1"].dtype == np.float16
    _same(store["u2"], entries["dlg1"][0][5:10].astype(np.float16))
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert quarantine["utt_id"].tolist() == ["u3"] and "outside" in quarantine["reason"][0]
    assert pd.read_csv(out / "unmatched_features.csv")["entry"].tolist() == ["dlg3", "dlg4", "orphan"]
    assert not (out / "shard-00009.npy").exists()


def test_most_utterances_unmatched_fails_naming_the_key(tmp_path: Path) -> None:
    path, _ = _dialog_csd(tmp_path)
    with pytest.raises(
        ExternalImportError, match=r"4 of 7 utterances have no usable features.*extract\.audio"
    ):
        import_features(_dialog_table(), "audio", f"external:{path}", _cfg(), tmp_path / "out")


def test_the_model_card_says_released_features_cannot_be_recomputed() -> None:
    description = {"encoders": {"text": {"weights": "pretrained"}, "audio": {"weights": "external"}},
                   "classes": ["negative", "positive"]}  # fmt: skip
    lines = _card_limitations(description, "mosi")
    assert [line for line in lines if line.startswith("- **Released features** for audio ")]


# --- features-only MOSI --------------------------------------------------------------------------


def test_mmsa_loader_reads_label_csv_alone_when_media_are_external(tmp_path: Path) -> None:
    root, _ = fx.build_features_only_mosi(tmp_path)
    with pytest.raises(LayoutError, match=r"Raw: not found.*external:<file>"):
        mmsa.load(root)
    table = mmsa.load(root, media=False).table
    assert len(table) == 36 and table["audio_path"].isna().all() and table["video_path"].isna().all()
    assert table["duration"].isna().all() and set(table["split"]) == {"train", "dev", "test"}


@pytest.mark.slow
def test_features_only_mosi_runs_end_to_end(tmp_path: Path) -> None:
    """label.csv + unaligned_50.pkl, no Raw/: metadata -> extract (all three modalities from the
    pickle) -> train -> robustness, through DVC; the -inf audio frames are dropped and counted;
    the model cannot be applied to new media (mer predict refuses, naming why)."""
    root, pickle_path = fx.build_features_only_mosi(tmp_path / "corpora")
    repo = make_tiny_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["corpora"].update({"source": "mosi", "target": "none"})
    params["corpora"]["mosi"]["root"] = str(root)
    for modality in ("text", "audio", "video"):
        params["extract"][modality]["model"] = f"external:{pickle_path}"
    params["train"].update({"epochs": 2, "seeds": [0], "baselines": ["concat"]})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro", "robustness"], repo, timeout=900)
    assert {"metadata", "extract@source-text", "extract@source-audio", "extract@source-video",
            "train@main", "robustness"} <= ran_stages(output)  # fmt: skip
    table = schema.read(repo / "data/metadata/source.parquet")
    assert len(table) == 36 and table["audio_path"].isna().all()
    assert table.attrs["modalities"] == ["text", "audio", "video"]  # from the features, not media
    for modality in ("text", "audio", "video"):
        meta = json.loads((repo / f"data/features/source/{modality}/meta.json").read_text())
        assert meta["weights"] == "external" and meta["count"] == 36 and meta["n_quarantined"] == 0
        assert meta["hidden_dim"] == fx.DIMS[modality] and meta["source"]["format"] == "mmsa-pickle"
    audio = json.loads((repo / "data/features/source/audio/meta.json").read_text())
    assert audio["counts"]["nonfinite_frames_dropped"] == 2
    config = json.loads((repo / "models/fusion/main/config.json").read_text())
    assert config["encoders"]["audio"]["weights"] == "external"
    conditions = set(pd.read_csv(repo / "results/robustness.csv")["condition"])
    assert conditions == {"clean", "without text", "without audio", "without video"}  # no noisy audio
    with pytest.raises(PredictError, match="audio features are released ones"):
        Predictor(load_model(repo / "models/fusion/main"), modalities=("audio",))


def test_the_media_decision_is_made_per_role(tmp_path: Path) -> None:
    """Seed 002: the source (MOSEI) is features-only, label.csv alone; the target (MOSI) is read
    through real-time extractors (extract.target), so its clips are read and its Raw/ required."""
    source_root, pickle_path = fx.build_features_only_mosi(tmp_path / "mosei")
    target_root = fixtures_mmsa.build(tmp_path / "mosi", defects=False)
    external = {m: {"model": f"external:{pickle_path}"} for m in ("text", "audio", "video")}
    target = {"audio": {"model": "acoustic-74"}, "video": {"model": "facemesh-65"}}
    cfg = section_from_mapping(ExtractParams, {**external, "target": target}, "extract")
    # text stays the source's released features on the target (no override): no media needed for it
    assert external_by_role(cfg) == {"source": ("text", "audio", "video"), "target": ("text",)}
    corpora = CorporaParams(source="mosei", target="mosi")
    corpora = dataclasses.replace(
        corpora,
        mosei=dataclasses.replace(corpora.mosei, root=str(source_root)),
        mosi=dataclasses.replace(corpora.mosi, root=str(target_root)),
    )
    tiny = SyntheticParams(train_speakers=2, dev_speakers=1, test_speakers=1, utterances_per_speaker=2)
    paths = {"raw_root": tmp_path / "raw", "out": tmp_path / "m", "splits_dir": tmp_path / "s"}
    built = metadata.build_metadata(corpora, tiny, **paths, metrics_path=tmp_path / "m.json",
                                    external=external_by_role(cfg))  # fmt: skip
    source, target = built["source"].table, built["target"].table
    assert source["audio_path"].isna().all() and source.attrs["modalities"] == ["text", "audio", "video"]
    assert target["audio_path"].notna().all() and target["video_path"].notna().all()
    assert target.attrs["modalities"] == ["text", "audio", "video"] and len(target) == 36
    # the target's clips are needed: without its Raw/ the run stops before reading anything
    (target_root / "Raw").rename(target_root / "Raw.moved")
    with pytest.raises(LayoutError, match=r"corpora\.mosi\.root: .*Raw: not found"):
        metadata.build_metadata(corpora, tiny, **paths, metrics_path=tmp_path / "m.json",
                                external=external_by_role(cfg))  # fmt: skip
