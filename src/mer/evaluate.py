"""The evaluate stage: prediction files in; headline metrics, result tables and plots out.

Every number is the mean over the protocol folds (``corpora.folds``) and seeds, with a 95 %
interval, and every stated comparison is a paired difference with its interval and a verdict,
all by the one method of :mod:`mer.uncertainty`.

Inputs (per model, fold and seed, read by :mod:`mer.predictions`):
``<source>/<model>/<fold>/seed<k>.parquet`` (test) and ``.../<fold>/dev/seed<k>.parquet`` (dev)
for the main model (``fusion``) and the baselines, ``<ablation>/<recipe>/<fold>/...`` for the
ablation variants, and the transfer stage's
``<transfer>/{zeroshot/<method>,fraction/<pct>/<strategy>,kshot/<k>/<strategy>,swap/<method>}/``.
A recipe the source corpus cannot support has a skip record in its fold folders instead
(:mod:`mer.recipes`): it is listed in ``results/skipped.csv`` with its reason and fix, and its
metrics key is ``skipped: 1``.

Declared DVC metrics (numbers only, the headline keys; ``dvc metrics diff`` reads these; every
key is built by :mod:`mer.metric_keys`):

- ``metrics/source.json``: ``main/<m>``, ``main/<m>_low`` / ``_high`` for UA, WA, weighted F1
  (regression: MAE, r, Acc-2 non0), ``main/dev_ua`` (``dev_mae``), ``main/n_seeds`` /
  ``n_folds`` / ``n_test``; ``baselines/<name>/ua`` with ``delta_ua`` (main minus baseline)
  and ``delta_ua_low`` / ``_high``; a skipped baseline ``baselines/<name>/skipped`` = 1.
- ``metrics/ablation.json``: ``<row>/ua`` with ``delta_ua`` (row minus cross-attention) and its
  interval; a skipped variant ``<row>/skipped`` = 1.
- ``metrics/transfer.json``: ``zeroshot/none/ua`` and the adapter chosen on target dev
  (``zeroshot/best_by_dev/<method>/...``, delta vs none); per budget (``fraction/<pct>``,
  ``kshot/<k>``) full fine-tuning with its interval and the strategy chosen on dev with its
  delta vs full.

Data files in ``results/`` (read by the report, ``mer.review`` and ``dvc plots``):
``models.csv`` (every model x metric: value, interval, seed std, dev score, design),
``comparisons.csv`` (every paired comparison, Holm-adjusted p and verdict), ``transfer.csv``
(the whole few-shot grid), ``folds.csv`` (each fold, seed and split), ``per_class.csv``,
``per_speaker.csv``, ``skipped.csv`` (each skipped recipe: role, folds, what it needs that the
corpus lacks, reason, fix), ``gates.json`` and ``provenance.json``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer import metric_keys as keys
from mer import plots
from mer.files import write_json
from mer.metrics import classification_metrics, regression_metrics
from mer.predictions import Frames, read_model, read_seeds, read_skipped
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

MAIN = keys.MAIN_MODEL
HEADLINE = keys.HEADLINE
PRIMARY = keys.PRIMARY
REFERENCE_ROW = "cross_attention"  # seed 003's baseline: the ablation rows are compared with it
ABLATION_BASELINES = ("concat", "late", "ensemble")  # fusion families shown in the ablation table
TRANSFER_FOLD = "target"  # transfer runs have one "fold": the target corpus's test split
SWAP_PAIRS = (("paired", "seed002"), ("seed002", "original"), ("paired", "original"))
# what each transfer kind's settings are compared with (swap: the pairs above)
TRANSFER_REFERENCE = {"zeroshot": "none", "fraction": "full", "kshot": "full"}
SKIPPED_COLUMNS = ("recipe", "role", "folds", "missing", "reason", "fix")  # results/skipped.csv


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


@dataclass
class SourceResults:
    """The source-domain models read from their prediction files.

    Attributes:
        main (ModelResult): the main model.
        main_test (Frames): its test predictions (gates, confusion matrix).
        models (list[ModelResult]): the main model, then each baseline and ablation variant that
            has predictions, in params order.
        sentiment (list[ModelResult]): the sentiment heads of the multi-task models.
        folds (list[dict]): the ``results/folds.csv`` rows of every model.
        skipped (list[dict]): the ``results/skipped.csv`` rows: each recipe whose stages the
            source corpus could not support, with the reason and the fix.
    """

    main: ModelResult
    main_test: Frames
    models: list[ModelResult]
    sentiment: list[ModelResult] = field(default_factory=list)
    folds: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def baselines(self) -> list[ModelResult]:
        return [r for r in self.models if r.role == "baseline"]


@dataclass
class TransferGroup:
    """The settings of one transfer kind at one budget, e.g. the strategies at 10 % target data.

    Attributes:
        kind (str): ``zeroshot``, ``swap``, ``fraction`` or ``kshot``.
        budget (str): the percentage or k (``""`` for zeroshot and swap).
        results (dict[str, ModelResult]): ``{setting: result}``, settings by name.
    """

    kind: str
    budget: str
    results: dict[str, ModelResult]

    @property
    def table(self) -> str:
        """The group's table in ``comparisons.csv``."""
        return "fewshot" if self.kind == "fraction" else self.kind

    @property
    def reference(self) -> str | None:
        return TRANSFER_REFERENCE.get(self.kind)

    @property
    def primary(self) -> str:
        return next(iter(self.results.values())).primary


