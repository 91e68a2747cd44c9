"""The shared loop learns, stops early, is deterministic; adapters and few-shot subsets."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import numpy as np
import pytest
import torch

from mer.checkpoints import copy_model, load_model, save_model
from mer.data import MultimodalData
from mer.metrics import regression_metrics
from mer.models.fusion import FusionConfig, FusionModel
from mer.seeding import seed_everything
from mer.splits import stratified_positions
from mer.train import LoopConfig, class_weights, evaluate_ua, fit, predict

LOOP = LoopConfig(epochs=15, batch_size=8, lr=3e-3, weight_decay=0.0, patience=15, grad_clip=1.0, seed=0)


def _model(data: MultimodalData, mode: str = "crossmodal", seed: int = 0) -> FusionModel:
    seed_everything(seed)
    config = FusionConfig(input_dims=data.dims(), mode=mode, d_model=16, num_heads=2, num_classes=4)
    return FusionModel(config)


def test_fit_learns_and_restores_best(tiny_data):
    model = _model(tiny_data["train"])
    before = evaluate_ua(model, tiny_data["test"])
    result = fit(model, tiny_data["train"], tiny_data["dev"], LOOP)
    assert result.best_dev_score == max(result.history["dev_score"])
    assert evaluate_ua(model, tiny_data["dev"]) == pytest.approx(result.best_dev_score)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert evaluate_ua(model, tiny_data["test"]) >= max(before, 0.75)


def test_early_stopping_stops():
    from tests.conftest import make_sequences, make_table

    table = make_table(4)
    noise = MultimodalData.from_arrays(table, make_sequences(table, {"text": 6}, signal=0.0))
    model = _model(noise, mode="text")
    cfg = LoopConfig(epochs=50, batch_size=8, lr=1e-3, weight_decay=0.0, patience=2, grad_clip=1.0, seed=0)
    result = fit(model, noise, noise.subset(range(4)), cfg)
    assert len(result.history["dev_score"]) < 50


def test_same_seed_same_result_different_seed_differs(tiny_data):
    def run(seed):
        model = _model(tiny_data["train"], seed=seed)
        fit(
            model,
            tiny_data["train"],
            tiny_data["dev"],
            LoopConfig(**{**LOOP.__dict__, "epochs": 3, "seed": seed}),
        )
        return predict(model, tiny_data["test"])

    first, second, other = run(0), run(0), run(1)
    assert first.equals(second)
    assert not np.allclose(first["prob_anger"], other["prob_anger"])


def test_predict_columns_and_save_load_roundtrip(tiny_data, tmp_path):
    model = _model(tiny_data["train"])
    frame = predict(model, tiny_data["test"])
    assert list(frame.columns[:3]) == ["utt_id", "label_id", "pred_id"]
    assert {"gate_text", "gate_audio", "gate_video"} <= set(frame.columns)
    assert np.allclose(frame.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    reloaded = load_model(save_model(tmp_path / "m", model)).first()
    assert predict(reloaded, tiny_data["test"]).equals(frame)
    with pytest.raises(FileNotFoundError, match=r"absent/config\.json: no model here"):
        load_model(tmp_path / "absent")


def test_class_weights_balance():
    weights = class_weights(torch.tensor([0, 0, 0, 1, 2, 2]), 4)
    assert weights[3] == 0 and weights[1] > weights[2] > weights[0]
    assert weights[:3].mean() == pytest.approx(1.0)


def test_stratified_positions_nested_balanced_seeded():
    labels = np.repeat(np.arange(4), 20)
    ten, fifty = stratified_positions(labels, 10, 3), stratified_positions(labels, 50, 3)
    assert len(ten) == 8 and np.bincount(labels[ten]).tolist() == [2, 2, 2, 2]
    assert set(ten) <= set(fifty)
    assert stratified_positions(labels, 10, 3) == ten != stratified_positions(labels, 10, 4)
    assert len(stratified_positions(labels, 100, 0)) == 80
    with pytest.raises(ValueError, match="percent"):
        stratified_positions(labels, 0, 0)


def test_frame_statistics_match_concatenated_frames(tiny_data):
    statistics = tiny_data["train"].frame_statistics()
    for modality, sequences in tiny_data["train"].sequences.items():
        frames = torch.from_numpy(np.concatenate(sequences).astype(np.float64))
        mean, std = statistics[modality]
        assert torch.allclose(mean, frames.mean(0).float(), atol=1e-5)
        assert torch.allclose(std, frames.std(0).float(), atol=1e-4)


def _with_sentiment(data: MultimodalData, seed: int = 0) -> MultimodalData:
    rng = np.random.default_rng(seed)
    table = data.table.copy()
    table["sentiment"] = np.array([-2.0, -0.5, 0.8, 2.2])[table["label_id"]] + rng.normal(0, 0.2, len(table))
    return MultimodalData(table, data.sequences)


def test_regression_fit_learns_sentiment(tiny_data):
    splits = {name: _with_sentiment(data, i) for i, (name, data) in enumerate(tiny_data.items())}
    seed_everything(0)
    config = FusionConfig(
        input_dims=splits["train"].dims(), d_model=16, num_heads=2, gate="none", task="regression"
    )
    model = FusionModel(config)
    before = predict(model, splits["test"])
    result = fit(model, splits["train"], splits["dev"], LOOP)
    after = predict(model, splits["test"])
    assert {"sentiment", "sentiment_pred"} <= set(after.columns) and "pred_id" not in after
    assert result.best_dev_score == max(result.history["dev_score"]) and result.best_dev_score < 0  # -MAE
    metrics = regression_metrics(after["sentiment"], after["sentiment_pred"])
    assert metrics["mae"] < regression_metrics(before["sentiment"], before["sentiment_pred"])["mae"]
    assert metrics["pearson"] > 0.8 and metrics["acc2_non0"] > 0.8


def test_multitask_predicts_sentiment_classes(tiny_data):
    splits = {name: _with_sentiment(data, i) for i, (name, data) in enumerate(tiny_data.items())}
    seed_everything(0)
    config = FusionConfig(
        input_dims=splits["train"].dims(), d_model=16, num_heads=2, mode="ensemble", sentiment_weight=0.5
    )
    model = FusionModel(config)
    fit(model, splits["train"], splits["dev"], LOOP)
    frame = predict(model, splits["test"])
    assert (frame["sentiment_pred_id"] == frame["sentiment_label_id"]).mean() > 0.8


def test_seed_workers_give_the_models_and_predictions_of_one_process(tmp_path, monkeypatch):
    """A stage's seeds trained side by side in forked single-threaded workers (the CPU default)
    write exactly the weights, predictions and config of the same seeds trained one after the
    other in the stage's own process."""
    import pandas as pd

    import mer.train
    from mer.params import TrainParams
    from mer.workers import cpu_cores
    from tests.conftest import write_feature_corpus

    dims = {"text": 12, "audio": 10}
    write_feature_corpus(tmp_path, "source", dims, seed=0)
    params = TrainParams(epochs=3, batch_size=8, seeds=(0, 1, 2), device="cpu")
    assert mer.train.seed_workers("cpu", 3) == min(3, 2 * cpu_cores()) > 1
    assert mer.train.seed_workers("cpu", 3, world_size=2) == 1  # torchrun: the ranks share each seed
    outputs = {}
    for workers in (1, 3):
        monkeypatch.setattr(mer.train, "seed_workers", lambda device, seeds, world_size, w=workers: w)
        outputs[workers] = tmp_path / f"out{workers}"
        results = mer.train.train_source_model(
            config=FusionConfig(d_model=16, num_heads=2, modalities=("text", "audio")), train_params=params,
            metadata_path=tmp_path / "source.parquet", feature_root=tmp_path / "source",
            model_dir=outputs[workers] / "model", predictions_dir=outputs[workers] / "predictions",
            live_dir=outputs[workers] / "live",
        )  # fmt: skip
        assert [len(r.history["train_loss"]) for r in results] == [3, 3, 3]
    files = sorted(p.relative_to(outputs[1]) for p in outputs[1].rglob("*") if p.is_file())
    assert {f.name for f in files} >= {"config.json", "seed0.safetensors", "seed2.safetensors"}
    assert sum(f.suffix == ".parquet" for f in files) == 6  # test and dev predictions per seed
    assert files == sorted(p.relative_to(outputs[3]) for p in outputs[3].rglob("*") if p.is_file())
    for file in files:
        if file.suffix == ".parquet":
            one, three = (pd.read_parquet(outputs[w] / file) for w in (1, 3))
            pd.testing.assert_frame_equal(one, three, check_exact=True)
        elif file.suffix in (".safetensors", ".json") and "live" not in file.parts:
            assert (outputs[1] / file).read_bytes() == (outputs[3] / file).read_bytes(), file
    one = load_model(outputs[1] / "model")
    first, second = (one.models[seed].state_dict() for seed in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)  # each worker trained its own seed


