"""Extraction: bucketing, worker decoding, NaN failure, kill-and-resume, torchrun with 2 ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mer import schema
from mer.corpora import synthetic
from mer.extract import ExtractionError, bucket_batches, extract_modality
from mer.features import FeatureStore
from mer.params import ExtractParams, ParamsError, SyntheticParams

REPO = Path(__file__).resolve().parents[1]
CORPUS = SyntheticParams(train_speakers=2, dev_speakers=1, test_speakers=1, utterances_per_speaker=15,
                         video_frames=4, video_size=32, min_seconds=0.6, max_seconds=1.6)  # fmt: skip


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synthetic.generate(CORPUS, "source", root / "raw")
    frame = synthetic.load(root / "raw", "tiny")
    schema.write(frame, root / "meta.parquet")
    return frame


def _stage_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "MER_LOG_LEVEL": "WARNING",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip


def _params_file(directory: Path, shard_size: int) -> Path:
    (directory / "params.yaml").write_text(f"extract:\n  shard_size: {shard_size}\n  num_workers: 0\n")
    return directory


def _arrays(directory: Path) -> dict[str, np.ndarray]:
    store = FeatureStore(directory)
    return {u: np.array(store[u]) for u in store.ids}


def test_bucketing_covers_every_item_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 400, size=200).tolist()
    batches = bucket_batches(lengths, batch_size=16, budget=2000)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert len(batch) <= 16 and (padded <= 2000 or len(batch) == 1)
    padded_total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded_total < 1.1 * sum(lengths)  # far less padding than one global pad-to-max
    assert bucket_batches([900], 4, 100) == [[0]]


def test_worker_decoding_and_batching_do_not_change_features(table, tmp_path):
    base = ExtractParams(shard_size=7, num_workers=0, batch_size=1)
    extract_modality(table, "audio", base, tmp_path / "single")
    fast = ExtractParams(shard_size=7, num_workers=2, batch_size=8, batch_budget=400)
    extract_modality(table, "audio", fast, tmp_path / "batched")
    single, batched = _arrays(tmp_path / "single"), _arrays(tmp_path / "batched")
    assert list(single) == list(batched) == table["utt_id"].tolist()
    for utt_id in single:
        a, b = single[utt_id].astype(np.float32), batched[utt_id].astype(np.float32)
        assert a.shape == b.shape
        cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cosine.min() > 0.999


def test_nan_features_fail_the_stage_naming_the_utterance(table, tmp_path, monkeypatch):
    import mer.extract as extract

    real = extract.build_encoder

    def poisoned(*args, **kwargs):
        encoder = real(*args, **kwargs)
        clean = encoder.encode

        def encode(texts, *rest, **kw):
            outputs = clean(texts, *rest, **kw)
            for text, output in zip(texts, outputs, strict=True):
                if text == table["text"].iloc[3]:
                    output[0, 0] = np.nan
            return outputs

        encoder.encode = encode
        return encoder

    monkeypatch.setattr(extract, "build_encoder", poisoned)
    with pytest.raises(ExtractionError, match=table["utt_id"].iloc[3]):
        extract_modality(table, "text", ExtractParams(num_workers=0), tmp_path / "text")


@pytest.mark.slow
def test_killed_extraction_resumes_without_redoing_complete_shards(table, tmp_path):
    work = _params_file(tmp_path, shard_size=2)
    schema.write(table, work / "meta.parquet")
    command = [sys.executable, str(REPO / "stages/extract.py"), "--metadata", "meta.parquet",
               "--modality", "audio", "--out", "features"]  # fmt: skip
    process = subprocess.Popen(command, cwd=work, env=_stage_env(), stderr=subprocess.DEVNULL)
    third = work / "features" / "shard-00002.json"
    deadline = time.time() + 120
    while not third.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted(p for p in (work / "features").glob("shard-*.json"))
    assert 3 <= len(done) < 30, "the run should have been killed part-way"
    assert not (work / "features" / "meta.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in done}

    subprocess.run(command, cwd=work, env=_stage_env(), check=True, capture_output=True)
    features_dir = work / "features"
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps  # complete shards were not redone
    assert len(list(features_dir.glob("shard-*.json"))) == 30
    assert not list(features_dir.glob("*.tmp"))
    clean = tmp_path / "clean"
    extract_modality(table, "audio", ExtractParams(shard_size=2, num_workers=0), clean)
    resumed, reference = _arrays(features_dir), _arrays(clean)
    assert list(resumed) == list(reference)
    assert all(np.array_equal(resumed[u], reference[u]) for u in reference)


@pytest.mark.slow
def test_torchrun_two_ranks_write_disjoint_shards_and_merge(table, tmp_path):
    work = _params_file(tmp_path, shard_size=5)
    schema.write(table, work / "meta.parquet")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(REPO / "stages/extract.py"), "--metadata", "meta.parquet", "--modality", "text",
               "--out", "features"]  # fmt: skip
    result = subprocess.run(command, cwd=work, env=_stage_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    extract_modality(table, "text", ExtractParams(shard_size=5, num_workers=0), tmp_path / "single")
    ranked, single = _arrays(work / "features"), _arrays(tmp_path / "single")
    assert list(ranked) == list(single) == table["utt_id"].tolist()
    for utt_id in single:
        assert np.allclose(ranked[utt_id].astype(np.float32), single[utt_id].astype(np.float32), atol=2e-3)
    assert len(list((work / "features").glob("shard-*.npy"))) == 12


def test_text_layers_are_stored_side_by_side(table, tmp_path):
    import dataclasses

    cfg = ExtractParams(num_workers=0, text=dataclasses.replace(ExtractParams().text, layers=(-2, -1)))
    extract_modality(table.iloc[:4], "text", cfg, tmp_path / "layers")
    extract_modality(table.iloc[:4], "text", ExtractParams(num_workers=0), tmp_path / "last")
    layers, last = FeatureStore(tmp_path / "layers"), FeatureStore(tmp_path / "last")
    assert layers.hidden_dim == 2 * last.hidden_dim and layers.meta["layers"] == [-2, -1]
    utt_id = table["utt_id"].iloc[0]
    assert np.array_equal(layers[utt_id][:, last.hidden_dim :], last[utt_id])  # the -1 block


def test_long_audio_is_truncated_and_counted_or_chunked_whole(table, tmp_path):
    import dataclasses

    import soundfile as sf

    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.random.default_rng(0).normal(scale=0.1, size=16000 * 7).astype(np.float32), 16000)
    rows = table.iloc[:2].copy()
    rows.loc[rows.index[0], ["audio_path", "duration"]] = [str(long_wav), 7.0]
    audio = ExtractParams().audio
    truncate = ExtractParams(num_workers=0, audio=dataclasses.replace(audio, max_seconds=3.0))
    chunk = ExtractParams(
        num_workers=0,
        audio=dataclasses.replace(
            audio, long_audio="chunk", max_seconds=3.0, chunk_seconds=3.0, chunk_overlap=1.0
        ),
    )
    extract_modality(rows, "audio", truncate, tmp_path / "truncate")
    extract_modality(rows, "audio", chunk, tmp_path / "chunk")
    cut, whole = FeatureStore(tmp_path / "truncate"), FeatureStore(tmp_path / "chunk")
    utt_id = rows["utt_id"].iloc[0]
    assert len(cut[utt_id]) == 149 and len(whole[utt_id]) == 349  # 3 s vs all 7 s at 50 Hz
    assert cut.meta["n_truncated"] == 1 and whole.meta["n_truncated"] == 0
    assert whole.meta["long_audio"] == "chunk"


def test_leftovers_in_a_persisted_output_are_removed(table, tmp_path):
    out = tmp_path / "features"
    out.mkdir()
    for name in ("shard-00000.npz", "shard-00099.npy", "shard-00001.npy.tmp", "notes.txt"):
        (out / name).write_bytes(b"stale")
    extract_modality(table.iloc[:6], "text", ExtractParams(shard_size=4, num_workers=0), out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["meta.json", "verify.json", "quarantine.csv", "shard-00000.npy", "shard-00000.json",
         "shard-00001.npy", "shard-00001.json"]
    )  # fmt: skip


def test_a_configuration_error_fails_instead_of_quarantining_everything(table, tmp_path):
    import dataclasses

    cfg = ExtractParams(num_workers=0, text=dataclasses.replace(ExtractParams().text, layers=(-30,)))
    # a layer the encoder lacks fails before any work, naming the key
    with pytest.raises(ParamsError, match=r"extract\.text\.layers: .*index -30 out of range"):
        extract_modality(table.iloc[:6], "text", cfg, tmp_path / "text")
    assert not list((tmp_path / "text").glob("shard-*"))
    # whatever makes every utterance unusable fails the stage instead of quarantining them all
    with pytest.raises(ExtractionError, match="6 of 6 utterances quarantined"):
        extract_modality(
            table.iloc[:6].assign(text=" "), "text", ExtractParams(num_workers=0), tmp_path / "blank"
        )


def test_a_corpus_without_the_modality_is_quarantined_not_failed(table, tmp_path):
    """RAVDESS is audio-only: no video_path is not a broken setup, a corrupt video still is."""
    rows = table.iloc[:6].copy()
    rows["video_path"] = None
    record = extract_modality(rows, "video", ExtractParams(num_workers=0), tmp_path / "none")
    assert record["n_stored"] == 0 and record["n_quarantined"] == 6
    quarantine = (tmp_path / "none" / "quarantine.csv").read_text()
    assert quarantine.count("no video_path in the metadata") == 6
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    rows.loc[rows.index[:4], "video_path"] = str(broken)  # 4 corrupt of the 4 that have a video
    with pytest.raises(ExtractionError, match="4 of 6 utterances quarantined"):
        extract_modality(rows, "video", ExtractParams(num_workers=0), tmp_path / "corrupt")


def test_changed_media_invalidate_their_shard_only(table, tmp_path):
    import shutil

    import soundfile as sf

    rows = table.iloc[:6].copy()
    copied = []
    for path in rows["audio_path"]:
        target = tmp_path / "wav" / Path(path).name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
        copied.append(str(target))
    rows["audio_path"] = copied
    cfg = ExtractParams(shard_size=3, num_workers=0)
    out = tmp_path / "features"
    extract_modality(rows, "audio", cfg, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}
    waveform, rate = sf.read(copied[4], dtype="float32")
    sf.write(copied[4], waveform[::-1].copy(), rate)  # re-exported under the same path
    extract_modality(rows, "audio", cfg, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}
    assert after["shard-00000.npy"] == stamps["shard-00000.npy"]  # untouched shard resumed
    assert after["shard-00001.npy"] != stamps["shard-00001.npy"]  # the changed file's shard redone
