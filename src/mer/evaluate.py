"""The evaluate stage: prediction files in; headline metrics, result tables and plots out.

Every number is the mean over the protocol folds (``corpora.folds``) and seeds, with a 95 %
interval, and every stated comparison is a paired difference with its interval and a verdict,
all by the one method of :mod:`mer.uncertainty`.

Inputs (per model, fold and seed): ``<source>/<model>/<fold>/seed<k>.parquet`` (test) and
``.../<fold>/dev/seed<k>.parquet`` (dev) for the main model (``fusion``) and the baselines,
``<ablation>/<recipe>/<fold>/...`` for the ablation variants, and the transfer stage's
``<transfer>/{zeroshot/<method>,fraction/<pct>/<strategy>,kshot/<k>/<strategy>,swap/<method>}/``.

Declared DVC metrics (numbers only, the headline keys; ``dvc metrics diff`` reads these):

- ``metrics/source.json``: ``main/<m>``, ``main/<m>_low`` / ``_high`` for UA, WA, weighted F1
  (regression: MAE, r, Acc-2 non0), ``main/dev_ua`` (``dev_mae``), ``main/n_seeds`` /
  ``n_folds`` / ``n_test``; ``baselines/<name>/ua`` with ``delta_ua`` (main minus baseline)
  and ``delta_ua_low`` / ``_high``.
- ``metrics/ablation.json``: ``<row>/ua`` with ``delta_ua`` (row minus cross-attention) and its
  interval.
- ``metrics/transfer.json``: ``zeroshot/none/ua`` and the adapter chosen on target dev
  (``zeroshot/best_by_dev/<method>/...``, delta vs none); per budget (``fraction/<pct>``,
  ``kshot/<k>``) full fine-tuning with its interval and the strategy chosen on dev with its
  delta vs full.

Data files in ``results/`` (read by the report, ``mer.review`` and ``dvc plots``):
``models.csv`` (every model x metric: value, interval, seed std, dev score, design),
``comparisons.csv`` (every paired comparison, Holm-adjusted p and verdict), ``transfer.csv``
(the whole few-shot grid), ``folds.csv`` (each fold, seed and split), ``per_class.csv``,
``per_speaker.csv``, ``gates.json`` and ``provenance.json``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer import plots
from mer.files import write_json
from mer.metrics import classification_metrics, regression_metrics
from mer.provenance import provenance
from mer.uncertainty import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Comparison,
    Estimate,
    Runs,
    compare,
    estimate,
    holm,
    lower_is_better,
)
from mer.vocab import EMOTIONS, MODALITIES

logger = logging.getLogger(__name__)

MAIN = "fusion"
HEADLINE = {"classification": ("ua", "wa", "f1_weighted"), "regression": ("mae", "pearson", "acc2_non0")}
PRIMARY = {"classification": "ua", "regression": "mae"}
REFERENCE_ROW = "cross_attention"  # seed 003's baseline: the ablation rows are compared with it
ABLATION_BASELINES = ("concat", "late", "ensemble")  # fusion families shown in the ablation table
TRANSFER_FOLD = "target"  # transfer runs have one "fold": the target corpus's test split
SWAP_PAIRS = (("paired", "seed002"), ("seed002", "original"), ("paired", "original"))
Frames = dict[str, dict[int, pd.DataFrame]]  # {fold: {seed: predictions}}


@dataclass
class ModelResult:
    """One model over its folds and seeds: estimates on test, mean scores on dev."""

    name: str
    role: str  # main | baseline | ablation | zeroshot | fraction | kshot | swap
    runs: Runs
    classes: tuple[str, ...]
    estimates: dict[str, Estimate]
    dev: dict[str, float] = field(default_factory=dict)
    folds: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return self.runs.task

    @property
    def primary(self) -> str:
        return PRIMARY[self.task]


# ---------------------------------------------------------------- reading predictions


def _seed_files(directory: Path) -> dict[int, Path]:
    return {int(p.stem.removeprefix("seed")): p for p in sorted(directory.glob("seed*.parquet"))}


def read_frames(model_dir: Path, folds: list[str], split: str = "test") -> Frames:
    """``{fold: {seed: frame}}`` of ``model_dir/<fold>/[dev/]seed<k>.parquet`` for each fold
    that has predictions (``folds`` order)."""
    frames: Frames = {}
    for fold in folds:
        directory = model_dir / fold / ("dev" if split == "dev" else "")
        files = _seed_files(directory)
        if files:
            frames[fold] = {seed: pd.read_parquet(path) for seed, path in files.items()}
    return frames


def class_names(frame: pd.DataFrame) -> tuple[str, ...]:
    """Class names from a classifier's ``prob_<class>`` columns (``label_id`` order)."""
    names = tuple(c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_"))
    return names or EMOTIONS


def _runs(frames: Frames) -> tuple[Runs, tuple[str, ...]]:
    first = next(iter(next(iter(frames.values())).values()))
    classes = class_names(first) if "pred_id" in first else ()
    return Runs.from_frames(frames, num_classes=len(classes)), classes


def _run_metrics(frame: pd.DataFrame, classes: tuple[str, ...]) -> dict:
    """One run's metrics (``mer.metrics``), the per-fold / per-seed rows of ``folds.csv``."""
    if "pred_id" not in frame:
        metrics = regression_metrics(frame["sentiment"], frame["sentiment_pred"])
        return {m: metrics[m] for m in REGRESSION_METRICS}
    metrics = classification_metrics(frame["label_id"], frame["pred_id"], classes)
    return {m: metrics[m] for m in CLASSIFICATION_METRICS}


def model_result(name: str, role: str, test: Frames, dev: Frames | None = None) -> ModelResult:
    """Estimates of every metric of the model's task on test; the mean dev score per metric."""
    runs, classes = _runs(test)
    metrics = CLASSIFICATION_METRICS if runs.task == "classification" else REGRESSION_METRICS
    dev_scores: dict[str, float] = {}
    if dev:
        per_run = [_run_metrics(f, classes) for by_seed in dev.values() for f in by_seed.values()]
        dev_scores = {m: round(float(np.mean([r[m] for r in per_run])), 4) for m in metrics}
    return ModelResult(name, role, runs, classes, estimate(runs, metrics), dev_scores, tuple(test))


def sentiment_result(name: str, test: Frames) -> ModelResult | None:
    """A multi-task model's 3-way sentiment head as its own classification result."""
    first = next(iter(next(iter(test.values())).values()))
    if "sentiment_pred_id" not in first:
        return None
    renamed = {
        fold: {
            seed: frame.loc[frame["sentiment_label_id"] >= 0, ["utt_id"]].assign(
                label_id=frame["sentiment_label_id"], pred_id=frame["sentiment_pred_id"]
            )
            for seed, frame in by_seed.items()
        }
        for fold, by_seed in test.items()
    }
    runs = Runs.from_frames(renamed, num_classes=3)
    classes = ("negative", "neutral", "positive")
    estimates = estimate(runs, ("ua", "f1_weighted"))
    return ModelResult(f"{name}/sentiment", "baseline", runs, classes, estimates, folds=tuple(test))


# ---------------------------------------------------------------- comparisons


@dataclass
class ComparisonRow:
    table: str
    a: str
    b: str
    metric: str
    result: Comparison
    a_value: float
    b_value: float
    budget: str = ""
    p_holm: float = float("nan")


def compare_models(table: str, a: ModelResult, b: ModelResult, metrics, budget: str = "") -> list:
    """Paired comparisons ``a - b`` (same task) for ``metrics``."""
    results = compare(a.runs, b.runs, metrics)
    return [ComparisonRow(table, a.name, b.name, m, results[m], a.estimates[m].value, b.estimates[m].value,
                          budget) for m in metrics]  # fmt: skip


def adjust(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """Holm-adjust the p-values within each (table, metric)."""
    groups: dict[tuple[str, str], list[ComparisonRow]] = {}
    for row in rows:
        groups.setdefault((row.table, row.metric), []).append(row)
    for group in groups.values():
        for row, p in zip(group, holm([r.result.p for r in group]), strict=True):
            row.p_holm = float(p)
    return rows


# ---------------------------------------------------------------- files


def _r(value: float) -> float | str:
    return "" if value is None or not np.isfinite(value) else round(float(value), 4)


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row)) if rows else ["empty"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def models_rows(results: list[ModelResult], protocol: str) -> list[dict]:
    """``results/models.csv``: one row per model and metric."""
    rows = []
    for result in results:
        for metric, est in result.estimates.items():
            rows.append({
                "model": result.name, "role": result.role, "task": result.task, "metric": metric,
                "value": _r(est.value), "low": _r(est.low), "high": _r(est.high),
                "seed_std": _r(est.seed_std), "dev": _r(result.dev.get(metric, float("nan"))),
                "n_seeds": est.n_seeds, "n_folds": est.n_folds, "n_test": est.n_test,
                "folds": " ".join(result.folds), "protocol": protocol,
            })  # fmt: skip
    return rows


def comparison_rows(rows: list[ComparisonRow]) -> list[dict]:
    """``results/comparisons.csv``."""
    return [{
        "table": r.table, "a": r.a, "b": r.b, "budget": r.budget, "metric": r.metric,
        "a_value": _r(r.a_value), "b_value": _r(r.b_value), "delta": _r(r.result.delta),
        "low": _r(r.result.low), "high": _r(r.result.high), "p": _r(r.result.p), "p_holm": _r(r.p_holm),
        "verdict": r.result.verdict, "n_seeds": r.result.n_seeds, "n_folds": r.result.n_folds,
        "n_test": r.result.n_test,
    } for r in rows]  # fmt: skip


def fold_rows(name: str, frames: dict[str, Frames], classes: tuple[str, ...]) -> list[dict]:
    """``results/folds.csv`` rows of one model: every fold, seed, split and metric."""
    rows = []
    for split, by_fold in frames.items():
        for fold, by_seed in by_fold.items():
            for seed, frame in by_seed.items():
                for metric, value in _run_metrics(frame, classes).items():
                    rows.append({"model": name, "fold": fold, "seed": seed, "split": split,
                                 "metric": metric, "value": round(float(value), 4)})  # fmt: skip
    return rows


def per_class_rows(result: ModelResult) -> list[dict]:
    """Per-class recall of a classifier (mean over folds and seeds)."""
    recalls: dict[str, list[float]] = {}
    for fold in result.runs.folds.values():
        for predictions in fold.predictions:
            metrics = classification_metrics(fold.labels, predictions, result.classes)
            for name, value in metrics["recall"].items():
                recalls.setdefault(name, []).append(value)
    return [
        {"model": result.name, "class": c, "recall": round(float(np.mean(v)), 4)} for c, v in recalls.items()
    ]


def per_speaker_rows(result: ModelResult, table: pd.DataFrame) -> list[dict]:
    """UA per test speaker (and per gender where the table has one), over folds and seeds."""
    columns = [c for c in ("speaker", "gender") if c in table]
    if result.task != "classification" or not columns:
        return []
    lookup = table.set_index(table["utt_id"].astype(str))[columns]
    rows = []
    for column in columns:
        scores: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for fold in result.runs.folds.values():
            groups = lookup.reindex(fold.utt_ids)[column].astype(str).to_numpy()
            for group in np.unique(groups):
                mask = groups == group
                counts[group] = counts.get(group, 0) + int(mask.sum())
                for predictions in fold.predictions:
                    ua = classification_metrics(fold.labels[mask], predictions[mask], result.classes)["ua"]
                    scores.setdefault(group, []).append(ua)
        rows += [{"model": result.name, "group": column, "name": g, "n": counts[g],
                  "ua": round(float(np.mean(v)), 4)} for g, v in sorted(scores.items())]  # fmt: skip
    return rows


def gate_analysis(frames: Frames, classes: tuple[str, ...]) -> dict:
    """Mean gate per modality where that modality is reliable vs unreliable (``drop`` > 0: the
    model trusts a modality less when it carries no cue), and per emotion."""
    predictions = pd.concat([f for by_seed in frames.values() for f in by_seed.values()], ignore_index=True)
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
                entry |= {"reliable": round(float(on), 4), "unreliable": round(float(off), 4),
                          "drop": round(float(on - off), 4)}  # fmt: skip
        by_emotion = predictions.groupby("label_id")[gate].mean()
        entry["by_emotion"] = {classes[int(i)]: round(float(v), 4) for i, v in by_emotion.items()}
        analysis[modality] = entry
    return analysis


# ---------------------------------------------------------------- declared metrics


def _interval(prefix: str, est: Estimate | Comparison, value: float) -> dict:
    return {prefix: round(value, 4), f"{prefix}_low": round(est.low, 4), f"{prefix}_high": round(est.high, 4)}


def source_metrics(main: ModelResult, baselines: list[ModelResult], rows: list[ComparisonRow]) -> dict:
    """The headline keys of ``metrics/source.json``."""
    out: dict = {}
    for metric in HEADLINE[main.task]:
        est = main.estimates[metric]
        out |= _interval(f"main/{metric}", est, est.value)
    out[f"main/dev_{main.primary}"] = main.dev.get(main.primary)
    out |= {
        "main/n_seeds": main.runs.n_seeds,
        "main/n_folds": len(main.runs.folds),
        "main/n_test": main.runs.n_test,
    }
    deltas = {r.b: r.result for r in rows if r.table == "baselines" and r.metric == main.primary}
    for baseline in baselines:
        metric = baseline.primary
        est = baseline.estimates[metric]
        if baseline.name in deltas:
            out[f"baselines/{baseline.name}/{metric}"] = round(est.value, 4)
            result = deltas[baseline.name]
            out |= _interval(f"baselines/{baseline.name}/delta_{metric}", result, result.delta)
        else:  # another task (the regression baseline of a classifier): its own interval
            out |= _interval(f"baselines/{baseline.name}/{metric}", est, est.value)
    return {k: v for k, v in out.items() if v is not None}


def ablation_metrics(rows_results: dict[str, ModelResult], rows: list[ComparisonRow]) -> dict:
    """``metrics/ablation.json``: each row's UA and its delta vs the cross-attention baseline."""
    out: dict = {}
    deltas = {r.a: r.result for r in rows if r.table == "ablation" and r.metric == "ua"}
    for name, result in rows_results.items():
        out[f"{name}/ua"] = round(result.estimates["ua"].value, 4)
        if name in deltas:
            out |= _interval(f"{name}/delta_ua", deltas[name], deltas[name].delta)
    return out


def _best_by_dev(results: dict[str, ModelResult], metric: str) -> str | None:
    scored = {n: r.dev[metric] for n, r in results.items() if metric in r.dev}
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda n: (scored[n], -list(results).index(n)))  # first listed wins ties


