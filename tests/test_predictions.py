"""What the evaluate stage reads and writes by name: the prediction-file layout (one reader,
``mer.predictions``, shared with ``mer.review``) and the metric keys (``mer.metric_keys``, written
by ``mer.evaluate`` and read back by ``mer.sweep``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer import metric_keys as keys
from mer import predictions, review, sweep
from mer.evaluate import (
    TransferGroup,
    ablation_comparisons,
    ablation_metrics,
    adjust,
    baseline_comparisons,
    model_result,
    source_metrics,
    transfer_comparisons,
    transfer_metrics,
)

CLASSES = ("anger", "happiness", "neutral", "sadness")


def _classifier(n: int, wrong: float, seed: int, fold: str = "1") -> pd.DataFrame:
    """``n`` utterances of a 4-class classifier, a share ``wrong`` predicted wrong."""
    rng = np.random.default_rng([seed, int(wrong * 100), len(fold)])
    labels = np.arange(n) % 4
    preds = np.where(rng.random(n) < wrong, (labels + 1) % 4, labels)
    frame = pd.DataFrame(
        {"utt_id": [f"{fold}-{i:03d}" for i in range(n)], "label_id": labels, "pred_id": preds}
    )
    return frame.assign(**{f"prob_{c}": 0.25 for c in CLASSES})


def _regressor(n: int, noise: float, seed: int) -> pd.DataFrame:
    truth = np.linspace(-3, 3, n)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "utt_id": [f"1-{i:03d}" for i in range(n)], "sentiment": truth,
        "sentiment_pred": truth + rng.normal(0, noise, n),
    })  # fmt: skip


def _write(root: Path, model: str, fold: str, seed: int, frame: pd.DataFrame, split: str = "test") -> Path:
    folder = root / model / fold / ("dev" if split == "dev" else "")
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / f"seed{seed}.parquet", index=False)
    return folder / f"seed{seed}.parquet"


# ---------------------------------------------------------------- the prediction layout


def test_read_model_reads_the_requested_folds_in_order_and_each_split(tmp_path):
    root = tmp_path / "source"
    for fold in ("1", "2"):
        for seed in (10, 0, 2):  # seeds ascending, not as written nor by file name (seed10 < seed2)
            _write(root, "fusion", fold, seed, _classifier(8, 0.2, seed, fold))
        _write(root, "fusion", fold, 0, _classifier(4, 0.5, 7, fold), split="dev")
    _write(root, "fusion", "", 0, _classifier(8, 0.0, 0))  # fusion/seed0.parquet: no fold folder
    (root / "fusion" / "1" / "notes.txt").write_text("not a prediction file")
    _write(root, "concat", "1", 0, _classifier(8, 0.3, 0))

    test = predictions.read_model(root, "fusion", ["2", "1", "3"])
    assert list(test) == ["2", "1"] and all(list(seeds) == [0, 2, 10] for seeds in test.values())
    pd.testing.assert_frame_equal(test["1"][10], _classifier(8, 0.2, 10, "1"))
    dev = predictions.read_model(root, "fusion", ["1", "2"], split="dev")
    assert {fold: list(seeds) for fold, seeds in dev.items()} == {"1": [0], "2": [0]}
    assert len(dev["2"][0]) == 4
    assert predictions.read_model(root, "fusion", ["3"]) == {}
    assert predictions.read_model(root, "missing", ["1"]) == {}


def test_layout_is_the_one_parser_behind_review(tmp_path):
    paths = [
        "data/predictions/source/fusion/main/seed1.parquet",
        "data/predictions/source/fusion/main/seed0.parquet",
        "data/predictions/source/fusion/main/dev/seed0.parquet",
        "data/predictions/source/folds/1/seed0.parquet",  # the tree before per-fold predictions
        "data/predictions/source/fusion/main/extra/seed0.parquet",
        "data/predictions/ablation/micl/1/seed3.parquet",
    ]
    source = predictions.layout(paths, predictions.SOURCE_ROOT)
    assert source == {"fusion": {"main": {0: paths[1], 1: paths[0]}}}
    assert predictions.layout(paths, predictions.SOURCE_ROOT, "dev") == {"fusion": {"main": {0: paths[2]}}}
    # review keys an ablation recipe by its root; the files are the shared parser's
    assert review.prediction_layout(paths) == {
        "fusion": source["fusion"],
        "ablation/micl": {"1": {3: paths[5]}},
    }
    with pytest.raises(ValueError, match="split 'train'"):
        predictions.layout(paths, predictions.SOURCE_ROOT, "train")


def test_read_frames_from_bytes_matches_the_files(tmp_path):
    path = _write(tmp_path, "fusion", "1", 0, _classifier(6, 0.1, 0))
    files = {"1": {0: path.as_posix()}}
    local = predictions.read_frames(files)
    via_bytes = predictions.read_frames(files, lambda name: Path(name).read_bytes())
    pd.testing.assert_frame_equal(local["1"][0], via_bytes["1"][0])


def test_read_seeds_of_a_transfer_setting(tmp_path):
    setting = tmp_path / "zeroshot" / "coral"
    setting.mkdir(parents=True)
    for seed in (1, 0):
        _classifier(5, 0.2, seed).to_parquet(setting / f"seed{seed}.parquet", index=False)
    (setting / "seed.parquet").write_bytes(b"")  # no seed number: not a prediction file
    assert list(predictions.read_seeds(setting)) == [0, 1]
    assert predictions.read_seeds(setting / "dev") == {}


# ---------------------------------------------------------------- metric keys


def test_key_builders():
    assert keys.main("ua") == "main/ua" and keys.low(keys.main("ua")) == "main/ua_low"
    assert keys.high(keys.baseline("late", keys.delta("ua"))) == "baselines/late/delta_ua_high"
    assert keys.main(keys.dev("mae")) == "main/dev_mae" and keys.main(keys.N_TEST) == "main/n_test"
    assert keys.transfer("fraction", "10", "full", "ua") == "fraction/10/full/ua"
    assert keys.best_by_dev("zeroshot", "", "coral", "ua") == "zeroshot/best_by_dev/coral/ua"


def _interval(key: str) -> set[str]:
    """A key with its 95 % interval's keys."""
    return {key, keys.low(key), keys.high(key)}