def test_plateau_scheduler_lowers_the_learning_rate():
    from tests.conftest import make_sequences, make_table

    table = make_table(4)
    noise = MultimodalData.from_arrays(table, make_sequences(table, {"text": 6}, signal=0.0))
    model = _model(noise, mode="text")
    cfg = LoopConfig(epochs=12, batch_size=8, lr=1e-3, weight_decay=0.0, patience=50, grad_clip=1.0, seed=0,
                     lr_factor=0.5, lr_patience=1)  # fmt: skip
    result = fit(model, noise, noise.subset(range(4)), cfg)
    assert result.history["lr"][0] == 1e-3 and min(result.history["lr"]) <= 5e-4


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU ranks (gloo): each takes half of every global batch and DDP averages
    the gradients, so the trained model matches one process on the whole batch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = str(repo / "tests/scripts/ddp_fit.py")
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "MER_LOG_LEVEL": "WARNING"}
    single = subprocess.run([sys.executable, script, str(tmp_path / "single.npy")], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               script, str(tmp_path / "ddp.npy")]  # fmt: skip
    ddp = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = np.load(tmp_path / "single.npy"), np.load(tmp_path / "ddp.npy")
    assert one.shape == two.shape == (12, 4)
    assert np.allclose(one, two, atol=1e-3), np.abs(one - two).max()
    assert not np.allclose(one, 0.0)


