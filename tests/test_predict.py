"""``mer predict`` and self-describing checkpoints, on the tiny pipeline's trained main model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest

from mer.checkpoints import load_model
from mer.predict import PredictError, Predictor, main, predict
from tests.pipeline_utils import REPO

MODEL = "models/fusion/main"


@pytest.fixture(scope="module")
def repo(reproduced_repo):
    """The tiny pipeline's repo (read only here)."""
    return reproduced_repo


@pytest.fixture(scope="module")
def test_rows(repo):
    """Three source-test utterances: metadata rows and the pipeline's seed predictions."""
    table = pd.read_parquet(repo / "data/metadata/source.parquet").set_index("utt_id")
    folder = repo / "data/predictions/source/fusion/main"
    seeds = {s: pd.read_parquet(folder / f"seed{s}.parquet") for s in (0, 1)}
    ids = seeds[0]["utt_id"].tolist()[:3]
    return table.loc[ids].reset_index(), {s: f.set_index("utt_id").loc[ids] for s, f in seeds.items()}


def _seed_mean(seeds: dict, utt_id: str, classes: tuple[str, ...]) -> np.ndarray:
    """The pipeline's class probabilities of ``utt_id`` averaged over the seeds."""
    return np.mean([seeds[s].loc[utt_id, [f"prob_{c}" for c in classes]].to_numpy(float) for s in seeds], 0)


def _cli(args: list[str], capsys) -> pd.Series:
    main(args)
    lines = capsys.readouterr().out.strip().splitlines()
    return pd.Series({line.split()[0]: line.split(maxsplit=1)[1].strip() for line in lines})


