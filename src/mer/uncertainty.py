"""Intervals and paired comparisons: the one method behind every uncertainty mer reports.

**The number.** A model's score is the mean over protocol folds ``f`` and training seeds ``s`` of
the metric ``m(f, s)`` computed on fold ``f``'s test utterances (UA, WA, F1, MAE, r, ...).

**Its noise** has two sources, both covered:

1. *Test-utterance sampling.* Within each fold the test utterances are resampled ``n_boot``
   times, class-stratified (each class keeps its count; regression: one stratum), and the same
   draw is applied to every seed (and to both sides of a comparison: paired by utterance).
   ``v_mean`` is the variance over draws of the reported number (the fold-and-seed mean);
   ``v_one`` is the same for a single seed's fold mean, averaged over seeds.
2. *Training seeds.* ``x_s`` is seed ``s``'s fold mean on the observed utterances. Its sample
   variance (ddof=1) holds the true seed variance plus the seed-by-utterance interaction that
   the bootstrap already counted in ``v_mean``; for a metric linear in the utterances that part
   is ``(v_one - v_mean) * S / (S - 1)``, so ``seed_var = max(var(x_s) - that, 0)`` (a
   method-of-moments split of a crossed utterance x seed design; resampling both levels would
   count the interaction twice and over-cover).

The variance of the reported number is ``V = v_mean + seed_var / S`` and the interval is
``value ± t(df) * sqrt(V)`` with Welch-Satterthwaite ``df = V^2 / ((var(x_s)/S)^2 / (S-1))``
(the raw seed variance carries the S - 1 degrees of freedom; infinite df, a normal quantile,
when the seeds agree exactly). With one seed the seed term cannot be estimated: the interval
covers utterance sampling only and ``seed_std`` is NaN. Simulated (3 seeds, 400 utterances), the
95 % interval covers the true UA in about 95 % of runs at a seed sd of 1-2 UA points, 97-98 %
(conservative) when seeds differ only utterance by utterance, and about 93 % at a seed sd of 8
points (three seeds pin that down poorly: train more seeds).

**A comparison** ``A - B`` runs the same computation on the per-(draw, fold, seed) differences,
seeds paired by id and utterances by ``utt_id``. Verdict: *better* when the interval lies above 0
(below, for lower-is-better metrics such as MAE), *worse* when on the other side, else *within
noise*. ``p`` is two-sided from the same t; :func:`holm` adjusts a table's p-values.

``tests/test_uncertainty.py`` checks coverage (93-97 % of 2000 simulations with known UA and seed
noise), power (+10 UA on 500 utterances is *better*) and false positives (seed-only differences
are *within noise* in >= 90 % of pairs).

>>> labels = np.array([0, 0, 1, 1] * 25)
>>> preds = np.stack([labels, np.where(np.arange(100) % 10 == 0, 1 - labels, labels)])  # 2 seeds
>>> runs = Runs.from_arrays({"main": (np.arange(100).astype(str), labels, preds)}, num_classes=2)
>>> est = estimate(runs, ("ua",), n_boot=200)["ua"]
>>> est.value, est.n_seeds, est.n_test, bool(est.low < est.value < est.high)
(0.95, 2, 100, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
N_BOOT = 1000
CLASSIFICATION_METRICS = ("ua", "wa", "f1_weighted", "f1_macro")
REGRESSION_METRICS = ("mae", "pearson", "acc2_has0", "acc2_non0", "f1_non0", "acc7", "acc5")
LOWER_IS_BETTER = frozenset({"mae"})
# where each metric lives: intervals are clipped to it (a t quantile with few seeds can reach past)
RANGES = {"mae": (0.0, np.inf), "pearson": (-1.0, 1.0)}  # every other metric: a rate in [0, 1]
VERDICTS = ("better", "worse", "within noise")


def lower_is_better(metric: str) -> bool:
    """True for error metrics (MAE): a negative difference is the improvement."""
    return metric.split("/")[-1].removeprefix("dev_") in LOWER_IS_BETTER


@dataclass(frozen=True)
class FoldRuns:
    """One fold's test predictions of one model.

    Attributes:
        utt_ids (`str` array of shape `(n,)`): the test utterances, sorted.
        labels (array of shape `(n,)`): class ids (classification) or reference scores.
        predictions (array of shape `(S, n)`): predicted class ids or scores, one row per seed.
        seeds (tuple of int): the seed of each row.
    """

    utt_ids: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Runs:
    """A model's test predictions over folds and seeds (what one reported number is made of)."""

    folds: dict[str, FoldRuns]
    task: str = "classification"  # or "regression"
    num_classes: int = 0

    @property
    def n_seeds(self) -> int:
        return min(len(f.seeds) for f in self.folds.values())

    @property
    def n_test(self) -> int:
        return int(sum(len(f.utt_ids) for f in self.folds.values()))

    @classmethod
    def from_arrays(
        cls,
        folds: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        num_classes: int = 0,
        task: str = "classification",
        seeds: Sequence[int] | None = None,
    ) -> Runs:
        """From ``{fold: (utt_ids (n,), labels (n,), predictions (S, n))}``."""
        out = {}
        for fold, (ids, labels, predictions) in folds.items():
            predictions = np.atleast_2d(np.asarray(predictions))
            order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
            fold_seeds = tuple(seeds) if seeds is not None else tuple(range(predictions.shape[0]))
            out[str(fold)] = FoldRuns(
                np.asarray(ids, dtype=str)[order],
                np.asarray(labels)[order],
                predictions[:, order],
                fold_seeds,
            )
        return cls(out, task, num_classes)

    @classmethod
    def from_frames(cls, folds: Mapping[str, Mapping[int, pd.DataFrame]], num_classes: int = 0) -> Runs:
        """From ``{fold: {seed: predictions frame}}`` as ``mer.train.predict`` writes them.

        Classification frames hold ``label_id`` / ``pred_id``; regression frames ``sentiment`` /
        ``sentiment_pred`` (rows without a reference score are left out). Every seed of a fold
        must hold the same utterances.
        """
        out, task = {}, "classification"
        for fold, by_seed in folds.items():
            if not by_seed:
                raise ValueError(f"fold {fold}: no seed's predictions")
            seeds = tuple(sorted(by_seed))
            frames = [by_seed[s].sort_values("utt_id", kind="stable") for s in seeds]
            regression = "sentiment_pred" in frames[0] and "pred_id" not in frames[0]
            task = "regression" if regression else "classification"
            label, pred = ("sentiment", "sentiment_pred") if regression else ("label_id", "pred_id")
            if regression:
                frames = [f[f[label].notna()] for f in frames]
            ids = frames[0]["utt_id"].astype(str).to_numpy()
            for seed, frame in zip(seeds[1:], frames[1:], strict=True):
                if not np.array_equal(frame["utt_id"].astype(str).to_numpy(), ids):
                    raise ValueError(
                        f"fold {fold}: seed {seed} predicts other utterances than seed {seeds[0]}"
                    )
            labels = frames[0][label].to_numpy()
            predictions = np.stack([f[pred].to_numpy() for f in frames])  # (S, n)
            out[str(fold)] = FoldRuns(ids, labels, predictions, seeds)
        if task == "classification" and not num_classes:
            num_classes = int(max(max(f.labels.max(), f.predictions.max()) for f in out.values())) + 1
        return cls(out, task, num_classes)