def _models():
    folds = {"1": {seed: _classifier(80, 0.1, seed) for seed in (0, 1)}}
    worse = {"1": {seed: _classifier(80, 0.4, seed) for seed in (0, 1)}}
    main = model_result(keys.MAIN_MODEL, "main", folds, folds)
    concat = model_result("concat", "baseline", worse)
    regression = model_result("regression", "baseline", {"1": {s: _regressor(80, 0.5, s) for s in (0, 1)}})
    return main, concat, regression


def test_source_metrics_are_written_with_the_keys_defined_once():
    main, concat, regression = _models()
    baselines = [concat, regression]
    metrics = source_metrics(main, baselines, adjust(baseline_comparisons(main, baselines)))
    design = {keys.main(name) for name in (keys.dev("ua"), keys.N_SEEDS, keys.N_FOLDS, keys.N_TEST)}
    headline = {k for m in keys.HEADLINE["classification"] for k in _interval(keys.main(m))}
    # concat (a classifier): its UA and the paired delta; regression (another task): its own interval
    concat_keys = {keys.baseline("concat", "ua"), *_interval(keys.baseline("concat", keys.delta("ua")))}
    assert set(metrics) == design | headline | concat_keys | _interval(keys.baseline("regression", "mae"))
    ua = metrics[keys.main("ua")]
    assert metrics[keys.low(keys.main("ua"))] <= ua <= metrics[keys.high(keys.main("ua"))]
    assert metrics[keys.baseline("concat", keys.delta("ua"))] > 0 and metrics[keys.main(keys.N_TEST)] == 80
    # the sweep reads the same keys back as its defaults
    rows = [{"metrics": {f"{keys.SOURCE_FILE}:{key}": value for key, value in metrics.items()}}]
    assert sweep.default_metric(rows) == f"{keys.SOURCE_FILE}:{keys.main('ua')}"
    assert sweep.default_select(rows) == f"{keys.SOURCE_FILE}:{keys.main(keys.dev('ua'))}"


def test_ablation_and_transfer_metrics_keys():
    main, _, _ = _models()
    frames = {"1": {seed: _classifier(80, 0.3, seed) for seed in (0, 1)}}
    table = {"cross_attention": model_result("cross_attention", "ablation", frames), keys.MAIN_MODEL: main}
    ablation = ablation_metrics(table, adjust(ablation_comparisons(table)))
    rows = {keys.ablation(name, "ua") for name in table}
    assert set(ablation) == rows | _interval(keys.ablation(keys.MAIN_MODEL, keys.delta("ua")))

    settings = {name: model_result(name, "zeroshot", {"target": {0: _classifier(80, wrong, 0)}})
                for name, wrong in (("none", 0.4), ("coral", 0.1))}  # fmt: skip
    settings["none"].dev, settings["coral"].dev = {"ua": 0.6}, {"ua": 0.9}
    groups = [TransferGroup("zeroshot", "", settings)]
    transfer = transfer_metrics(groups, adjust(transfer_comparisons(groups)))
    selected = {keys.best_by_dev("zeroshot", "", "coral", "ua")}
    selected |= _interval(keys.best_by_dev("zeroshot", "", "coral", keys.delta("ua")))
    assert set(transfer) == _interval(keys.transfer("zeroshot", "", "none", "ua")) | selected
