"""The evaluate stage: predictions in, metrics JSON + dvc plot data + PNGs out.

Metrics keys are nested JSON that DVC shows flattened, e.g. ``test.fusion.ua`` in
``metrics/source.json`` and ``plain.20.ua`` in ``metrics/transfer.json``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from mer import plots
from mer.evaluation import classification_metrics
from mer.features import write_json
from mer.params import EMOTIONS, MODALITIES

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


def evaluate(
    source_dir: str | Path,
    transfer_dir: str | Path,
    live_root: str | Path,
    metrics_dir: str | Path,
    plots_dir: str | Path,
) -> dict:
    """Compute every metric and plot from the prediction files; return the source metrics."""
    source_dir, transfer_dir = Path(source_dir), Path(transfer_dir)
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    png_dir = plots_dir / "png"

    # Source domain: the main model and every baseline on the source test split.
    runs = {p.stem: pd.read_parquet(p) for p in sorted(source_dir.glob("*.parquet"))}
    if MAIN not in runs:
        raise FileNotFoundError(f"{source_dir}/{MAIN}.parquet: main model predictions not found")
    source = {"test": {name: _metrics(frame) for name, frame in runs.items()}}
    main_ua = source["test"][MAIN]["ua"]
    unimodal = [source["test"][m]["ua"] for m in MODALITIES if m in source["test"]]
    if unimodal:
        source["fusion_minus_best_unimodal_ua"] = round(main_ua - max(unimodal), 4)
    if "concat" in source["test"]:
        source["fusion_minus_concat_ua"] = round(main_ua - source["test"]["concat"]["ua"], 4)
    source["gates"] = gate_analysis(runs[MAIN])
    source["n_missing_features"] = int(runs[MAIN]["n_missing_features"].iloc[0])
    write_json(metrics_dir / "source.json", source)

    main = runs[MAIN]
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "confusion_source_test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for true, pred in zip(main["label_id"], main["pred_id"], strict=True):
            writer.writerow([EMOTIONS[true], EMOTIONS[pred]])
    confusion = classification_metrics(main["label_id"], main["pred_id"], EMOTIONS)["confusion"]
    plots.plot_confusion(confusion, EMOTIONS, png_dir / "confusion_source_test.png",
                         "Source test confusion (main model)")  # fmt: skip
    plots.plot_bars({name: m["ua"] for name, m in source["test"].items()}, png_dir / "source_ua.png",
                    "Source test UA by model", "UA")  # fmt: skip
    if source["gates"]:
        conditions = ("reliable", "unreliable")
        bars = {f"{m} {c}": g[c] for m, g in source["gates"].items() for c in conditions}
        plots.plot_bars(bars, png_dir / "gates.png", "Mean gate by modality reliability", "gate")
    curves = _read_curves(Path(live_root), list(runs))
    if curves:
        plots.plot_curves(curves, png_dir / "training_curves.png", "Training curves (source)")

    # Target domain: zero-shot and few-shot, with and without adapters.
    transfer: dict = {}
    for path in sorted(Path(transfer_dir).glob("*.parquet")):
        setting, fraction = path.stem.rsplit("_", 1)
        transfer.setdefault(setting, {})[int(fraction)] = _metrics(pd.read_parquet(path))
    transfer = {s: {str(f): transfer[s][f] for f in sorted(transfer[s])} for s in sorted(transfer)}
    write_json(metrics_dir / "transfer.json", transfer)
    fractions = sorted({int(f) for per in transfer.values() for f in per})
    with open(plots_dir / "fewshot.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fraction"] + [f"{s}_ua" for s in transfer])
        for fraction in fractions:
            writer.writerow([fraction] + [transfer[s].get(str(fraction), {}).get("ua", "") for s in transfer])
    rows = [
        {"fraction": int(f), "setting": s, "ua": m["ua"]}
        for s, per in transfer.items()
        for f, m in per.items()
    ]
    if rows:
        plots.plot_fewshot(rows, png_dir / "fewshot.png", "Target test UA vs fine-tuning data (%)")
    logger.info("source test UA: %s", {k: v["ua"] for k, v in source["test"].items()})
    return source