@dataclass(frozen=True)
class Estimate:
    """A reported number with its interval: ``value`` (mean over folds and seeds), ``low`` /
    ``high`` (the ``CONFIDENCE`` interval), ``se``, ``df``, ``seed_std`` (std of the per-seed
    fold means, ddof=1; NaN with one seed) and the design sizes."""

    value: float
    low: float
    high: float
    se: float
    df: float
    seed_std: float
    n_seeds: int
    n_folds: int
    n_test: int


@dataclass(frozen=True)
class Comparison:
    """``A - B`` with its paired interval, two-sided ``p`` and the verdict for A."""

    delta: float
    low: float
    high: float
    se: float
    df: float
    p: float
    verdict: str
    n_seeds: int
    n_folds: int
    n_test: int


# ---------------------------------------------------------------- bootstrap draws


def _weights(labels: np.ndarray, n_boot: int, rng: np.random.Generator, stratify: bool) -> np.ndarray:
    """``(1 + n_boot, n)`` resampling counts: row 0 all ones (the observed data), then draws
    that keep each class's count (``stratify``) or the total."""
    n = len(labels)
    weights = np.empty((n_boot + 1, n), dtype=np.float64)
    weights[0] = 1.0
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(n)]
    for members in groups:
        size = len(members)
        weights[1:, members] = rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot)
    return weights