def test_predict_one_clip_agrees_with_the_pipeline(repo, test_rows, capsys, monkeypatch):
    monkeypatch.chdir(repo)  # the metadata's media paths are relative to the repo
    rows, seeds = test_rows
    row = rows.iloc[0]
    out = _cli([MODEL, row["audio_path"], row["video_path"], "--text", row["text"], "--seed", "0"], capsys)
    expected = seeds[0].loc[row["utt_id"]]
    classes = load_model(MODEL).classes
    got = np.array([float(out[f"prob_{c}"]) for c in classes])
    want = expected[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    assert np.abs(got - want).max() < 1e-4, (got, want)
    assert out["pred_label"] == classes[int(expected["pred_id"])]
    assert out["modalities"] == "text+audio+video" and out["seeds"] == "1"
    # averaged over the saved seeds by default (Python API, the same features)
    result = predict(MODEL, audio=row["audio_path"], video=row["video_path"], text=row["text"])
    got = np.array([result["probabilities"][c] for c in classes])
    assert np.abs(got - _seed_mean(seeds, row["utt_id"], classes)).max() < 1e-4
    assert result["seeds"] == [0, 1] and set(result["gates"]) == {"text", "audio", "video"}


def test_predict_a_list_quarantines_bad_rows(repo, test_rows, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    rows, seeds = test_rows
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav file")
    listed = rows[["utt_id", "text", "audio_path", "video_path"]].copy()
    listed.loc[2, "audio_path"] = str(corrupt)
    listed.to_csv(tmp_path / "list.csv", index=False)
    main([MODEL, "--csv", str(tmp_path / "list.csv"), "--out", str(tmp_path / "out.csv")])
    assert "2 utterances predicted" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "out.csv").set_index("utt_id")
    quarantine = pd.read_csv(tmp_path / "out.quarantine.csv")
    assert quarantine["utt_id"].tolist() == [rows.loc[2, "utt_id"]]
    assert "audio:" in quarantine["reason"][0] and "corrupt.wav" in quarantine["reason"][0]
    classes = load_model(MODEL).classes
    for utt_id in frame.index:
        got = frame.loc[utt_id, [f"prob_{c}" for c in classes]].to_numpy(float)
        assert np.abs(got - _seed_mean(seeds, utt_id, classes)).max() < 1e-4


def test_bad_input_and_unusable_encoders_fail_clearly(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(PredictError, match=r"audio: .*absent\.wav"):
        predict(MODEL, audio="absent.wav", text="hello")
    with pytest.raises(PredictError, match="no input for any of the model's modalities"):
        predict(MODEL)
    # a model whose recorded preprocessing differs from this code's, and one whose encoder is unknown
    changed = tmp_path / "changed"
    shutil.copytree(MODEL, changed)
    description = json.loads((changed / "config.json").read_text())
    description["encoders"]["audio"]["code_hash"] = "0" * 16
    (changed / "config.json").write_text(json.dumps(description))
    with pytest.raises(PredictError, match=r"audio features would not be made as at training.*--allow"):
        Predictor(load_model(changed))
    assert Predictor(load_model(changed), allow_changed_preprocessing=True).encoders["audio"] is not None
    description["encoders"]["text"]["model"] = "no-such-org/no-such-model"
    (changed / "config.json").write_text(json.dumps(description))
    with pytest.raises(PredictError, match=r"text encoder 'no-such-org/no-such-model' cannot be loaded"):
        Predictor(load_model(changed), allow_changed_preprocessing=True)


def test_round_trip_in_a_fresh_process_gives_identical_outputs(repo):
    """The saved directory alone (config.json + safetensors) re-creates the test predictions exactly."""
    script = (
        "import sys; from mer.checkpoints import load_model; from mer.data import load_splits; "
        "from mer.train import predict; "
        f"trained = load_model('{MODEL}', seed=1); "
        "data = load_splits('data/metadata/source.parquet', 'data/features/source', "
        "trained.modalities)['test']; "
        "predict(trained.first(), data).to_parquet(sys.argv[1])"
    )
    out = repo.parent / "roundtrip.parquet"
    subprocess.run([sys.executable, "-c", script, str(out)], cwd=repo, check=True, capture_output=True)
    reloaded = pd.read_parquet(out)
    pipeline = pd.read_parquet(repo / "data/predictions/source/fusion/main/seed1.parquet")
    shared = [c for c in reloaded.columns if c in pipeline.columns]
    pd.testing.assert_frame_equal(reloaded[shared], pipeline[shared], check_exact=True)


def test_model_directory_describes_itself(repo):
    trained = load_model(repo / MODEL)
    description = trained.description
    assert description["label_map"] == {str(i): c for i, c in enumerate(trained.classes)}
    assert description["corpus"] == {"name": "synthetic", "fold": "main"}
    for modality, record in trained.encoders.items():
        meta = json.loads((repo / f"data/features/source/{modality}/meta.json").read_text())
        assert record["model"] == meta["model"] and record["weights_hash"] == meta["weights_hash"]
        assert record["params"][modality] == meta["params"][modality]
    assert trained.encoders["audio"]["weights"] == "random-init"
    assert len(description["params_hash"]) == 16 and description["mer_version"]


def test_console_script_and_lazy_api():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mer"] == "mer.predict:cli"
    help_text = subprocess.run(
        [sys.executable, "-m", "mer.predict", "-h"], capture_output=True, text=True, check=True
    ).stdout
    assert "mer predict" in help_text and "--csv" in help_text
    light = subprocess.run(
        [sys.executable, "-c", "import sys, mer, mer.metric_keys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert light.strip() == "False"  # importing mer does not import torch
    import mer

    assert callable(mer.predict) and mer.load_model is load_model


def test_audio_only_and_text_only_inputs_give_valid_probabilities(repo, test_rows, monkeypatch):
    monkeypatch.chdir(repo)
    rows, _ = test_rows
    row = rows.iloc[0]
    for inputs, used in (({"audio": row["audio_path"]}, "audio"), ({"text": row["text"]}, "text")):
        result = predict(MODEL, **inputs)
        probabilities = np.array(list(result["probabilities"].values()))
        assert result["modalities"] == [used] and np.isfinite(probabilities).all()
        assert abs(probabilities.sum() - 1.0) < 1e-5 and result["label"] in result["probabilities"]
        assert {m: g for m, g in result["gates"].items() if m != used} == {
            m: 0.0 for m in ("text", "audio", "video") if m != used
        }  # absent modalities get no weight
