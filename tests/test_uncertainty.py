"""``mer.uncertainty``: the interval covers the truth at its nominal rate, a real effect is found,
seed noise is not called a gain, and the numbers match ``mer.metrics`` exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mer.metrics import classification_metrics, regression_metrics
from mer.uncertainty import CLASSIFICATION_METRICS, REGRESSION_METRICS, Runs, compare, estimate, holm

CLASSES = 4


def simulate(rng, recall, n_per_class, n_seeds, seed_sd, rho=0.8, shift=0.0):
    """Class labels and seed predictions with known expected per-class recall.

    Utterance ``i`` of class ``c`` is right for seed ``s`` when
    ``rho * z_i + sqrt(1 - rho^2) * e_is < Phi^-1(recall_c + shift + d_s)``: utterance difficulty
    ``z`` is shared by the seeds (their errors correlate, as real models' do), ``d_s ~ N(0,
    seed_sd)`` is the training seed's effect, so the expected UA over test sets and seeds is
    ``mean(recall) + shift``. Wrong answers go to a random other class.
    """
    labels = np.repeat(np.arange(CLASSES), n_per_class)
    n = len(labels)
    z = rng.normal(size=n)
    d = rng.normal(0, seed_sd, size=(n_seeds, 1))
    threshold = stats.norm.ppf(np.clip(np.asarray(recall)[labels] + shift + d, 1e-6, 1 - 1e-6))
    correct = rho * z + np.sqrt(1 - rho**2) * rng.normal(size=(n_seeds, n)) < threshold
    wrong = (labels + rng.integers(1, CLASSES, size=(n_seeds, n))) % CLASSES
    return labels, np.where(correct, labels, wrong), z


def runs_of(labels, predictions, seeds=None):
    ids = np.array([f"u{i:05d}" for i in range(len(labels))])
    return Runs.from_arrays({"main": (ids, labels, predictions)}, num_classes=CLASSES, seeds=seeds)


def test_interval_covers_the_true_ua_at_its_nominal_rate():
    """2000 seeded simulations (3 seeds, 400 test utterances, seed sd 2 UA points): the 95 %
    interval of the mean-over-seeds UA covers the known expected UA in 93-97 % of them."""
    recall = np.array([0.55, 0.65, 0.7, 0.8])
    truth = recall.mean()
    rng = np.random.default_rng(2026)
    hits = []
    for i in range(2000):
        labels, predictions, _ = simulate(rng, recall, 100, 3, seed_sd=0.02)
        est = estimate(runs_of(labels, predictions), ("ua",), n_boot=300, seed=i)["ua"]
        hits.append(est.low <= truth <= est.high)
    coverage = float(np.mean(hits))
    assert 0.93 <= coverage <= 0.97, coverage


def test_utterance_only_noise_is_covered_too():
    """No seed effect at all (seeds differ only utterance by utterance): covered at least at the
    nominal rate (the method is conservative there, not anti-conservative)."""
    recall = np.array([0.5, 0.6, 0.7, 0.8])
    rng = np.random.default_rng(7)
    hits = []
    for i in range(600):
        labels, predictions, _ = simulate(rng, recall, 60, 3, seed_sd=0.0, rho=0.5)
        est = estimate(runs_of(labels, predictions), ("ua",), n_boot=300, seed=i)["ua"]
        hits.append(est.low <= recall.mean() <= est.high)
    assert 0.93 <= float(np.mean(hits)) <= 0.995


def planted_pair(rng, gain, n_seeds, n_per_class=125, seed_sd=0.01):
    """Two models on the same 4 x ``n_per_class`` test utterances (shared difficulty): the first
    has ``gain`` more expected recall in every class."""
    recall = np.array([0.5, 0.55, 0.6, 0.65])
    labels = np.repeat(np.arange(CLASSES), n_per_class)
    z = rng.normal(size=len(labels))

    def model(shift):
        d = rng.normal(0, seed_sd, size=(n_seeds, 1))
        threshold = stats.norm.ppf(recall[labels] + shift + d)
        correct = 0.8 * z + 0.6 * rng.normal(size=(n_seeds, len(labels))) < threshold
        return np.where(correct, labels, (labels + 1) % CLASSES)

    seeds = range(n_seeds)
    return runs_of(labels, model(gain), seeds), runs_of(labels, model(0.0), seeds)


def test_a_planted_ten_point_gain_on_500_utterances_is_called_better():
    """+10 UA on 500 test utterances: *better* with 5 seeds in each of 50 simulated pairs, and in
    >= 80 % of 200 pairs with 3 seeds (measured 85-93 %; t with 2 df: three seeds pin the seed
    noise down poorly)."""
    rng = np.random.default_rng(1)
    for seeds, pairs, rate in ((5, 50, 1.0), (3, 200, 0.80)):
        verdicts = []
        for i in range(pairs):
            better, base = planted_pair(rng, 0.10, seeds)
            verdicts.append(compare(better, base, ("ua",), n_boot=300, seed=i)["ua"].verdict)
        assert verdicts.count("better") / pairs >= rate, (seeds, verdicts.count("better"))
        assert "worse" not in verdicts
    result = compare(*planted_pair(rng, 0.10, 5), ("ua",), n_boot=500)["ua"]
    assert 0.05 < result.delta < 0.15 and result.low > 0 and result.p < 0.05
    reverse = compare(*reversed(planted_pair(rng, 0.10, 5)), ("ua",), n_boot=500)["ua"]
    assert reverse.verdict == "worse" and reverse.high < 0


def test_models_that_differ_only_by_training_seed_are_within_noise():
    """200 pairs of runs of one model (3 seeds each, other seeds): >= 90 % within noise."""
    recall = np.array([0.55, 0.65, 0.7, 0.8])
    rng = np.random.default_rng(3)
    verdicts = []
    for i in range(200):
        labels = np.repeat(np.arange(CLASSES), 100)
        z = rng.normal(size=len(labels))

        def model(z=z, labels=labels):
            d = rng.normal(0, 0.02, size=(3, 1))
            threshold = stats.norm.ppf(recall[labels] + d)
            correct = 0.8 * z + 0.6 * rng.normal(size=(3, len(labels))) < threshold
            return np.where(correct, labels, (labels + 1) % CLASSES)

        result = compare(runs_of(labels, model()), runs_of(labels, model()), ("ua",), n_boot=300, seed=i)
        verdicts.append(result["ua"].verdict)
    assert verdicts.count("within noise") / len(verdicts) >= 0.90, verdicts.count("within noise")


def test_observed_values_equal_mer_evaluation_metrics():
    rng = np.random.default_rng(0)
    labels, predictions, _ = simulate(rng, [0.4, 0.6, 0.7, 0.9], 30, 2, seed_sd=0.05)
    est = estimate(runs_of(labels, predictions), CLASSIFICATION_METRICS, n_boot=50)
    for metric in CLASSIFICATION_METRICS:
        expected = np.mean([classification_metrics(labels, p, list("abcd"))[metric] for p in predictions])
        assert est[metric].value == pytest.approx(expected, abs=1e-4), metric
        assert est[metric].low < est[metric].value < est[metric].high
    truth = rng.normal(size=80).round(1) * 1.5
    predictions = truth + rng.normal(0, 0.7, size=(3, 80))
    runs = Runs.from_arrays({"1": (np.arange(80).astype(str), truth, predictions)}, task="regression")
    est = estimate(runs, REGRESSION_METRICS, n_boot=50)
    for metric in REGRESSION_METRICS:
        expected = np.mean([regression_metrics(truth, p)[metric] for p in predictions])
        assert est[metric].value == pytest.approx(expected, abs=1e-4), metric


def test_folds_average_and_seed_std_uses_ddof_1():
    labels = np.repeat(np.arange(CLASSES), 10)
    perfect, half = labels.copy(), np.where(np.arange(40) % 2 == 0, labels, (labels + 1) % 4)
    ids = np.arange(40).astype(str)
    runs = Runs.from_arrays(
        {"1": (ids, labels, np.stack([perfect, half])), "2": (ids, labels, np.stack([perfect, perfect]))},
        num_classes=CLASSES,
    )
    est = estimate(runs, ("wa",), n_boot=100)["wa"]
    assert est.value == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    # per-seed fold means: 1.0 and 0.75 -> sample std (ddof=1) 0.1768, not 0.125
    assert est.seed_std == pytest.approx(np.std([1.0, 0.75], ddof=1))
    assert (est.n_seeds, est.n_folds, est.n_test) == (2, 2, 80)


def test_compare_pairs_by_utterance_and_seed_and_refuses_disjoint_runs():
    labels = np.repeat(np.arange(CLASSES), 10)
    ids = np.array([f"u{i}" for i in range(40)])
    a = Runs.from_arrays({"main": (ids, labels, np.stack([labels, labels]))}, CLASSES, seeds=[0, 1])
    shuffled = np.random.default_rng(0).permutation(40)
    b = Runs.from_arrays({"main": (ids[shuffled], labels[shuffled], np.stack([labels[shuffled]] * 2))},
                         CLASSES, seeds=[1, 0])  # fmt: skip
    same = compare(a, b, ("ua", "wa"), n_boot=50)
    assert same["ua"].delta == 0 and same["ua"].verdict == "within noise" and same["ua"].p == 1.0
    other = Runs.from_arrays({"main": (ids, labels, np.stack([labels]))}, CLASSES, seeds=[5])
    with pytest.raises(ValueError, match="no seed in common"):
        compare(a, other, ("ua",))
    with pytest.raises(ValueError, match="no fold in common"):
        compare(a, Runs.from_arrays({"1": (ids, labels, labels[None])}, CLASSES), ("ua",))


def test_from_frames_reads_prediction_files_and_checks_seed_alignment():
    frame = pd.DataFrame({"utt_id": ["b", "a", "c"], "label_id": [1, 0, 1], "pred_id": [1, 0, 0]})
    runs = Runs.from_frames({"main": {0: frame, 1: frame.iloc[::-1]}}, num_classes=2)
    assert runs.folds["main"].utt_ids.tolist() == ["a", "b", "c"] and runs.n_seeds == 2
    with pytest.raises(ValueError, match="seed 1 predicts other utterances"):
        Runs.from_frames({"main": {0: frame, 1: frame.iloc[:2]}})


def test_holm_is_monotone_and_bounded():
    adjusted = holm([0.001, 0.2, 0.01, 0.9])
    assert adjusted.tolist() == [0.004, 0.4, 0.03, 0.9]
    assert holm([]).size == 0
