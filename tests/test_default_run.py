"""The committed default run (``make repro`` on the embedded synthetic corpus): every stated
comparison carries its interval and a verdict that follows from it, no gain is claimed within
noise, and the mechanics the synthetic corpus was built to show hold *beyond noise*: fusion beats
every unimodal baseline, regression reports MOSI-style metrics, the main model's audio weight
drops on noisy-audio utterances, fine-tuning beats training from scratch at 10 % and 20 %, and
paired extractor-swap adapters beat seed 002's random pairs.

These read the committed ``metrics/``, ``results/`` and ``dvc.lock``; the lock must hold the
current ``params.yaml`` values, so the numbers belong to the params in the tree (after changing
params or model code, ``make repro`` and commit).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL_STAGES = ("train@main", "baseline@concat-main", "ablation@full-main", "adapt", "transfer")


def _metrics(name: str) -> dict:
    return json.loads((REPO / "metrics" / f"{name}.json").read_text())


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(REPO / "results" / f"{name}.csv", keep_default_na=False, dtype={"budget": str})


def _verdict(table: str, a: str, b: str, metric: str = "ua", budget: str = "") -> str:
    rows = _csv("comparisons")
    row = rows[(rows["table"] == table) & (rows["a"] == a) & (rows["b"] == b) & (rows["metric"] == metric)
               & (rows["budget"] == budget)]  # fmt: skip
    assert len(row) == 1, (table, a, b, metric, budget)
    return row["verdict"].iloc[0]


def _lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_committed_run_used_the_current_params(stage):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    locked = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"][stage]["params"]["params.yaml"]
    for key, value in locked.items():
        assert _lookup(params, key) == value, f"dvc.lock {stage}: {key} is {value!r}; run `make repro`"


def test_every_verdict_follows_from_its_interval_and_the_report_claims_no_gain_within_noise():
    rows = _csv("comparisons")
    assert len(rows) >= 40 and set(rows["table"]) >= {"baselines", "ablation", "zeroshot", "fewshot", "kshot"}
    for _, row in rows.iterrows():
        low, high = float(row["low"]), float(row["high"])
        up, down = ("better", "worse") if row["metric"] != "mae" else ("worse", "better")  # MAE: lower
        expected = up if low > 0 else down if high < 0 else "within noise"
        assert row["verdict"] == expected, row.to_dict()
        assert low <= float(row["delta"]) <= high and float(row["p_holm"]) >= float(row["p"])
    summary = (REPO / "reports/summary.md").read_text()
    sentence = next(line for line in summary.splitlines() if line.startswith("In UA, the main model"))
    beaten = sentence.split(" beats ", 1)[1].split(";")[0] if " beats " in sentence else ""
    noise = rows[(rows["table"] == "baselines") & (rows["metric"] == "ua") & (rows["verdict"] != "better")]
    names = {"concat": "early fusion (concat)", "late": "late fusion", "ensemble": "early + late ensemble"}
    for baseline in noise["b"]:
        assert names.get(baseline, baseline) not in beaten, (baseline, sentence)
    models = _csv("models")
    main = models[(models["model"] == "fusion") & (models["metric"] == "ua")].iloc[0]
    assert int(main["n_seeds"]) >= 3 and main["folds"] == "main" and int(main["n_test"]) == 240
    cells = [f"{100 * float(main[c]):.1f}" for c in ("value", "low", "high")]
    assert f"| main model (fusion section) | {cells[0]} [{cells[1]}, {cells[2]}] |" in summary


def test_headline_metrics_are_few_numbers_with_intervals():
    leaves = []
    for name in ("source", "ablation", "transfer", "metadata"):
        data = _metrics(name)
        for value in data.values():
            leaves += list(value.values()) if isinstance(value, dict) else [value]
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in leaves)
    assert len(leaves) <= 150, len(leaves)
    source = _metrics("source")
    for metric in ("ua", "wa", "f1_weighted"):
        assert source[f"main/{metric}_low"] <= source[f"main/{metric}"] <= source[f"main/{metric}_high"]
    assert 0 < source["main/dev_ua"] <= 1


def test_fusion_beats_every_unimodal_baseline_beyond_noise():
    for baseline in ("text", "audio", "video"):
        assert _verdict("baselines", "fusion", baseline) == "better", baseline
    assert _verdict("baselines", "fusion", "concat") != "worse"


def test_regression_reports_mosi_style_metrics():
    models = _csv("models")
    regression = models[models["model"] == "regression"].set_index("metric")
    assert 0 < float(regression.loc["mae", "value"]) < 1.5
    assert float(regression.loc["pearson", "low"]) > 0.3
    for metric in ("acc2_has0", "acc2_non0", "acc7"):
        assert 0.0 <= float(regression.loc[metric, "value"]) <= 1.0
    assert float(regression.loc["acc2_non0", "value"]) > 0.6


def test_audio_weight_drops_on_noisy_audio():
    gates = json.loads((REPO / "results/gates.json").read_text())
    assert gates["audio"]["drop"] > 0.1
    assert gates["audio"]["unreliable"] < gates["audio"]["reliable"]
    for emotion in ("anger", "happiness", "neutral", "sadness"):
        assert gates["audio"]["by_emotion"][emotion] > 0


def test_finetuning_beats_scratch_at_10_and_20_percent():
    for fraction in ("10", "20"):
        assert _verdict("fewshot", "scratch", "full", budget=fraction) == "worse", fraction
    grid = _csv("transfer")
    full = grid[(grid["kind"] == "fraction") & (grid["setting"] == "full") & (grid["metric"] == "ua")]
    assert set(full["n_seeds"].astype(int)) == {3}


def test_adapter_and_strategies_are_selected_on_dev():
    grid = _csv("transfer")
    ua = grid[grid["metric"] == "ua"]
    for (kind, budget), rows in ua[ua["kind"] != "swap"].groupby(["kind", "budget"]):
        assert rows["best_by_dev"].astype(int).sum() == 1, (kind, budget)
        chosen = rows[rows["best_by_dev"].astype(int) == 1].iloc[0]
        assert float(chosen["dev"]) == max(float(d) for d in rows["dev"] if d != ""), (kind, budget)


def test_paired_swap_adapter_beats_random_pairs():
    assert _verdict("swap", "paired", "seed002") == "better"


def test_robustness_covers_every_condition_and_removing_the_leaned_on_modality_hurts():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    frame = _csv("robustness")
    snrs, noises = params["robustness"]["snrs"], params["robustness"]["noises"]
    expected = {"clean"} | {f"without {m}" for m in params["model"]["modalities"]}
    expected |= {f"{noise} {float(snr):g} dB" for noise in noises for snr in snrs}
    for model in ("fusion", "concat"):
        assert set(frame.loc[frame["model"] == model, "condition"]) == expected, model
    # the modality the main model leans on most: the largest mean gate (results/gates.json)
    gates = json.loads((REPO / "results/gates.json").read_text())
    leaned = max(gates, key=lambda m: sum(gates[m]["by_emotion"].values()))
    row = frame[(frame["model"] == "fusion") & (frame["condition"] == f"without {leaned}")].iloc[0]
    assert row["metric"] == "ua" and float(row["delta_high"]) < 0 and row["verdict"] == "worse", row.to_dict()
    headline = _metrics("robustness")
    assert headline["fusion/worst_ua"] <= headline["fusion/clean_ua"]