def _confusion(labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray, c: int) -> np.ndarray:
    """Weighted confusion matrices ``(D, S, C, C)`` of predictions ``(S, n)`` under weights ``(D, n)``."""
    out = np.empty((weights.shape[0], predictions.shape[0], c, c))
    for s, row in enumerate(predictions):
        onehot = np.zeros((len(labels), c * c))
        onehot[np.arange(len(labels)), labels.astype(np.int64) * c + row.astype(np.int64)] = 1.0
        out[:, s] = (weights @ onehot).reshape(-1, c, c)
    return out


def _classification(confusion: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """UA, WA, weighted / macro F1 of confusion matrices ``(..., C, C)``, as in
    :func:`mer.metrics.classification_metrics` (classes absent from the truth left out)."""
    support = confusion.sum(-1)  # (..., C)
    predicted = confusion.sum(-2)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    total = support.sum(-1)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, hits / np.where(present, support, 1), 0.0)
        precision = np.where(predicted > 0, hits / np.where(predicted > 0, predicted, 1), 0.0)
        denominator = precision + recall
        f1 = np.where(
            denominator > 0, 2 * precision * recall / np.where(denominator > 0, denominator, 1), 0.0
        )
    n_present = present.sum(-1)
    values = {
        "ua": (recall * present).sum(-1) / n_present,
        "wa": hits.sum(-1) / total,
        "f1_weighted": (f1 * support).sum(-1) / total,
        "f1_macro": (f1 * present).sum(-1) / n_present,
    }
    return {m: values[m] for m in metrics}