# ---------------------------------------------------------------- transfer


def _single(directory: Path) -> Frames:
    files = _seed_files(directory)
    return {TRANSFER_FOLD: {s: pd.read_parquet(p) for s, p in files.items()}} if files else {}


def transfer_results(transfer_dir: Path) -> dict[tuple[str, str], dict[str, ModelResult]]:
    """``{(kind, budget): {setting: result}}`` for zeroshot, swap, fraction and kshot runs; the
    dev score of a few-shot strategy is its target-dev score (``records.json``)."""
    records_path = transfer_dir / "records.json"
    records = pd.read_json(records_path, typ="series").to_dict() if records_path.is_file() else {}
    out: dict[tuple[str, str], dict[str, ModelResult]] = {}
    for kind in ("zeroshot", "swap"):
        for method_dir in sorted(p for p in (transfer_dir / kind).glob("*") if p.is_dir()):
            test = _single(method_dir)
            if test:
                dev = _single(method_dir / "dev")
                out.setdefault((kind, ""), {})[method_dir.name] = model_result(
                    method_dir.name, kind, test, dev
                )
    for kind in ("fraction", "kshot"):
        budgets = sorted(
            (p for p in (transfer_dir / kind).glob("*") if p.is_dir()), key=lambda p: int(p.name)
        )
        for budget_dir in budgets:
            for strategy_dir in sorted(p for p in budget_dir.glob("*") if p.is_dir()):
                test = _single(strategy_dir)
                if not test:
                    continue
                result = model_result(strategy_dir.name, kind, test)
                runs = (records.get(f"{kind}/{budget_dir.name}") or {}).get(strategy_dir.name) or {}
                if runs:  # fit's dev score: UA, or -MAE for regression
                    score = float(np.mean([r["dev"] for r in runs.values()]))
                    result.dev = {
                        result.primary: round(abs(score) if result.task == "regression" else score, 4)
                    }
                    result.dev["n_train"] = float(np.mean([r["n_train"] for r in runs.values()]))
                out.setdefault((kind, budget_dir.name), {})[strategy_dir.name] = result
    return out


