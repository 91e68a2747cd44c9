"""``reports/summary.md`` from small synthetic ``results/`` tables: every compared number carries its
interval, and no gain is claimed when the interval of the difference covers 0."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mer.report import NO_TARGET, build_summary

PROTOCOL = "speaker-independent split"


def _model(model, role, metric, value, low, high, task="classification", dev=0.9, folds="main"):
    return {"model": model, "role": role, "task": task, "metric": metric, "value": value, "low": low,
            "high": high, "seed_std": 0.01, "dev": dev, "n_seeds": 3, "n_folds": len(folds.split()),
            "n_test": 240, "folds": folds, "protocol": PROTOCOL}  # fmt: skip


def _comparison(table, a, b, delta, low, high, verdict, budget="", metric="ua"):
    return {"table": table, "a": a, "b": b, "budget": budget, "metric": metric, "a_value": 0.9,
            "b_value": 0.9 - delta, "delta": delta, "low": low, "high": high, "p": 0.01, "p_holm": 0.03,
            "verdict": verdict, "n_seeds": 3, "n_folds": 1, "n_test": 240}  # fmt: skip


def _transfer(kind, setting, value, best=0, budget=""):
    return {"kind": kind, "budget": budget, "setting": setting, "metric": "ua", "value": value,
            "low": value - 0.02, "high": value + 0.02, "seed_std": 0.01, "dev": value, "n_seeds": 3,
            "n_test": 120, "n_train": 18, "best_by_dev": best}  # fmt: skip


MODELS = [
    _model("fusion", "main", "ua", 0.931, 0.910, 0.952),
    _model("fusion", "main", "wa", 0.930, 0.909, 0.951),
    _model("fusion", "main", "f1_weighted", 0.929, 0.908, 0.950),
    _model("concat", "baseline", "ua", 0.900, 0.880, 0.920),
    _model("late", "baseline", "ua", 0.925, 0.905, 0.945),
    _model("ensemble", "baseline", "ua", 0.928, 0.908, 0.948),
    _model("text", "baseline", "ua", 0.600, 0.560, 0.640),
    # the evaluate stage writes a multi-task model's sentiment head as the model <name>/sentiment
    _model("multitask/sentiment", "baseline", "ua", 0.532, 0.520, 0.544),
    _model("multitask/sentiment", "baseline", "f1_weighted", 0.822, 0.800, 0.844),
    _model("regression", "baseline", "mae", 0.700, 0.650, 0.750, task="regression"),
    _model("regression", "baseline", "pearson", 0.820, 0.790, 0.850, task="regression"),
    _model("cross_attention", "ablation", "ua", 0.920, 0.900, 0.940),
    _model("full", "ablation", "ua", 0.930, 0.910, 0.950),
]
COMPARISONS = [
    _comparison("baselines", "fusion", "concat", 0.031, 0.010, 0.052, "better"),
    _comparison("baselines", "fusion", "late", 0.006, -0.010, 0.022, "within noise"),
    # a verdict the interval does not support: the summary must not repeat the claim
    _comparison("baselines", "fusion", "ensemble", 0.003, -0.002, 0.008, "better"),
    _comparison("baselines", "fusion", "text", 0.331, 0.300, 0.362, "better"),
    _comparison("ablation", "full", "cross_attention", 0.010, -0.005, 0.025, "within noise"),
    _comparison("zeroshot", "coral", "none", 0.020, -0.010, 0.050, "within noise"),
    _comparison("zeroshot", "mmd", "none", -0.030, -0.050, -0.010, "worse"),
    _comparison("fewshot", "dann", "full", 0.010, -0.010, 0.030, "within noise", budget="10"),
    _comparison("fewshot", "scratch", "full", -0.230, -0.260, -0.200, "worse", budget="10"),
    _comparison("swap", "paired", "seed002", 0.067, 0.040, 0.094, "better"),
]
TRANSFER = [
    _transfer("zeroshot", "none", 0.78),
    _transfer("zeroshot", "coral", 0.80, best=1),
    _transfer("zeroshot", "mmd", 0.75),
    _transfer("fraction", "full", 0.83, budget="10"),
    _transfer("fraction", "dann", 0.84, best=1, budget="10"),
    _transfer("fraction", "scratch", 0.60, budget="10"),
    _transfer("kshot", "full", 0.79, best=1, budget="1"),
    _transfer("swap", "original", 0.97),
    _transfer("swap", "seed002", 0.91),
    _transfer("swap", "paired", 0.98),
]


SPLITS = ("train", "train", "train", "train", "dev", "test")


def _metadata(domain: str, corpus: str, n: int = 12) -> pd.DataFrame:
    table = pd.DataFrame({"utt_id": [f"{domain}{i}" for i in range(n)],
                          "corpus": f"synthetic_{domain}" if corpus == "synthetic" else corpus,
                          "speaker": [f"s{i % 6}" for i in range(n)],
                          "split": [SPLITS[i % 6] for i in range(n)]})  # fmt: skip
    table.attrs = {"corpus": corpus, "classes": ["anger", "happiness", "neutral", "sadness"]}
    return table


def _write(root: Path, corpus: str = "synthetic", target: bool = True, results: dict | None = None) -> dict:
    """The summary's inputs under ``root``; ``results`` overrides (``None`` value: file left out)."""
    dirs = {name: root / name for name in ("metrics", "results", "png", "metadata")}
    for path in dirs.values():
        path.mkdir()
    _metadata("source", corpus).to_parquet(dirs["metadata"] / "source.parquet")
    target_table = _metadata("target", corpus) if target else _metadata("target", corpus).iloc[:0]
    target_table.to_parquet(dirs["metadata"] / "target.parquet")
    roles = {"source": {"corpus": corpus, "utterances": 12}}
    roles["target"] = {"corpus": corpus if target else "none", "utterances": 12 if target else 0}
    (dirs["metrics"] / "metadata.json").write_text(json.dumps(roles))
    files = {
        "models.csv": MODELS, "comparisons.csv": COMPARISONS, "transfer.csv": TRANSFER,
        "per_class.csv": [{"model": "fusion", "class": c, "recall": 0.9} for c in ("anger", "sadness")],
        "per_speaker.csv": [{"model": "fusion", "group": "gender", "name": "F", "n": 120, "ua": 0.92},
                            {"model": "fusion", "group": "speaker", "name": "s5", "n": 40, "ua": 0.95}],
        "gates.json": {"audio": {"reliable": 1.5, "unreliable": 0.8, "drop": 0.7,
                                 "by_emotion": {"anger": 1.1}}},
        "adapt.json": {"adapt/coral/audio/coral_before": 0.09, "adapt/coral/audio/coral_after": 0.005,
                       "adapt/coral/audio/cka_kept": 0.98},
        "provenance.json": {"git_commit": "abc123", "packages": {"mer": "0.1.0"}},
    } | (results or {})  # fmt: skip
    for name, content in files.items():
        if content is None:
            continue
        if name.endswith(".csv"):
            pd.DataFrame(content).to_csv(dirs["results"] / name, index=False)
        else:
            (dirs["results"] / name).write_text(json.dumps(content))
    return {"metrics_dir": dirs["metrics"], "results_dir": dirs["results"], "png_dir": dirs["png"],
            "metadata_dir": dirs["metadata"], "out": root / "reports" / "summary.md"}  # fmt: skip