# ---------------------------------------------------------------- model results


def class_names(frame: pd.DataFrame) -> tuple[str, ...]:
    """Class names from a classifier's ``prob_<class>`` columns (``label_id`` order)."""
    names = tuple(c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_"))
    return names or EMOTIONS


def _first_frame(frames: Frames) -> pd.DataFrame:
    return next(iter(next(iter(frames.values())).values()))


def _runs(frames: Frames) -> tuple[Runs, tuple[str, ...]]:
    first = _first_frame(frames)
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
    if "sentiment_pred_id" not in _first_frame(test):
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


# ---------------------------------------------------------------- source: main model, baselines, ablation


def read_main(source_dir: Path, folds: list[str]) -> SourceResults:
    """The main model, which must have test predictions on every protocol fold."""
    test = read_model(source_dir, MAIN, folds)
    missing = [f for f in folds if f not in test]
    if missing:
        raise FileNotFoundError(
            f"{source_dir}/{MAIN}/<fold>/seed*.parquet: no predictions for folds {missing}; run `dvc repro`"
        )
    dev = read_model(source_dir, MAIN, folds, "dev")
    main = model_result(MAIN, "main", test, dev)
    return SourceResults(main, test, [main], folds=fold_rows(MAIN, {"test": test, "dev": dev}, main.classes))


def skipped_row(name: str, role: str, records: dict[str, dict]) -> dict:
    """The ``results/skipped.csv`` row of a recipe skipped on ``records``' folds."""
    first = next(iter(records.values()))
    missing = [*first.get("missing_labels", []), *first.get("missing_modalities", [])]
    return {"recipe": name, "role": role, "folds": " ".join(records), "missing": " ".join(missing),
            "reason": first["reason"], "fix": first["fix"]}  # fmt: skip


def read_models(source: SourceResults, role: str, root: Path, names: list[str], folds: list[str]) -> None:
    """Add each model of ``names`` (``role``: baseline or ablation) that has predictions under
    ``root`` to ``source``, with its fold rows and sentiment head, and each one its stages
    skipped to ``source.skipped``; warn about the others."""
    for name in names:
        test = read_model(root, name, folds)
        skips = read_skipped(root, name, folds)
        if skips and test:  # support is decided per corpus, so never on some folds only
            raise RuntimeError(
                f"{root}/{name}: skipped on folds {list(skips)} but trained on {list(test)}; "
                f"re-run its stages (`dvc repro -f {role}@{name}-<fold>` for each fold)"
            )
        if skips:
            source.skipped.append(skipped_row(name, role, skips))
            logger.info("%s %s skipped: %s", role, name, source.skipped[-1]["reason"])
            continue
        if not test:
            logger.warning("%s/%s: no predictions; left out", root, name)
            continue
        dev = read_model(root, name, folds, "dev")
        result = model_result(name, role, test, dev)
        source.models.append(result)
        source.folds += fold_rows(name, {"test": test, "dev": dev}, result.classes)
        sentiment = sentiment_result(name, test)
        if sentiment is not None:
            source.sentiment.append(sentiment)


def ablation_table(models: list[ModelResult], variants: list[str]) -> dict[str, ModelResult]:
    """The ablation table's classifiers: the variants, the fusion families, the main model."""
    by_name = {r.name: r for r in models}
    names = [*variants, *ABLATION_BASELINES, MAIN]
    return {n: by_name[n] for n in names if n in by_name and by_name[n].task == "classification"}


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
    return [
        ComparisonRow(
            table, a.name, b.name, m, results[m], a.estimates[m].value, b.estimates[m].value, budget
        )
        for m in metrics
    ]


def baseline_comparisons(main: ModelResult, baselines: list[ModelResult]) -> list[ComparisonRow]:
    """The main model vs each baseline of its task, in every headline metric."""
    rows: list[ComparisonRow] = []
    for baseline in baselines:
        if baseline.task == main.task:
            rows += compare_models("baselines", main, baseline, HEADLINE[main.task])
    return rows


def ablation_comparisons(table: dict[str, ModelResult]) -> list[ComparisonRow]:
    """Each ablation row vs the cross-attention reference in UA (none without the reference)."""
    if REFERENCE_ROW not in table:
        return []
    reference = table[REFERENCE_ROW]
    rows: list[ComparisonRow] = []
    for name, result in table.items():
        if name != REFERENCE_ROW:
            rows += compare_models("ablation", result, reference, ("ua",))
    return rows


def transfer_comparisons(groups: list[TransferGroup]) -> list[ComparisonRow]:
    """Each adapter vs none, each strategy vs full at its budget, the swap adapters."""
    rows: list[ComparisonRow] = []
    for group in groups:
        results, reference = group.results, group.reference
        if group.kind == "swap":
            pairs = [(a, b) for a, b in SWAP_PAIRS if a in results and b in results]
        else:
            pairs = [(name, reference) for name in results if name != reference and reference in results]
        for a, b in pairs:
            rows += compare_models(group.table, results[a], results[b], (results[a].primary,), group.budget)
    return rows


def adjust(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """Holm-adjust the p-values within each (table, metric)."""
    groups: dict[tuple[str, str], list[ComparisonRow]] = {}
    for row in rows:
        groups.setdefault((row.table, row.metric), []).append(row)
    for group in groups.values():
        for row, p in zip(group, holm([r.result.p for r in group]), strict=True):
            row.p_holm = float(p)
    return rows


# ---------------------------------------------------------------- transfer


def _single(directory: Path) -> Frames:
    seeds = read_seeds(directory)
    return {TRANSFER_FOLD: seeds} if seeds else {}


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.is_dir())


def _adapter_group(transfer_dir: Path, kind: str) -> TransferGroup | None:
    """Zero-shot or swap: one setting per feature adapter, each with its target-dev score."""
    results = {}
    for method_dir in _subdirs(transfer_dir / kind):
        test = _single(method_dir)
        if test:
            results[method_dir.name] = model_result(method_dir.name, kind, test, _single(method_dir / "dev"))
    return TransferGroup(kind, "", results) if results else None


def _budget_groups(transfer_dir: Path, kind: str, records: dict) -> list[TransferGroup]:
    """Fraction or k-shot: per budget, one setting per strategy; its dev score is the fit's
    target-dev score (``records.json``: UA, or -MAE for regression) and its mean train size."""
    groups = []
    for budget_dir in sorted(_subdirs(transfer_dir / kind), key=lambda p: int(p.name)):
        results = {}
        for strategy_dir in _subdirs(budget_dir):
            test = _single(strategy_dir)
            if not test:
                continue
            result = model_result(strategy_dir.name, kind, test)
            runs = (records.get(f"{kind}/{budget_dir.name}") or {}).get(strategy_dir.name) or {}
            if runs:
                score = float(np.mean([r["dev"] for r in runs.values()]))
                result.dev = {result.primary: round(abs(score) if result.task == "regression" else score, 4)}
                result.dev["n_train"] = float(np.mean([r["n_train"] for r in runs.values()]))
            results[strategy_dir.name] = result
        if results:
            groups.append(TransferGroup(kind, budget_dir.name, results))
    return groups


def transfer_results(transfer_dir: Path) -> list[TransferGroup]:
    """The zeroshot and swap groups, then the fraction and kshot groups by budget."""
    records_path = transfer_dir / "records.json"
    records = pd.read_json(records_path, typ="series").to_dict() if records_path.is_file() else {}
    groups = [_adapter_group(transfer_dir, kind) for kind in ("zeroshot", "swap")]
    groups += [g for kind in ("fraction", "kshot") for g in _budget_groups(transfer_dir, kind, records)]
    return [g for g in groups if g is not None]


def _best_by_dev(results: dict[str, ModelResult], metric: str) -> str | None:
    scored = {n: r.dev[metric] for n, r in results.items() if metric in r.dev}
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda n: (scored[n], -list(results).index(n)))  # first listed wins ties


