"""The evaluate stage: predictions in, metrics JSON + dvc plot data + PNGs out.

Metric keys are flat and stable. ``metrics/source.json``: the main model under ``source/test/``
(``source/test/ua``), each baseline recipe under ``source/test/baselines/<name>/``; each value is
the mean over ``train.seeds`` with its population std beside it (``ua_std``) and ``n_seeds``.
Regression models report ``mae``, ``pearson``, ``acc2_has0`` / ``acc2_non0`` (+ F1) and
``acc7``; multi-task models add ``sentiment/ua`` ... ``metrics/ablation.json`` holds the
ablation table (``ablation/<row>/ua``, ``delta_ua`` vs the cross-attention baseline), also as
``metrics/ablation.md``. ``metrics/transfer.json``: ``target/fewshot/20/finetune/ua`` (``0`` =
zero-shot). Each JSON file has a ``provenance`` block (:mod:`mer.provenance`).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mer import plots
from mer.evaluation import classification_metrics, regression_metrics
from mer.features import write_json
from mer.params import EMOTIONS, MODALITIES
from mer.provenance import flatten, provenance

logger = logging.getLogger(__name__)

MAIN = "fusion"
SUMMARY_METRICS = ("ua", "wa", "f1_weighted", "f1_macro")
REGRESSION_METRICS = ("mae", "pearson", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7")
# the ablation table's rows, in order: seed 003's ladder, seed 000's decoder, then the seeds'
# fusion families (baseline recipes) and the main model
ABLATION_ROWS = {
    "cross_attention": "cross-attention baseline (seed 003)",
    "vad_guidance": "+ VAD-guided attention",
    "adaptive_fusion": "+ emotion-aware adaptive fusion (EAAF)",
    "micl": "+ MICL contrastive loss",
    "full": "full (VGA + EAAF + MICL + VAD loss + label smoothing)",
    "decoder": "beta fusion + emotion-query decoder (seed 000)",
    "concat": "early fusion (concat)",
    "late": "late fusion",
    "ensemble": "early + late ensemble (seed 004)",
    MAIN: "main model (fusion section)",
}


def class_names(predictions: pd.DataFrame) -> tuple[str, ...]:
    """The class names of a classifier's predictions, from its ``prob_<class>`` columns
    (``mer.training.predict`` writes one per class, in ``label_id`` order)."""
    names = tuple(c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_"))
    return names or EMOTIONS


def _metrics(predictions: pd.DataFrame) -> dict:
    """One seed's metrics: classification (+ multi-task sentiment) or regression."""
    if "sentiment_pred" in predictions:
        metrics = regression_metrics(predictions["sentiment"], predictions["sentiment_pred"])
        return {k: metrics[k] for k in (*REGRESSION_METRICS, "n")}
    metrics = classification_metrics(
        predictions["label_id"], predictions["pred_id"], class_names(predictions)
    )
    result = {k: metrics[k] for k in (*SUMMARY_METRICS, "n", "recall")}
    if "sentiment_pred_id" in predictions:
        labelled = predictions[predictions["sentiment_label_id"] >= 0]
        sentiment = classification_metrics(
            labelled["sentiment_label_id"], labelled["sentiment_pred_id"], ("negative", "neutral", "positive")
        )
        result["sentiment"] = {k: sentiment[k] for k in SUMMARY_METRICS}
    return result


def _mean_std(per_seed: list[dict]) -> dict:
    """Mean of every numeric leaf over seeds, with ``<name>_std`` beside each top-level score."""
    first = per_seed[0]
    out: dict = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _mean_std([seed[key] for seed in per_seed])
            continue
        values = np.array([seed[key] for seed in per_seed], dtype=np.float64)
        if key == "n":
            out[key] = int(value)
            continue
        out[key] = round(float(values.mean()), 4)
        if key in SUMMARY_METRICS or key in REGRESSION_METRICS:
            out[f"{key}_std"] = round(float(values.std(ddof=0)), 4)
    return out