def _summary(tmp_path: Path, **kwargs) -> str:
    return build_summary(**_write(tmp_path, **kwargs)).read_text()


def _section(text: str, heading: str) -> str:
    """The text from ``heading`` to the next heading."""
    body = text.split(heading + "\n", 1)[1]
    return body.split("\n#", 1)[0]


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_source_table_carries_intervals_dev_and_protocol_cell(tmp_path):
    text = _summary(tmp_path)
    assert "mechanics check, not an emotion-recognition result" in text
    row = _line(text, "| main model (fusion section) |")
    assert row == (
        "| main model (fusion section) | 93.1 [91.0, 95.2] | 93.0 [90.9, 95.1] | 92.9 [90.8, 95.0] | 90.0 "
        "| speaker-independent split; folds: main; 3 seeds; 240 test utt. |"
    )
    assert _line(text, "| early fusion (concat) |").startswith(
        "| early fusion (concat) | 90.0 [88.0, 92.0] |"
    )
    regression = _line(text, "| cross-attention regression (seed 002) |")
    assert "0.700 [0.650, 0.750] | 0.820 [0.790, 0.850]" in regression
    assert (
        "ensemble + sentiment head (multi-task), 3-way sentiment head (sign of the sentiment score): "
        "UA 53.2% [52.0, 54.4], weighted F1 82.2% [80.0, 84.4]." in text
    )
    assert "| multitask/sentiment |" not in text  # the head is not a model row of the table
    assert "How to read the intervals" in text and "Holm-adjusted" in text and "`mer.uncertainty`" in text