# ---------------------------------------------------------------- declared metrics


def _with_interval(key: str, bounds: Estimate | Comparison, value: float) -> dict:
    """``{key: value, key_low: low, key_high: high}``, rounded as in every metrics file."""
    return {key: round(value, 4), keys.low(key): round(bounds.low, 4), keys.high(key): round(bounds.high, 4)}


def main_metrics(main: ModelResult) -> dict:
    """The main model's keys of ``metrics/source.json``: headline metrics, dev score, design."""
    out: dict = {}
    for metric in HEADLINE[main.task]:
        est = main.estimates[metric]
        out |= _with_interval(keys.main(metric), est, est.value)
    out[keys.main(keys.dev(main.primary))] = main.dev.get(main.primary)
    out[keys.main(keys.N_SEEDS)] = main.runs.n_seeds
    out[keys.main(keys.N_FOLDS)] = len(main.runs.folds)
    out[keys.main(keys.N_TEST)] = main.runs.n_test
    return out


def baseline_metrics(main: ModelResult, baselines: list[ModelResult], rows: list[ComparisonRow]) -> dict:
    """Each baseline's primary metric and its delta vs the main model (another task's baseline,
    e.g. the regression baseline of a classifier: its own interval)."""
    out: dict = {}
    deltas = {r.b: r.result for r in rows if r.table == "baselines" and r.metric == main.primary}
    for baseline in baselines:
        metric = baseline.primary
        est = baseline.estimates[metric]
        if baseline.name in deltas:
            out[keys.baseline(baseline.name, metric)] = round(est.value, 4)
            result = deltas[baseline.name]
            out |= _with_interval(keys.baseline(baseline.name, keys.delta(metric)), result, result.delta)
        else:
            out |= _with_interval(keys.baseline(baseline.name, metric), est, est.value)
    return out