def transfer_comparisons(groups: dict[tuple[str, str], dict[str, ModelResult]]) -> list[ComparisonRow]:
    """Each adapter vs none, each strategy vs full at its budget, the swap adapters."""
    rows: list[ComparisonRow] = []
    for (kind, budget), results in groups.items():
        if kind == "swap":
            pairs = [(a, b) for a, b in SWAP_PAIRS if a in results and b in results]
        else:
            reference = "none" if kind == "zeroshot" else "full"
            pairs = [(name, reference) for name in results if name != reference and reference in results]
        for a, b in pairs:
            table = "fewshot" if kind == "fraction" else kind
            rows += compare_models(table, results[a], results[b], (results[a].primary,), budget)
    return rows


def transfer_rows(groups: dict[tuple[str, str], dict[str, ModelResult]]) -> list[dict]:
    """``results/transfer.csv``: the whole grid with intervals and the dev-selected setting."""
    rows = []
    for (kind, budget), results in groups.items():
        metric = next(iter(results.values())).primary
        best = _best_by_dev(results, metric) if kind != "swap" else None
        for name, result in results.items():
            for m, est in result.estimates.items():
                rows.append({
                    "kind": kind, "budget": budget, "setting": name, "metric": m, "value": _r(est.value),
                    "low": _r(est.low), "high": _r(est.high), "seed_std": _r(est.seed_std),
                    "dev": _r(result.dev.get(m, float("nan"))), "n_seeds": est.n_seeds, "n_test": est.n_test,
                    "n_train": _r(result.dev.get("n_train", float("nan"))), "best_by_dev": int(name == best),
                })  # fmt: skip
    return rows