def model_metrics(frames: list[pd.DataFrame]) -> dict:
    """Nested metrics of one model over its seeds' prediction frames (mean, ``*_std``, ``n_seeds``)."""
    if not frames:
        raise ValueError("no prediction frames: a model needs at least one seed's predictions")
    metrics = _mean_std([_metrics(frame) for frame in frames])
    metrics["n_seeds"] = len(frames)
    return metrics


def read_runs(directory: str | Path, wanted: set[str] | None = None) -> dict[str, list[pd.DataFrame]]:
    """``{model: [predictions per seed]}`` from ``directory/<model>/seed<k>.parquet`` (seed order)."""
    runs: dict[str, list[pd.DataFrame]] = {}
    for model_dir in sorted(p for p in Path(directory).glob("*") if p.is_dir()):
        if wanted is not None and model_dir.name not in wanted:
            continue
        files = sorted(model_dir.glob("seed*.parquet"), key=lambda p: int(p.stem.removeprefix("seed")))
        if files:
            runs[model_dir.name] = [pd.read_parquet(f) for f in files]
    return runs


def gate_analysis(predictions: pd.DataFrame) -> dict:
    """Mean gate per modality on utterances where that modality is reliable vs unreliable, and per
    emotion (``by_emotion``).

    ``drop`` > 0 means the model weights a modality less when it carries no usable cue.
    """
    analysis: dict = {}
    for modality in MODALITIES:
        gate, reliable = f"gate_{modality}", f"{modality}_reliable"
        if gate not in predictions:
            continue
        entry: dict = {}
        if reliable in predictions:
            flags = predictions[reliable].astype(bool)
            if flags.any() and not flags.all():
                on, off = predictions.loc[flags, gate].mean(), predictions.loc[~flags, gate].mean()
                entry |= {
                    "reliable": round(float(on), 4),
                    "unreliable": round(float(off), 4),
                    "drop": round(float(on - off), 4),
                }
        by_emotion = predictions.groupby("label_id")[gate].mean()
        names = class_names(predictions)
        entry["by_emotion"] = {names[int(i)]: round(float(v), 4) for i, v in by_emotion.items()}
        analysis[modality] = entry
    return analysis


def _read_curves(live_root: Path, names: list[str]) -> dict[str, dict[str, list[float]]]:
    """Dev UA and train loss per epoch of each model's first seed (``dvclive/<name>/seed<k>``)."""
    curves: dict[str, dict[str, list[float]]] = {}
    for name in names:
        seeds = sorted((live_root / name).glob("seed*"), key=lambda p: int(p.name.removeprefix("seed")))
        if not seeds:
            continue
        for metric, relative in (("dev UA", "dev/ua.tsv"), ("train loss", "train/loss.tsv")):
            path = seeds[0] / "plots" / "metrics" / relative
            if path.is_file():
                values = pd.read_csv(path, sep="\t").iloc[:, -1].tolist()
                curves.setdefault(name, {})[metric] = values
    return curves


def source_metrics(runs: dict[str, list[pd.DataFrame]]) -> dict:
    """Flat source-domain metrics: the main model under ``source/test/``, baselines under
    ``source/test/baselines/<name>/``, gains, gates and missing-feature counts."""
    if MAIN not in runs:
        raise FileNotFoundError(f"{MAIN}: main model predictions not found")
    per_model = {name: model_metrics(frames) for name, frames in runs.items()}
    nested: dict = dict(per_model[MAIN])
    nested["baselines"] = {
        name: {k: v for k, v in m.items() if k not in ("n", "recall")}
        for name, m in per_model.items()
        if name != MAIN
    }
    if "ua" in nested:
        unimodal = [per_model[m]["ua"] for m in MODALITIES if m in per_model]
        if unimodal:
            nested["gain_over_best_unimodal"] = {"ua": round(nested["ua"] - max(unimodal), 4)}
        if "ua" in per_model.get("concat", {}):
            nested["gain_over_concat"] = {"ua": round(nested["ua"] - per_model["concat"]["ua"], 4)}
    gates = gate_analysis(pd.concat(runs[MAIN], ignore_index=True))
    if gates:
        nested["gates"] = gates
    nested["n_missing_features"] = int(runs[MAIN][0]["n_missing_features"].iloc[0])
    return flatten(nested, "source/test")