def skipped_metrics(skipped: list[dict], role: str) -> dict:
    """``skipped: 1`` for each skipped recipe of ``role`` (baseline / ablation)."""
    key = keys.baseline if role == "baseline" else keys.ablation
    return {key(row["recipe"], keys.SKIPPED): 1 for row in skipped if row["role"] == role}


def source_metrics(
    main: ModelResult, baselines: list[ModelResult], rows: list[ComparisonRow], skipped: list[dict] = ()
) -> dict:
    """The headline keys of ``metrics/source.json`` (keys without a value left out)."""
    out = (
        main_metrics(main)
        | baseline_metrics(main, baselines, rows)
        | skipped_metrics(list(skipped), "baseline")
    )
    return {k: v for k, v in out.items() if v is not None}


def ablation_metrics(
    rows_results: dict[str, ModelResult], rows: list[ComparisonRow], skipped: list[dict] = ()
) -> dict:
    """``metrics/ablation.json``: each row's UA and its delta vs the cross-attention baseline;
    ``skipped: 1`` for each skipped variant."""
    out: dict = skipped_metrics(list(skipped), "ablation")
    deltas = {r.a: r.result for r in rows if r.table == "ablation" and r.metric == "ua"}
    for name, result in rows_results.items():
        out[keys.ablation(name, "ua")] = round(result.estimates["ua"].value, 4)
        if name in deltas:
            out |= _with_interval(keys.ablation(name, keys.delta("ua")), deltas[name], deltas[name].delta)
    return out


def transfer_metrics(groups: list[TransferGroup], rows: list[ComparisonRow]) -> dict:
    """The transfer headline of ``metrics/transfer.json`` (see the module doc)."""
    out: dict = {}
    deltas = {(r.table, r.budget, r.a): r.result for r in rows}
    for group in groups:
        if group.kind == "swap":
            continue
        kind, budget, results, reference = group.kind, group.budget, group.results, group.reference
        metric = group.primary
        if reference in results:
            est = results[reference].estimates[metric]
            out |= _with_interval(keys.transfer(kind, budget, reference, metric), est, est.value)
        best = _best_by_dev(results, metric)
        if best is not None and best != reference:
            out[keys.best_by_dev(kind, budget, best, metric)] = round(
                results[best].estimates[metric].value, 4
            )
            result = deltas.get((group.table, budget, best))
            if result is not None:
                key = keys.best_by_dev(kind, budget, best, keys.delta(metric))
                out |= _with_interval(key, result, result.delta)
    return out