def test_gains_only_where_the_interval_excludes_zero(tmp_path):
    text = _summary(tmp_path)
    sentence = _line(text, "In UA, the main model")
    beats, _, rest = sentence.partition(";")
    assert beats == "In UA, the main model beats early fusion (concat) and text only"
    assert "is within noise of late fusion and early + late ensemble" in rest
    assert "late fusion" not in beats and "ensemble" not in beats
    table = _section(text, "### Main model vs baselines")
    late = _line(table, "| late fusion | 92.5 [90.5, 94.5] |")
    assert late.endswith("| +0.6 [-1.0, +2.2] | 0.030 | within noise |")
    # the CSV said "better" but the interval covers 0: reported as within noise
    assert _line(table, "| early + late ensemble |").endswith("| +0.3 [-0.2, +0.8] | 0.030 | within noise |")
    assert _line(table, "| early fusion (concat) |").endswith("| +3.1 [+1.0, +5.2] | 0.030 | better |")


def test_ablation_rows_against_cross_attention(tmp_path):
    text = _summary(tmp_path)
    assert _line(text, "| cross-attention baseline (seed 003) |").endswith("| reference | – | – | 3 / 240 |")
    full = _line(text, "| full (VGA")
    assert "| 93.0 [91.0, 95.0] | +1.0 [-0.5, +2.5] | 0.030 | within noise | 3 / 240 |" in full
    sentence = _line(text, "In UA vs cross-attention baseline (seed 003)")
    assert "better: none" in sentence and "within noise (no gain claimed): full" in sentence


def test_transfer_marks_the_dev_selected_setting_and_verdicts(tmp_path):
    text = _summary(tmp_path)
    assert "## Transfer to `synthetic_target`" in text
    coral = _line(text, "| CORAL (moment matching, residual where dims match) (**selected on dev**) |")
    assert "| 80.0 [78.0, 82.0] | +2.0 [-1.0, +5.0] | 0.030 | within noise |" in coral
    assert "0.0900 → 0.0050 | 0.980 |" in coral
    assert "The target dev split selects CORAL (moment matching, residual where dims match)." in text
    assert "better: none; worse: MMD (residual where dims match)" in text
    budget = _line(text, "| 10% (18 train utt.) |")
    assert "| **84.0 [82.0, 86.0]** |" in budget and "| 83.0 [81.0, 85.0] |" in budget
    assert _line(text, "| 10% | full + DANN |") == (
        "| 10% | full + DANN | – | from scratch (Δ -23.0 [-26.0, -20.0]) "
        "| full + DANN (Δ +1.0 [-1.0, +3.0]) |"
    )
    assert "| 1 per class (18 train utt.) | **79.0 [77.0, 81.0]** |" in text
    swap = _line(text, "| cheap → adapter (paired frames) vs cheap → adapter (seed 002, random pairs) |")
    assert swap.endswith("| +6.7 [+4.0, +9.4] | 0.030 | better |")


def test_no_target_corpus(tmp_path):
    text = _summary(tmp_path, target=False, results={"transfer.csv": None})
    assert NO_TARGET in _line(text, "No target corpus")
    assert "## Transfer to" not in text and "selected on dev" not in text
    assert "## Provenance" in text and "`abc123`" in text


def test_missing_results_still_write_a_summary(tmp_path):
    names = ("models.csv", "comparisons.csv", "transfer.csv", "folds.csv", "gates.json", "provenance.json")
    text = _summary(tmp_path, results=dict.fromkeys(names))
    assert "_No source results (`results/models.csv` missing or empty)._" in text
    assert "_No transfer results" in text and "### Main model vs baselines" not in text
    assert "## Reference numbers from the literature (not mer results)" in text


@pytest.mark.parametrize("corpus", ["iemocap"])
def test_real_corpus_literature_line_and_protocol_folds(tmp_path, corpus):
    models = [{**m, "folds": "1 2"} for m in MODELS]
    folds = [{"model": "fusion", "fold": str(f), "seed": s, "split": split, "metric": "ua", "value": v}
             for f, v in ((1, 0.90), (2, 0.96)) for s in (0, 1) for split in ("dev", "test")]  # fmt: skip
    text = _summary(tmp_path, corpus=corpus, results={"models.csv": models, "folds.csv": folds})
    assert "mechanics check" not in text
    assert "the iemocap literature reports: UA 93.1% [91.0, 95.2], WA 93.0% [90.9, 95.1]." in text
    assert "### Protocol folds (2; IEMOCAP fold k tests on session k)" in text
    assert "| 1 | 2 | 90.0 |" in text and "| 2 | 2 | 96.0 |" in text
    assert "| **all folds [95% interval]** |  | 93.1 [91.0, 95.2] |" in text
    assert "folds: 1 2; 3 seeds; 240 test utt." in _line(text, "| main model (fusion section) |")