def ablation_table(runs: dict[str, list[pd.DataFrame]]) -> tuple[dict, str]:
    """The ablation table from every classifier in ``runs`` (ablation variants, baselines, the
    main model), in :data:`ABLATION_ROWS` order: flat metrics ``ablation/<row>/<metric>`` with
    ``delta_ua`` against the cross-attention baseline, and the same as Markdown."""
    rows = {name: model_metrics(runs[name]) for name in ABLATION_ROWS if name in runs}
    rows = {name: m for name, m in rows.items() if "ua" in m}
    reference = rows.get("cross_attention", {}).get("ua")
    nested: dict = {}
    lines = [
        "| configuration | UA % | WA % | weighted F1 % | Δ UA vs cross-attention | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        entry = {k: m[k] for k in ("ua", "ua_std", "wa", "wa_std", "f1_weighted", "f1_weighted_std")}
        delta = "–"
        if reference is not None:
            entry["delta_ua"] = round(m["ua"] - reference, 4)
            delta = f"{100 * entry['delta_ua']:+.1f}"
        entry["n_seeds"] = m["n_seeds"]
        nested[name] = entry
        cells = [f"{100 * m[k]:.1f} ± {100 * m[f'{k}_std']:.1f}" for k in ("ua", "wa", "f1_weighted")]
        lines.append(f"| {ABLATION_ROWS[name]} | " + " | ".join(cells) + f" | {delta} | {m['n_seeds']} |")
    return flatten(nested, "ablation"), "\n".join(lines) + "\n"


def _without_counts(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("n", "recall")}


def _budgets(transfer_dir: Path, kind: str) -> list[int]:
    return sorted(int(p.name) for p in (transfer_dir / kind).glob("*") if p.is_dir())


def transfer_metrics(transfer_dir: Path) -> dict:
    """Flat transfer metrics (mean ± std over ``transfer.seeds``); ``target/swap/<method>/<metric>``
    is the extractor-swap scenario (source test split, audio from the cheap extractor):
    ``target/zeroshot/<adapter method | none>/<metric>``,
    ``target/fewshot/<percent>/<strategy>/<metric>`` and ``target/kshot/<k>/<strategy>/<metric>``,
    each with ``n_train`` (utterances fine-tuned on) and ``n_seeds``."""
    records_path = transfer_dir / "records.json"
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    nested: dict = {"zeroshot": {}}
    for method, frames in read_runs(transfer_dir / "swap").items():  # source test, swapped audio
        nested.setdefault("swap", {})[method] = _without_counts(model_metrics(frames))
    for method, frames in read_runs(transfer_dir / "zeroshot").items():
        nested["zeroshot"][method] = {
            k: v for k, v in model_metrics(frames).items() if k not in ("n", "recall")
        }
    for kind, name in (("fraction", "fewshot"), ("kshot", "kshot")):
        for budget in _budgets(transfer_dir, kind):
            for strategy, frames in read_runs(transfer_dir / kind / str(budget)).items():
                entry = {k: v for k, v in model_metrics(frames).items() if k not in ("n", "recall")}
                runs = records.get(f"{kind}/{budget}", {}).get(strategy, {})
                entry["n_train"] = (
                    round(float(np.mean([r["n_train"] for r in runs.values()])), 1) if runs else 0
                )
                nested.setdefault(name, {}).setdefault(str(budget), {})[strategy] = entry
    return flatten(nested, "target")


def fold_metrics(folds_dir: Path, folds: list[str] | None = None) -> dict:
    """Per-fold metrics of the main model (mean over seeds) and their mean / std over folds.

    ``fold/<k>/<metric>`` for each fold (e.g. IEMOCAP leave-one-session-out: k = test session),
    ``folds/mean/<metric>`` and ``folds/std/<metric>`` across folds, ``folds/n`` the fold count.
    """
    runs = (
        read_runs(folds_dir, None if folds is None else {str(f) for f in folds}) if folds_dir.is_dir() else {}
    )
    per_fold = {
        name: flatten(_without_counts(model_metrics(frames))) for name, frames in sorted(runs.items())
    }
    out: dict = {"folds/n": len(per_fold)}
    for name, metrics in per_fold.items():
        out |= {f"fold/{name}/{k}": v for k, v in metrics.items()}
    if per_fold:
        shared = set.intersection(*(set(m) for m in per_fold.values()))
        for key in sorted(k for k in shared if not k.endswith("_std") and k != "n_seeds"):
            values = np.array([m[key] for m in per_fold.values()], dtype=np.float64)
            out[f"folds/mean/{key}"] = round(float(values.mean()), 4)
            out[f"folds/std/{key}"] = round(float(values.std(ddof=0)), 4)
    return out


def zeroshot_ua(transfer: dict) -> dict[str, float]:
    """``{adapter method | none: zero-shot target UA}``."""
    prefix = "target/zeroshot/"
    return {k.split("/")[2]: v for k, v in transfer.items() if k.startswith(prefix) and k.endswith("/ua")}


def fewshot_rows(transfer: dict) -> list[dict]:
    """Curve points ``{fraction, setting, ua, ua_std}``; fraction 0 is the zero-shot model (no
    adapter) for every strategy that starts from it."""
    rows = []
    strategies = sorted({k.split("/")[3] for k in transfer if k.startswith("target/fewshot/")})
    for key, value in transfer.items():
        parts = key.split("/")
        if parts[1] == "fewshot" and parts[4] == "ua":
            std = transfer[f"{key}_std"]
            rows.append({"fraction": int(parts[2]), "setting": parts[3], "ua": value, "ua_std": std})
    zero = transfer.get("target/zeroshot/none/ua")
    if zero is not None:
        rows += [
            {"fraction": 0, "setting": s, "ua": zero, "ua_std": 0.0} for s in strategies if s != "scratch"
        ]
    return sorted(rows, key=lambda r: (r["setting"], r["fraction"]))


def evaluate(
    source_dir: str | Path,
    transfer_dir: str | Path,
    live_root: str | Path,
    metrics_dir: str | Path,
    plots_dir: str | Path,
    params: dict | None = None,
    baselines: list[str] | None = None,
    ablation_dir: str | Path | None = None,
    variants: list[str] | None = None,
    folds_dir: str | Path | None = None,
    folds: list[str] | None = None,
) -> dict:
    """Compute every metric and plot from the prediction files; return the source metrics.

    ``params`` (the params sections behind the predictions) are hashed into each file's
    provenance block. ``baselines`` / ``variants`` name the current models: a recipe dropped
    from ``train.baselines`` leaves its old predictions behind, and they are not read.
    """
    source_dir, transfer_dir = Path(source_dir), Path(transfer_dir)
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    png_dir = plots_dir / "png"
    record = provenance(params or {})  # one block for every file: same run, same inputs

    # Source domain: the main model and every baseline on the source test split.
    runs = read_runs(source_dir, None if baselines is None else {MAIN, *baselines})
    if MAIN not in runs:
        raise FileNotFoundError(f"{source_dir}/{MAIN}/seed*.parquet: main model predictions not found")
    source = source_metrics(runs)
    write_json(metrics_dir / "source.json", {**source, "provenance": record})

    main = runs[MAIN][0]
    plots_dir.mkdir(parents=True, exist_ok=True)
    if "pred_id" in main:
        labels = list(class_names(main))
        actual = [labels[i] for i in main["label_id"]]
        predicted = [labels[i] for i in main["pred_id"]]
    else:  # regression: the 7 Acc-7 classes (scores clipped to [-3, 3], rounded)
        labels = [str(v) for v in range(-3, 4)]
        known = main[main["sentiment"].notna()]
        actual = [str(int(v)) for v in np.round(np.clip(known["sentiment"], -3, 3))]
        predicted = [str(int(v)) for v in np.round(np.clip(known["sentiment_pred"], -3, 3))]
    with open(plots_dir / "confusion_source_test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows(zip(actual, predicted, strict=True))
    confusion = classification_metrics(
        [labels.index(a) for a in actual], [labels.index(p) for p in predicted], labels
    )["confusion"]
    plots.plot_confusion(
        confusion,
        labels,
        png_dir / "confusion_source_test.png",
        "Source test confusion (main model, first seed)",
    )
    model_ua, model_std = {}, {}
    for name in [MAIN, *sorted(set(runs) - {MAIN})]:
        prefix = "source/test" if name == MAIN else f"source/test/baselines/{name}"
        if f"{prefix}/ua" in source:
            model_ua[name], model_std[name] = source[f"{prefix}/ua"], source[f"{prefix}/ua_std"]
    if model_ua:  # none when every model is a regressor (fusion.task: regression, no baselines)
        plots.plot_bars(
            model_ua,
            png_dir / "source_ua.png",
            "Source test UA by model (mean ± std over seeds)",
            "UA",
            model_std,
        )
    gates = gate_analysis(pd.concat(runs[MAIN], ignore_index=True))
    if gates:
        groups = {
            condition: {m: g[condition] for m, g in gates.items() if condition in g}
            for condition in ("reliable", "unreliable")
        }
        groups |= {
            e: {m: g["by_emotion"][e] for m, g in gates.items() if e in g["by_emotion"]}
            for e in class_names(main)
        }
        plots.plot_grouped_bars(
            {k: v for k, v in groups.items() if v}, png_dir / "gates.png",
            "Mean modality weight by reliability condition and emotion (main model)", "gate",
        )  # fmt: skip
    curves = _read_curves(Path(live_root), list(runs))
    if curves:
        plots.plot_curves(curves, png_dir / "training_curves.png", "Training curves (source, first seed)")

    # Ablation: seed 003's ladder, seed 000's decoder, the fusion families and the main model.
    ablation_runs = dict(runs)
    if ablation_dir is not None and Path(ablation_dir).is_dir():
        ablation_runs |= read_runs(ablation_dir, None if variants is None else set(variants))
    ablation, table = ablation_table(ablation_runs)
    write_json(metrics_dir / "ablation.json", {**ablation, "provenance": record})
    (metrics_dir / "ablation.md").write_text(
        "# Ablation (source test, mean ± std over train.seeds)\n\n" + table
    )

    # Protocol folds (corpora.folds, e.g. IEMOCAP leave-one-session-out): per fold and averaged.
    if folds_dir is not None:
        write_json(metrics_dir / "folds.json", {**fold_metrics(Path(folds_dir), folds), "provenance": record})

    # Target domain: zero-shot with each adapter, few-shot strategies over seeds.
    transfer = transfer_metrics(transfer_dir)
    write_json(metrics_dir / "transfer.json", {**transfer, "provenance": record})
    rows = fewshot_rows(transfer)
    settings = sorted({r["setting"] for r in rows})
    table: dict[int, dict[str, dict]] = {}
    for row in rows:
        table.setdefault(row["fraction"], {})[row["setting"]] = row
    with open(plots_dir / "fewshot.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fraction"] + [f"{s}_ua" for s in settings] + [f"{s}_ua_std" for s in settings])
        for fraction in sorted(table):
            cells = [table[fraction].get(s, {}).get("ua", "") for s in settings]
            cells += [table[fraction].get(s, {}).get("ua_std", "") for s in settings]
            writer.writerow([fraction, *cells])
    if rows:
        plots.plot_fewshot(
            rows, png_dir / "fewshot.png", "Target test UA vs fine-tuning data (mean ± std over seeds)"
        )
    zeroshot = zeroshot_ua(transfer)
    if zeroshot:
        title = "Target test UA zero-shot, by feature adapter"
        plots.plot_bars(zeroshot, png_dir / "zeroshot.png", title, "UA")
    logger.info("source test UA: %s", model_ua)
    return source