def write_metrics(
    metrics_dir: Path,
    source: SourceResults,
    ablation: dict[str, ModelResult],
    groups: list[TransferGroup],
    comparisons: list[ComparisonRow],
) -> dict:
    """``metrics/{source,ablation,transfer}.json``; returns ``source.json``'s dict."""
    headline = source_metrics(source.main, source.baselines, comparisons, source.skipped)
    write_json(metrics_dir / "source.json", headline)
    write_json(metrics_dir / "ablation.json", ablation_metrics(ablation, comparisons, source.skipped))
    write_json(metrics_dir / "transfer.json", transfer_metrics(groups, comparisons))
    return headline


# ---------------------------------------------------------------- result tables


def _r(value: float) -> float | str:
    return "" if value is None or not np.isfinite(value) else round(float(value), 4)


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row)) if rows else list(columns) or ["empty"]
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


def transfer_rows(groups: list[TransferGroup]) -> list[dict]:
    """``results/transfer.csv``: the whole grid with intervals and the dev-selected setting."""
    rows = []
    for group in groups:
        best = _best_by_dev(group.results, group.primary) if group.kind != "swap" else None
        for name, result in group.results.items():
            for m, est in result.estimates.items():
                rows.append({
                    "kind": group.kind, "budget": group.budget, "setting": name, "metric": m,
                    "value": _r(est.value), "low": _r(est.low), "high": _r(est.high),
                    "seed_std": _r(est.seed_std), "dev": _r(result.dev.get(m, float("nan"))),
                    "n_seeds": est.n_seeds, "n_test": est.n_test,
                    "n_train": _r(result.dev.get("n_train", float("nan"))), "best_by_dev": int(name == best),
                })  # fmt: skip
    return rows


def write_results(
    results_dir: Path,
    source: SourceResults,
    groups: list[TransferGroup],
    comparisons: list[ComparisonRow],
    metadata_path: Path,
    protocol: str,
) -> None:
    """The data files of ``results/`` (the module doc), provenance apart."""
    main = source.main
    _write_csv(results_dir / "models.csv", models_rows([*source.models, *source.sentiment], protocol))
    _write_csv(results_dir / "comparisons.csv", comparison_rows(comparisons))
    _write_csv(results_dir / "transfer.csv", transfer_rows(groups))
    _write_csv(results_dir / "folds.csv", source.folds)
    _write_csv(results_dir / "skipped.csv", source.skipped, SKIPPED_COLUMNS)
    _write_csv(results_dir / "per_class.csv", per_class_rows(main) if main.task == "classification" else [])
    _write_csv(results_dir / "per_speaker.csv", per_speaker_rows(main, pd.read_parquet(metadata_path)))
    write_json(results_dir / "gates.json", gate_analysis(source.main_test, main.classes))


def write_provenance(results_dir: Path, params: dict) -> None:
    """``results/provenance.json``: git commit, code and params hashes, device, packages."""
    write_json(results_dir / "provenance.json", provenance(params))


# ---------------------------------------------------------------- plots


def _intervals(estimates: dict[str, Estimate]) -> dict[str, float]:
    """Half-widths of the 95 % intervals, drawn as error bars."""
    return {name: (est.high - est.low) / 2 for name, est in estimates.items()}


def plot_confusion(main: ModelResult, main_test: Frames, plots_dir: Path) -> None:
    """``plots/confusion_source_test.csv`` (``dvc plots``) and its PNG: the main model's first fold
    and seed; a regression model's scores as the 7 Acc-7 classes (clipped to [-3, 3], rounded)."""
    first = _first_frame(main_test)
    if main.task == "classification":
        labels = list(main.classes)
        actual = [labels[i] for i in first["label_id"]]
        predicted = [labels[i] for i in first["pred_id"]]
    else:
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
    title = f"Source test confusion (main model, fold {next(iter(main_test))}, first seed)"
    plots.plot_confusion(confusion, labels, plots_dir / "png" / "confusion_source_test.png", title)


def plot_source_ua(models: list[ModelResult], png_dir: Path) -> None:
    """Source test UA of every classifier with its 95 % interval."""
    classifiers = {r.name: r.estimates["ua"] for r in models if r.task == "classification"}
    if classifiers:
        title = "Source test UA by model (mean over folds and seeds, 95% interval)"
        values = {n: e.value for n, e in classifiers.items()}
        plots.plot_bars(values, png_dir / "source_ua.png", title, "UA", _intervals(classifiers))


