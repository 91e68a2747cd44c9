"""The evaluate stage: predictions in, metrics JSON + dvc plot data + PNGs out.

Metric keys are flat and stable, e.g. ``source/test/ua`` (the main model),
``source/test/baselines/concat/ua`` in ``metrics/source.json`` and
``target/fewshot/20/finetune/ua`` (``0`` = zero-shot) in ``metrics/transfer.json``; each file also
has a ``provenance`` block (:mod:`mer.provenance`).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pandas as pd

from mer import plots
from mer.evaluation import classification_metrics
from mer.features import write_json
from mer.params import EMOTIONS, MODALITIES
from mer.provenance import flatten, provenance

logger = logging.getLogger(__name__)

MAIN = "fusion"


def _metrics(predictions: pd.DataFrame) -> dict:
    metrics = classification_metrics(predictions["label_id"], predictions["pred_id"], EMOTIONS)
    return {k: v for k, v in metrics.items() if k != "confusion"}


def gate_analysis(predictions: pd.DataFrame) -> dict:
    """Mean gate per modality on utterances where that modality is reliable vs unreliable.

    ``drop`` > 0 means the model weights a modality less when it carries no usable cue.
    """
    analysis = {}
    for modality in MODALITIES:
        gate, reliable = f"gate_{modality}", f"{modality}_reliable"
        if gate not in predictions or reliable not in predictions:
            continue
        flags = predictions[reliable].astype(bool)
        if flags.all() or not flags.any():
            continue
        on, off = predictions.loc[flags, gate].mean(), predictions.loc[~flags, gate].mean()
        analysis[modality] = {
            "reliable": round(float(on), 4),
            "unreliable": round(float(off), 4),
            "drop": round(float(on - off), 4),
        }
    return analysis


def _read_curves(live_root: Path, names: list[str]) -> dict[str, dict[str, list[float]]]:
    curves: dict[str, dict[str, list[float]]] = {}
    for name in names:
        for metric, relative in (("dev UA", "dev/ua.tsv"), ("train loss", "train/loss.tsv")):
            path = live_root / name / "plots" / "metrics" / relative
            if path.is_file():
                values = pd.read_csv(path, sep="\t").iloc[:, -1].tolist()
                curves.setdefault(name, {})[metric] = values
    return curves


SETTING_NAMES = {"plain": "finetune", "adapter": "adapter_finetune"}
SUMMARY_METRICS = ("ua", "wa", "f1_weighted", "f1_macro")


def source_metrics(runs: dict[str, pd.DataFrame]) -> dict:
    """Flat source-domain metrics: the main model under ``source/test/``, baselines under
    ``source/test/baselines/<mode>/``, gains, gates and missing-feature counts."""
    if MAIN not in runs:
        raise FileNotFoundError(f"{MAIN}.parquet: main model predictions not found")
    per_run = {name: _metrics(frame) for name, frame in runs.items()}
    main = per_run[MAIN]
    nested: dict = {k: main[k] for k in (*SUMMARY_METRICS, "n", "recall")}
    nested["baselines"] = {
        name: {k: m[k] for k in SUMMARY_METRICS} for name, m in per_run.items() if name != MAIN
    }
    unimodal = [per_run[m]["ua"] for m in MODALITIES if m in per_run]
    nested["gain_over_best_unimodal"] = {"ua": round(main["ua"] - max(unimodal), 4)} if unimodal else {}
    if "concat" in per_run:
        nested["gain_over_concat"] = {"ua": round(main["ua"] - per_run["concat"]["ua"], 4)}
    nested["gates"] = gate_analysis(runs[MAIN])
    nested["n_missing_features"] = int(runs[MAIN]["n_missing_features"].iloc[0])
    return flatten(nested, "source/test")


def transfer_metrics(transfer_dir: Path) -> dict:
    """Flat target-domain metrics: ``target/fewshot/<percent>/<setting>/<metric>`` (0 = zero-shot)."""
    records_path = transfer_dir / "records.json"
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    nested: dict = {}
    for path in sorted(
        transfer_dir.glob("*.parquet"),
        key=lambda p: (p.stem.rsplit("_", 1)[0], int(p.stem.rsplit("_", 1)[1])),
    ):
        setting, fraction = path.stem.rsplit("_", 1)
        metrics = _metrics(pd.read_parquet(path))
        entry = {k: metrics[k] for k in SUMMARY_METRICS}
        entry["n_train"] = records.get(setting, {}).get(fraction, {}).get("n_train", 0)
        nested.setdefault(fraction, {})[SETTING_NAMES.get(setting, setting)] = entry
    ordered = {f: nested[f] for f in sorted(nested, key=int)}
    return flatten(ordered, "target/fewshot")


def evaluate(
    source_dir: str | Path,
    transfer_dir: str | Path,
    live_root: str | Path,
    metrics_dir: str | Path,
    plots_dir: str | Path,
    params: dict | None = None,
    baselines: list[str] | None = None,
) -> dict:
    """Compute every metric and plot from the prediction files; return the source metrics.

    ``params`` (the params sections behind the predictions) are hashed into each file's
    provenance block.
    """
    source_dir, transfer_dir = Path(source_dir), Path(transfer_dir)
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    png_dir = plots_dir / "png"
    record = provenance(params or {})  # one block for both files: same run, same inputs

    # Source domain: the main model and every baseline on the source test split.
    # only the current models: a baseline dropped from train.baselines leaves its old file behind
    wanted = None if baselines is None else {MAIN, *baselines}
    runs = {
        p.stem: pd.read_parquet(p)
        for p in sorted(source_dir.glob("*.parquet"))
        if wanted is None or p.stem in wanted
    }
    if MAIN not in runs:
        raise FileNotFoundError(f"{source_dir}/{MAIN}.parquet: main model predictions not found")
    source = source_metrics(runs)
    write_json(metrics_dir / "source.json", {**source, "provenance": record})

    main = runs[MAIN]
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "confusion_source_test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for true, pred in zip(main["label_id"], main["pred_id"], strict=True):
            writer.writerow([EMOTIONS[true], EMOTIONS[pred]])
    confusion = classification_metrics(main["label_id"], main["pred_id"], EMOTIONS)["confusion"]
    plots.plot_confusion(
        confusion, EMOTIONS, png_dir / "confusion_source_test.png", "Source test confusion (main model)"
    )
    model_ua = {MAIN: source["source/test/ua"]}
    model_ua |= {
        k.split("/")[3]: v
        for k, v in source.items()
        if k.startswith("source/test/baselines/") and k.endswith("/ua")
    }
    plots.plot_bars(model_ua, png_dir / "source_ua.png", "Source test UA by model", "UA")
    gates = gate_analysis(main)
    if gates:
        conditions = ("reliable", "unreliable")
        bars = {f"{m} {c}": g[c] for m, g in gates.items() for c in conditions}
        plots.plot_bars(bars, png_dir / "gates.png", "Mean gate by modality reliability", "gate")
    curves = _read_curves(Path(live_root), list(runs))
    if curves:
        plots.plot_curves(curves, png_dir / "training_curves.png", "Training curves (source)")

    # Target domain: zero-shot and few-shot, with and without adapters.
    transfer = transfer_metrics(transfer_dir)
    write_json(metrics_dir / "transfer.json", {**transfer, "provenance": record})
    table: dict[int, dict[str, float]] = {}
    for key, value in transfer.items():
        _, _, fraction, setting, metric = key.split("/")
        if metric == "ua":
            table.setdefault(int(fraction), {})[setting] = value
    settings = sorted({s for row in table.values() for s in row})
    with open(plots_dir / "fewshot.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fraction"] + [f"{s}_ua" for s in settings])
        for fraction in sorted(table):
            writer.writerow([fraction] + [table[fraction].get(s, "") for s in settings])
    rows = [{"fraction": f, "setting": s, "ua": ua} for f, row in table.items() for s, ua in row.items()]
    if rows:
        plots.plot_fewshot(rows, png_dir / "fewshot.png", "Target test UA vs fine-tuning data (%)")
    logger.info("source test UA: %s", model_ua)
    return source
