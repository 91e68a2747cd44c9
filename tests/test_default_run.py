"""The committed default run (``make repro`` on the embedded synthetic corpus) shows what the
model zoo and transfer must show: fusion beats concatenation and every unimodal baseline, the
seed-003 full model beats its cross-attention baseline, regression reports MOSI-style metrics,
the main model's audio weight drops on noisy-audio utterances, a better-founded adapter raises
zero-shot target UA, fine-tuning beats training from scratch at 10 % and 20 %, and paired
extractor-swap adapters beat seed 002's random pairs.

These read the committed ``metrics/`` and ``dvc.lock``; the lock must hold the current
``params.yaml`` values, so the numbers belong to the params in the tree (after changing params or
model code, ``make repro`` and commit).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL_STAGES = ("train", "baseline@concat", "ablation@full", "adapt", "transfer")


def _metrics(name: str) -> dict:
    return json.loads((REPO / "metrics" / f"{name}.json").read_text())


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


def test_fusion_beats_concat_and_every_unimodal_baseline():
    source, ablation = _metrics("source"), _metrics("ablation")
    baselines = {m: source[f"source/test/baselines/{m}/ua"] for m in ("concat", "text", "audio", "video")}
    assert source["source/test/n_seeds"] >= 3
    for name, ua in (("main", source["source/test/ua"]), ("full", ablation["ablation/full/ua"])):
        for baseline, baseline_ua in baselines.items():
            assert ua > baseline_ua, f"{name} UA {ua} <= {baseline} UA {baseline_ua}"
    assert ablation["ablation/full/delta_ua"] > 0  # the full seed-003 model over its baseline


def test_regression_reports_mosi_style_metrics():
    source = _metrics("source")
    prefix = "source/test/baselines/regression"
    assert 0 < source[f"{prefix}/mae"] < 1.5
    assert source[f"{prefix}/pearson"] > 0.5
    for metric in ("acc2_has0", "acc2_non0", "acc7"):
        assert 0.0 <= source[f"{prefix}/{metric}"] <= 1.0
    assert source[f"{prefix}/acc2_non0"] > 0.6


def test_audio_weight_drops_on_noisy_audio():
    source = _metrics("source")
    assert source["source/test/gates/audio/drop"] > 0.1
    assert source["source/test/gates/audio/unreliable"] < source["source/test/gates/audio/reliable"]
    for emotion in ("anger", "happiness", "neutral", "sadness"):
        assert source[f"source/test/gates/audio/by_emotion/{emotion}"] > 0


def test_a_better_founded_adapter_raises_zero_shot_target_ua():
    transfer = _metrics("transfer")
    none = transfer["target/zeroshot/none/ua"]
    better = {m: transfer[f"target/zeroshot/{m}/ua"] for m in ("coral", "mmd", "adversarial")}
    assert max(better.values()) > none, (none, better)
    adapt = _metrics("adapt")
    for modality in ("text", "audio", "video"):  # CORAL's own distance falls for every modality
        assert adapt[f"adapt/coral/{modality}/coral_after"] < adapt[f"adapt/coral/{modality}/coral_before"]


def test_finetuning_beats_scratch_at_10_and_20_percent():
    transfer = _metrics("transfer")
    assert transfer["target/fewshot/10/full/n_seeds"] >= 3
    for fraction in (10, 20):
        full, scratch = (transfer[f"target/fewshot/{fraction}/{s}/ua"] for s in ("full", "scratch"))
        assert full > scratch, (fraction, full, scratch)


def test_paired_swap_adapter_beats_random_pairs():
    transfer = _metrics("transfer")
    assert transfer["target/swap/paired/ua"] > transfer["target/swap/seed002/ua"]