def plot_gates(main: ModelResult, main_test: Frames, png_dir: Path) -> None:
    """The main model's mean modality weights by reliability condition and by emotion."""
    gates = gate_analysis(main_test, main.classes)
    if not gates:
        return
    groups = {c: {m: g[c] for m, g in gates.items() if c in g} for c in ("reliable", "unreliable")}
    groups |= {
        e: {m: g["by_emotion"][e] for m, g in gates.items() if e in g["by_emotion"]} for e in main.classes
    }
    title = "Mean modality weight by reliability condition and emotion (main model)"
    plots.plot_grouped_bars({k: v for k, v in groups.items() if v}, png_dir / "gates.png", title, "gate")


def plot_training_curves(models: list[ModelResult], fold: str, live_root: Path, png_dir: Path) -> None:
    """Dev UA and train loss of each model's first seed on ``fold`` (its dvclive run)."""
    curves = {}
    for result in models:
        runs = sorted((live_root / result.name / fold).glob("seed*"))
        for metric, relative in (("dev UA", "dev/ua.tsv"), ("train loss", "train/loss.tsv")):
            path = runs[0] / "plots" / "metrics" / relative if runs else None
            if path is not None and path.is_file():
                curves.setdefault(result.name, {})[metric] = pd.read_csv(path, sep="\t").iloc[:, -1].tolist()
    if curves:
        title = f"Training curves (source, fold {fold}, first seed)"
        plots.plot_curves(curves, png_dir / "training_curves.png", title)


def fewshot_csv(groups: list[TransferGroup], path: Path, png: Path) -> None:
    """``plots/fewshot.csv`` (``fraction``, ``<strategy>_ua`` and its ``_low`` / ``_high``; 0 is
    the zero-shot model) and its PNG with 95 % intervals."""
    fractions = {int(g.budget): g.results for g in groups if g.kind == "fraction"}
    zero = next((g.results.get("none") for g in groups if g.kind == "zeroshot"), None)
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


def plot_zeroshot(groups: list[TransferGroup], png_dir: Path) -> None:
    """Target test score of each zero-shot feature adapter with its 95 % interval."""
    zeroshot = next((g for g in groups if g.kind == "zeroshot"), None)
    if zeroshot is None:
        return
    metric = zeroshot.primary
    estimates = {n: r.estimates[metric] for n, r in zeroshot.results.items()}
    title = f"Target test {metric.upper()} zero-shot, by feature adapter (95% interval)"
    values = {n: e.value for n, e in estimates.items()}
    plots.plot_bars(values, png_dir / "zeroshot.png", title, metric, _intervals(estimates))


def write_plots(plots_dir: Path, source: SourceResults, groups: list[TransferGroup], live_root: Path) -> None:
    """Confusion matrix, UA bars with 95 % intervals, gates, training curves, the few-shot curve
    and zero-shot bars."""
    png_dir = plots_dir / "png"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(source.main, source.main_test, plots_dir)
    plot_source_ua(source.models, png_dir)
    plot_gates(source.main, source.main_test, png_dir)
    plot_training_curves(source.models, source.main.folds[0], live_root, png_dir)
    fewshot_csv(groups, plots_dir / "fewshot.csv", png_dir / "fewshot.png")
    plot_zeroshot(groups, png_dir)


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
    source = read_main(Path(source_dir), folds)
    read_models(source, "baseline", Path(source_dir), baselines, folds)
    read_models(source, "ablation", Path(ablation_dir), variants, folds)
    ablation = ablation_table(source.models, variants)
    groups = transfer_results(Path(transfer_dir))
    comparisons = adjust(
        [
            *baseline_comparisons(source.main, source.baselines),
            *ablation_comparisons(ablation),
            *transfer_comparisons(groups),
        ]
    )
    headline = write_metrics(Path(metrics_dir), source, ablation, groups, comparisons)
    write_results(Path(results_dir), source, groups, comparisons, Path(metadata_path), protocol)
    write_provenance(Path(results_dir), params or {})
    write_plots(Path(plots_dir), source, groups, Path(live_root))
    logger.info("main %s: %s", source.main.primary, source.main.estimates[source.main.primary])
    return headline