def transfer_metrics(
    groups: dict[tuple[str, str], dict[str, ModelResult]], rows: list[ComparisonRow]
) -> dict:
    """The transfer headline of ``metrics/transfer.json`` (see the module doc)."""
    out: dict = {}
    deltas = {(r.table, r.budget, r.a): r.result for r in rows}
    for (kind, budget), results in groups.items():
        if kind == "swap":
            continue
        reference = "none" if kind == "zeroshot" else "full"
        table = "fewshot" if kind == "fraction" else kind
        prefix = "zeroshot" if kind == "zeroshot" else f"{kind}/{budget}"
        metric = next(iter(results.values())).primary
        if reference in results:
            est = results[reference].estimates[metric]
            out |= _interval(f"{prefix}/{reference}/{metric}", est, est.value)
        best = _best_by_dev(results, metric)
        if best is not None and best != reference:
            out[f"{prefix}/best_by_dev/{best}/{metric}"] = round(results[best].estimates[metric].value, 4)
            result = deltas.get((table, budget, best))
            if result is not None:
                out |= _interval(f"{prefix}/best_by_dev/{best}/delta_{metric}", result, result.delta)
    return out


# ---------------------------------------------------------------- plots


def _plots(main: ModelResult, main_frames: Frames, results: list[ModelResult], live_root: Path,
           plots_dir: Path, groups: dict) -> None:  # fmt: skip
    """Confusion matrix (main model, first fold and seed), UA bars with 95 % intervals, gates,
    training curves, the few-shot curve and zero-shot bars."""
    png_dir = plots_dir / "png"
    plots_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(next(iter(main_frames.values())).values()))
    if main.task == "classification":
        labels = list(main.classes)
        actual = [labels[i] for i in first["label_id"]]
        predicted = [labels[i] for i in first["pred_id"]]
    else:  # regression: the 7 Acc-7 classes (scores clipped to [-3, 3], rounded)
        labels = [str(v) for v in range(-3, 4)]
        known = first[first["sentiment"].notna()]
        actual = [str(int(v)) for v in np.round(np.clip(known["sentiment"], -3, 3))]
        predicted = [str(int(v)) for v in np.round(np.clip(known["sentiment_pred"], -3, 3))]
    with open(plots_dir / "confusion_source_test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows(zip(actual, predicted, strict=True))
    confusion = classification_metrics(
        [labels.index(a) for a in actual], [labels.index(p) for p in predicted], labels
    )["confusion"]
    title = f"Source test confusion (main model, fold {next(iter(main_frames))}, first seed)"
    plots.plot_confusion(confusion, labels, png_dir / "confusion_source_test.png", title)
    classifiers = {r.name: r.estimates["ua"] for r in results if r.task == "classification"}
    if classifiers:
        plots.plot_bars({n: e.value for n, e in classifiers.items()}, png_dir / "source_ua.png",
                        "Source test UA by model (mean over folds and seeds, 95% interval)", "UA",
                        {n: (e.high - e.low) / 2 for n, e in classifiers.items()})  # fmt: skip
    gates = gate_analysis(main_frames, main.classes)
    if gates:
        groups_ = {c: {m: g[c] for m, g in gates.items() if c in g} for c in ("reliable", "unreliable")}
        groups_ |= {e: {m: g["by_emotion"][e] for m, g in gates.items() if e in g["by_emotion"]}
                    for e in main.classes}  # fmt: skip
        plots.plot_grouped_bars({k: v for k, v in groups_.items() if v}, png_dir / "gates.png",
                                "Mean modality weight by reliability condition and emotion (main model)",
                                "gate")  # fmt: skip
    curves = {}
    for result in results:
        runs = sorted((live_root / result.name / main.folds[0]).glob("seed*"))
        for metric, relative in (("dev UA", "dev/ua.tsv"), ("train loss", "train/loss.tsv")):
            path = runs[0] / "plots" / "metrics" / relative if runs else None
            if path is not None and path.is_file():
                curves.setdefault(result.name, {})[metric] = pd.read_csv(path, sep="\t").iloc[:, -1].tolist()
    if curves:
        plots.plot_curves(curves, png_dir / "training_curves.png",
                          f"Training curves (source, fold {main.folds[0]}, first seed)")  # fmt: skip
    fewshot_csv(groups, plots_dir / "fewshot.csv", png_dir / "fewshot.png")
    zeroshot = groups.get(("zeroshot", ""), {})
    if zeroshot:
        metric = next(iter(zeroshot.values())).primary
        plots.plot_bars({n: r.estimates[metric].value for n, r in zeroshot.items()}, png_dir / "zeroshot.png",
                        f"Target test {metric.upper()} zero-shot, by feature adapter (95% interval)", metric,
                        {n: (r.estimates[metric].high - r.estimates[metric].low) / 2
                         for n, r in zeroshot.items()})  # fmt: skip


def fewshot_csv(groups: dict, path: Path, png: Path) -> None:
    """``plots/fewshot.csv`` (``fraction``, ``<strategy>_ua`` and its ``_low`` / ``_high``; 0 is
    the zero-shot model) and its PNG with 95 % intervals."""
    fractions = {int(b): r for (k, b), r in groups.items() if k == "fraction"}
    zero = groups.get(("zeroshot", ""), {}).get("none")
    strategies = sorted({s for r in fractions.values() for s in r})
    table: dict[int, dict[str, Estimate]] = {}
    for fraction, results in sorted(fractions.items()):
        for strategy, result in results.items():
            table.setdefault(fraction, {})[strategy] = result.estimates[result.primary]
    if zero is not None and strategies:
        table[0] = {s: zero.estimates[zero.primary] for s in strategies if s != "scratch"}
    metric = "ua"
    if fractions:
        metric = next(iter(next(iter(fractions.values())).values())).primary
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["fraction", *(f"{s}_{metric}{x}" for s in strategies for x in ("", "_low", "_high"))]
        )
        for fraction in sorted(table):
            cells = []
            for s in strategies:
                est = table[fraction].get(s)
                cells += ["", "", ""] if est is None else [_r(est.value), _r(est.low), _r(est.high)]
            writer.writerow([fraction, *cells])
    rows = [{"fraction": f, "setting": s, metric: e.value, f"{metric}_std": (e.high - e.low) / 2}
            for f, by in table.items() for s, e in by.items()]  # fmt: skip
    if rows:
        title = f"Target test {metric.upper()} vs fine-tuning data (mean over seeds, 95% interval)"
        plots.plot_fewshot(sorted(rows, key=lambda r: (r["setting"], r["fraction"])), png, title, metric)