def test_checkpoint_of_another_layout_fails_naming_the_fix(tmp_path):
    from safetensors.torch import save_file

    config = FusionConfig(
        input_dims={"text": 4, "audio": 4}, modalities=("text", "audio"), d_model=8, num_heads=2
    )
    model = FusionModel(config)
    model_dir = save_model(tmp_path / "m", model)
    state = {k.replace("fuser.", ""): v for k, v in model.state_dict().items()}  # the pre-fuser layout
    save_file(state, str(model_dir / "seed0.safetensors"))
    with pytest.raises(RuntimeError, match=r"seed0\.safetensors: sha256 differs"):
        load_model(model_dir)
    description = json.loads((model_dir / "config.json").read_text())
    description["weights"]["0"]["sha256"] = hashlib.sha256(
        (model_dir / "seed0.safetensors").read_bytes()
    ).hexdigest()
    (model_dir / "config.json").write_text(json.dumps(description))
    with pytest.raises(RuntimeError, match=r"seed0\.safetensors: the weights do not fit.*dvc repro"):
        load_model(model_dir)
    # a pickled .pt of an older mer is refused without unpickling it
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"config": config.to_dict(), "state_dict": model.state_dict()}, old / "seed0.pt")
    with pytest.raises(RuntimeError, match=r"seed0\.pt: a pickled checkpoint of an older mer.*dvc repro"):
        load_model(old)


def test_dev_score_is_the_ua_of_the_predictions(tiny_data):
    from mer.metrics import classification_metrics
    from mer.train import dev_score

    model = _model(tiny_data["train"])
    fit(model, tiny_data["train"], tiny_data["dev"], LoopConfig(**{**LOOP.__dict__, "epochs": 2}))
    frame = predict(model, tiny_data["dev"])
    expected = classification_metrics(frame["label_id"], frame["pred_id"], tiny_data["dev"].classes)["ua"]
    assert 0.0 < dev_score(model, tiny_data["dev"]) == expected
    splits = {name: _with_sentiment(data, i) for i, (name, data) in enumerate(tiny_data.items())}
    seed_everything(0)
    regression = FusionModel(
        FusionConfig(input_dims=splits["dev"].dims(), d_model=16, num_heads=2, gate="none", task="regression")
    )
    frame = predict(regression, splits["dev"])
    mae = regression_metrics(frame["sentiment"], frame["sentiment_pred"])["mae"]
    assert dev_score(regression, splits["dev"]) == -mae < 0


def test_fit_logs_each_epoch_at_debug_level(tiny_data, caplog):
    caplog.set_level(logging.DEBUG, logger="mer.train")
    result = fit(_model(tiny_data["train"]), tiny_data["train"], tiny_data["dev"],
                 LoopConfig(**{**LOOP.__dict__, "epochs": 3}), prefix="run/")  # fmt: skip
    epochs = [r for r in caplog.records if r.levelno == logging.DEBUG and "epoch" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in epochs] == ["run/epoch 0", "run/epoch 1", "run/epoch 2"]
    assert f"dev {result.history['dev_score'][1]:.4f}" in epochs[1].getMessage()


def test_copy_model_is_load_model_without_the_disk(tiny_data, tmp_path):
    source = _model(tiny_data["train"])
    path = save_model(tmp_path / "m", source)
    seed_everything(5)
    loaded, after_load = load_model(path).first(), torch.rand(4)
    seed_everything(5)
    copied, after_copy = copy_model(source), torch.rand(4)
    assert torch.equal(after_load, after_copy)  # the same RNG draws: seeded runs that follow agree
    assert predict(copied, tiny_data["test"]).equals(predict(loaded, tiny_data["test"]))
    copied.add_input_adapters(4)  # the copy owns its config and weights
    assert source.config.input_adapters == 0 and source.input_adapters is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("rank", "env", "shown"),
    [(0, None, True), (1, None, False), (0, "1", False), (0, "true", False), (0, "0", True)],
)
def test_progress_bar_rank_zero_only_and_off_under_tqdm_disable(monkeypatch, rank, env, shown):
    from mer.train import progress_bar, showing

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    with showing(progress_bar(3, "transfer", rank)) as bar:
        assert bar.disable is not shown  # (tqdm marks a closed bar disabled)
        for _ in range(3):
            bar.update()
    assert ("transfer: 100%" in terminal.getvalue() and "3/3" in terminal.getvalue()) is shown


def test_progress_bar_is_off_where_stderr_is_not_a_terminal(monkeypatch):
    from mer.train import progress_bar

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # CI, captured logs
    assert progress_bar(3, "train", rank=0).disable