def _weighted_binary(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> tuple:
    """Accuracy and support-weighted F1 of boolean ``truth`` ``(n,)`` vs ``pred`` ``(S, n)``."""
    cells = []
    for t in (False, True):
        for p in (False, True):
            cells.append(weights @ ((truth == t)[None, :] & (pred == p)).T.astype(np.float64))  # (D, S)
    confusion = np.stack(cells, -1).reshape(*cells[0].shape, 2, 2)
    scores = _classification(confusion, ("wa", "f1_weighted"))
    return scores["wa"], scores["f1_weighted"]


def _regression(labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray, metrics) -> dict:
    """MOSI-style regression metrics ``(D, S)`` as :func:`mer.metrics.regression_metrics`."""
    total = weights.sum(1, keepdims=True)  # (D, 1)
    out: dict[str, np.ndarray] = {}
    if "mae" in metrics:
        out["mae"] = weights @ np.abs(predictions - labels).T / total
    if "pearson" in metrics:
        x, y = labels, predictions  # (n,), (S, n)
        mx, my = (weights @ x)[:, None] / total, weights @ y.T / total  # (D, 1), (D, S)
        sxy = weights @ (x * y).T / total - mx * my
        sxx = (weights @ x**2)[:, None] / total - mx**2
        syy = weights @ (y**2).T / total - my**2
        with np.errstate(divide="ignore", invalid="ignore"):
            r = sxy / np.sqrt(sxx * syy)
        out["pearson"] = np.where((sxx > 1e-12) & (syy > 1e-12), r, 0.0)
    if "acc2_has0" in metrics:
        out["acc2_has0"] = _weighted_binary(labels >= 0, predictions >= 0, weights)[0]
    if "acc2_non0" in metrics or "f1_non0" in metrics:
        nonzero = labels != 0
        acc, f1 = _weighted_binary(labels[nonzero] > 0, predictions[:, nonzero] > 0, weights[:, nonzero])
        out["acc2_non0"], out["f1_non0"] = acc, f1
    if "acc7" in metrics:
        seven = np.round(np.clip(labels, -3, 3)) == np.round(np.clip(predictions, -3, 3))
        out["acc7"] = weights @ seven.T.astype(np.float64) / total
    if "acc5" in metrics:  # MMSA's Acc-5: both sides clipped to [-2, 2], rounded
        five = np.round(np.clip(labels, -2, 2)) == np.round(np.clip(predictions, -2, 2))
        out["acc5"] = weights @ five.T.astype(np.float64) / total
    return {m: out[m] for m in metrics}


def _fold_draws(fold: FoldRuns, weights: np.ndarray, runs: Runs, metrics: Sequence[str]) -> dict:
    """``{metric: (1 + n_boot, S)}`` of one fold."""
    if runs.task == "regression":
        return _regression(
            fold.labels.astype(np.float64), fold.predictions.astype(np.float64), weights, metrics
        )
    confusion = _confusion(fold.labels, fold.predictions, weights, runs.num_classes)
    return _classification(confusion, metrics)


def draws(
    runs: Runs, metrics: Sequence[str], n_boot: int = N_BOOT, seed: int = 0, weights: dict | None = None
) -> dict[str, np.ndarray]:
    """``{metric: (1 + n_boot, F, S)}``: row 0 the observed values, then the utterance draws."""
    rng = np.random.default_rng(seed)
    per_fold = []
    for name, fold in runs.folds.items():
        w = weights[name] if weights is not None else None
        if w is None:
            w = _weights(fold.labels, n_boot, rng, stratify=runs.task == "classification")
        per_fold.append(_fold_draws(fold, w, runs, metrics))
    return {m: np.stack([f[m] for f in per_fold], axis=1) for m in metrics}


# ---------------------------------------------------------------- summaries


def _variance(values: np.ndarray) -> tuple[float, float, float, float]:
    """``(value, V, df, seed_std)`` of ``values`` ``(1 + n_boot, F, S)`` (see the module doc)."""
    observed, boot = values[0], values[1:]  # (F, S), (B, F, S)
    value = float(observed.mean())
    n_seeds = observed.shape[1]
    v_mean = float(boot.mean(axis=(1, 2)).var(ddof=1)) if len(boot) > 1 else 0.0
    if n_seeds < 2:
        return value, v_mean, np.inf, float("nan")
    per_seed = observed.mean(0)  # (S,) fold means x_s
    v_one = float(boot.mean(1).var(axis=0, ddof=1).mean()) if len(boot) > 1 else 0.0
    interaction = max(v_one - v_mean, 0.0) * n_seeds / (n_seeds - 1)
    seed_var = max(float(per_seed.var(ddof=1)) - interaction, 0.0)
    total = v_mean + seed_var / n_seeds
    # df from the raw seed variance (S - 1 df): plugging the interaction-corrected one in makes
    # df large exactly when the seed term is under-estimated (under-coverage; see the tests)
    raw = float(per_seed.var(ddof=1)) / n_seeds
    df = np.inf if raw <= 0 or total <= 0 else total**2 / (raw**2 / (n_seeds - 1))
    return value, total, float(df), float(per_seed.std(ddof=1))


def _quantile(df: float, confidence: float) -> float:
    level = 0.5 + confidence / 2
    return float(stats.norm.ppf(level) if not np.isfinite(df) else stats.t.ppf(level, df))


def _bounds(metric: str, delta: bool = False) -> tuple[float, float]:
    lo, hi = RANGES.get(metric.split("/")[-1], (0.0, 1.0))
    return (lo - hi, hi - lo) if delta else (lo, hi)


def summarize(values: np.ndarray, runs: Runs, confidence: float = CONFIDENCE, metric: str = "ua") -> Estimate:
    """The :class:`Estimate` of draws ``(1 + n_boot, F, S)`` of one metric of ``runs``."""
    value, variance, df, seed_std = _variance(values)
    half = _quantile(df, confidence) * np.sqrt(variance)
    lo, hi = _bounds(metric)
    low, high = max(value - half, lo), min(value + half, hi)
    return Estimate(value, low, high, float(np.sqrt(variance)), df, seed_std,
                    values.shape[2], values.shape[1], runs.n_test)  # fmt: skip


def estimate(
    runs: Runs, metrics: Sequence[str], n_boot: int = N_BOOT, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, Estimate]:
    """Each metric of ``runs`` with its interval (one set of utterance draws for all metrics)."""
    return {m: summarize(v, runs, confidence, m) for m, v in draws(runs, metrics, n_boot, seed).items()}


def verdict(low: float, high: float, metric: str = "ua") -> str:
    """better / worse / within noise for A from the interval of ``A - B`` alone.

    >>> verdict(0.01, 0.05), verdict(-0.05, 0.01), verdict(-0.3, -0.1, "mae")
    ('better', 'within noise', 'better')
    """
    if low > 0:
        return "worse" if lower_is_better(metric) else "better"
    if high < 0:
        return "better" if lower_is_better(metric) else "worse"
    return "within noise"


def align(a: Runs, b: Runs) -> tuple[Runs, Runs]:
    """``a`` and ``b`` on their shared folds, seeds (by id) and test utterances (by ``utt_id``).

    Raises:
        ValueError: no fold, seed or utterance in common (naming what each side has).
    """
    folds = [f for f in a.folds if f in b.folds]
    if not folds:
        raise ValueError(f"no fold in common: {sorted(a.folds)} vs {sorted(b.folds)}")
    out_a, out_b = {}, {}
    for name in folds:
        fa, fb = a.folds[name], b.folds[name]
        seeds = [s for s in fa.seeds if s in fb.seeds]
        if not seeds:
            raise ValueError(f"fold {name}: no seed in common ({fa.seeds} vs {fb.seeds})")
        ids, ia, ib = np.intersect1d(fa.utt_ids, fb.utt_ids, assume_unique=True, return_indices=True)
        if not len(ids):
            raise ValueError(f"fold {name}: no test utterance in common")
        if a.task == "classification" and not np.array_equal(fa.labels[ia], fb.labels[ib]):
            raise ValueError(f"fold {name}: the two runs disagree on the labels of shared utterances")
        sa, sb = [fa.seeds.index(s) for s in seeds], [fb.seeds.index(s) for s in seeds]
        out_a[name] = FoldRuns(ids, fa.labels[ia], fa.predictions[sa][:, ia], tuple(seeds))
        out_b[name] = FoldRuns(ids, fb.labels[ib], fb.predictions[sb][:, ib], tuple(seeds))
    classes = max(a.num_classes, b.num_classes)
    return Runs(out_a, a.task, classes), Runs(out_b, b.task, classes)


def compare(
    a: Runs,
    b: Runs,
    metrics: Sequence[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Comparison]:
    """``A - B`` for each metric, paired by fold, seed and utterance (see the module doc)."""
    if a.task != b.task:
        raise ValueError(f"cannot compare a {a.task} model with a {b.task} model")
    a, b = align(a, b)
    rng = np.random.default_rng(seed)
    stratify = a.task == "classification"
    weights = {name: _weights(fold.labels, n_boot, rng, stratify) for name, fold in a.folds.items()}
    draws_a, draws_b = draws(a, metrics, weights=weights), draws(b, metrics, weights=weights)
    out = {}
    for metric in metrics:
        difference = draws_a[metric] - draws_b[metric]
        delta, variance, df, _ = _variance(difference)
        se = float(np.sqrt(variance))
        half = _quantile(df, confidence) * se
        if se > 0:
            statistic = abs(delta) / se
            p = float(2 * (stats.norm.sf(statistic) if not np.isfinite(df) else stats.t.sf(statistic, df)))
        else:
            p = 1.0 if delta == 0 else 0.0
        lo, hi = _bounds(metric, delta=True)
        low, high = max(delta - half, lo), min(delta + half, hi)
        out[metric] = Comparison(delta, low, high, se, df, p, verdict(low, high, metric),
                                 difference.shape[2], difference.shape[1], a.n_test)  # fmt: skip
    return out


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of one table's p-values (family-wise error).

    >>> holm([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if not p.size:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return np.round(out, 12)