# ---------------------------------------------------------------- the stage


def evaluate(
    *,
    source_dir: str | Path,
    ablation_dir: str | Path,
    transfer_dir: str | Path,
    metadata_path: str | Path,
    live_root: str | Path,
    metrics_dir: str | Path,
    results_dir: str | Path,
    plots_dir: str | Path,
    folds: list[str],
    baselines: list[str],
    variants: list[str],
    params: dict | None = None,
    protocol: str = "",
) -> dict:
    """Compute every number, comparison, table and plot; return ``metrics/source.json``'s dict.

    Only the current models (``baselines`` / ``variants``) and ``folds`` are read: a recipe
    dropped from the params leaves its old predictions behind, and they are ignored.
    """
    source_dir, ablation_dir, transfer_dir = Path(source_dir), Path(ablation_dir), Path(transfer_dir)
    metrics_dir, results_dir, plots_dir = Path(metrics_dir), Path(results_dir), Path(plots_dir)
    main_test = read_frames(source_dir / MAIN, folds)
    missing = [f for f in folds if f not in main_test]
    if missing:
        raise FileNotFoundError(
            f"{source_dir}/{MAIN}/<fold>/seed*.parquet: no predictions for folds {missing}; run `dvc repro`"
        )
    main_dev = read_frames(source_dir / MAIN, folds, "dev")
    main = model_result(MAIN, "main", main_test, main_dev)
    fold_table = fold_rows(MAIN, {"test": main_test, "dev": main_dev}, main.classes)
    results, extra = [main], []
    for role, root, names in (("baseline", source_dir, baselines), ("ablation", ablation_dir, variants)):
        for name in names:
            test = read_frames(root / name, folds)
            if not test:
                logger.warning("%s/%s: no predictions; left out", root, name)
                continue
            dev = read_frames(root / name, folds, "dev")
            result = model_result(name, role, test, dev)
            results.append(result)
            fold_table += fold_rows(name, {"test": test, "dev": dev}, result.classes)
            sentiment = sentiment_result(name, test)
            if sentiment is not None:
                extra.append(sentiment)
    by_name = {r.name: r for r in results}
    comparisons: list[ComparisonRow] = []
    for result in results:
        if result.role == "baseline" and result.task == main.task:
            comparisons += compare_models("baselines", main, result, HEADLINE[main.task])
    ablation_rows = {n: by_name[n] for n in [*variants, *ABLATION_BASELINES, MAIN]
                     if n in by_name and by_name[n].task == "classification"}  # fmt: skip
    if REFERENCE_ROW in ablation_rows:
        for name, result in ablation_rows.items():
            if name != REFERENCE_ROW:
                comparisons += compare_models("ablation", result, ablation_rows[REFERENCE_ROW], ("ua",))
    groups = transfer_results(transfer_dir)
    comparisons += transfer_comparisons(groups)
    adjust(comparisons)

    baseline_results = [r for r in results if r.role == "baseline"]
    source = source_metrics(main, baseline_results, comparisons)
    write_json(metrics_dir / "source.json", source)
    write_json(metrics_dir / "ablation.json", ablation_metrics(ablation_rows, comparisons))
    write_json(metrics_dir / "transfer.json", transfer_metrics(groups, comparisons))

    table = pd.read_parquet(metadata_path)
    _write_csv(results_dir / "models.csv", models_rows([*results, *extra], protocol))
    _write_csv(results_dir / "comparisons.csv", comparison_rows(comparisons))
    _write_csv(results_dir / "transfer.csv", transfer_rows(groups))
    _write_csv(results_dir / "folds.csv", fold_table)
    _write_csv(results_dir / "per_class.csv", per_class_rows(main) if main.task == "classification" else [])
    _write_csv(results_dir / "per_speaker.csv", per_speaker_rows(main, table))
    write_json(results_dir / "gates.json", gate_analysis(main_test, main.classes))
    write_json(results_dir / "provenance.json", provenance(params or {}))
    _plots(main, main_test, results, Path(live_root), plots_dir, groups)
    logger.info("main %s: %s", main.primary, main.estimates[main.primary])
    return source
