"""Classification metrics for emotion recognition, in plain numpy.

Emotion corpora are imbalanced, so two accuracies are reported side by side:

* ``ua`` (unweighted accuracy): mean per-class recall over the classes present in ``y_true``;
  every emotion counts equally, however rare.
* ``wa`` (weighted accuracy): plain accuracy; every utterance counts equally.

All dicts returned here are JSON-ready: python ``float`` rounded to 4 decimals and ``int``.

>>> m = classification_metrics(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), ["anger", "sad"])
>>> m["wa"], m["ua"]
(0.75, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DECIMALS = 4


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def _as_class_ids(values: np.ndarray | Sequence[int], name: str, num_classes: int) -> np.ndarray:
    """Return ``values`` as a 1-D int64 array of ids in ``[0, num_classes)`` or raise ValueError."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids, got shape {array.shape}; flatten it first")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"{name} must hold integer class ids, got dtype {array.dtype} (e.g. {array[0]!r})"
            )
        with np.errstate(invalid="ignore"):
            fractional = ~(np.mod(array, 1) == 0)  # NaN and inf count as fractional
        if fractional.any():
            raise ValueError(
                f"{name} must hold integer class ids, got {float(array[fractional][0])}; "
                "take argmax of the logits first"
            )
    array = array.astype(np.int64)
    out_of_range = (array < 0) | (array >= num_classes)
    if out_of_range.any():
        bad = int(array[out_of_range][0])
        raise ValueError(
            f"{name} holds class id {bad}, outside [0, {num_classes}); "
            f"pass one label per class (num_classes={num_classes})"
        )
    return array


def _check_pair(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    true_ids = _as_class_ids(y_true, "y_true", num_classes)
    pred_ids = _as_class_ids(y_pred, "y_pred", num_classes)
    if true_ids.shape[0] != pred_ids.shape[0]:
        raise ValueError(f"y_true and y_pred differ in length: {true_ids.shape[0]} != {pred_ids.shape[0]}")
    if true_ids.shape[0] == 0:
        raise ValueError("y_true is empty: metrics need at least one example")
    return true_ids, pred_ids


def confusion_matrix(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], num_classes: int
) -> np.ndarray:
    """Count (true, predicted) pairs.

    Args:
        y_true (`int` array of shape `(n,)`): reference class ids in ``[0, num_classes)``.
        y_pred (`int` array of shape `(n,)`): predicted class ids in ``[0, num_classes)``.
        num_classes (int): number of classes ``C``.

    Returns:
        `int64` array of shape `(C, C)`: rows are true classes, columns predicted classes.

    >>> confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])
    """
    true_ids, pred_ids = _check_pair(y_true, y_pred, num_classes)
    flat = np.bincount(true_ids * num_classes + pred_ids, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)  # (C, C)


def classification_metrics(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], labels: Sequence[str]
) -> dict:
    """UA, WA, weighted and macro F1, per-class recall and the confusion matrix.

    Macro F1, UA and ``recall`` cover only the classes present in ``y_true`` (a test split may
    lack an emotion); a class that is never predicted has precision 0, and F1 is 0 whenever
    precision + recall is 0, so no NaN reaches the metrics file.

    Args:
        y_true (`int` array of shape `(n,)`): reference class ids.
        y_pred (`int` array of shape `(n,)`): predicted class ids.
        labels (sequence of str): class names; ``labels[i]`` names class id ``i``, and
            ``C = len(labels)``.

    Returns:
        dict with ``ua``, ``wa``, ``f1_weighted``, ``f1_macro`` (float), ``recall``
        (``{label: float}``), ``n`` (int) and ``confusion`` (``C`` lists of ``C`` ints).

    >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["anger", "sadness"])
    >>> m["ua"], m["wa"], m["f1_macro"], m["recall"]
    (0.75, 0.75, 0.7333, {'anger': 0.5, 'sadness': 1.0})
    >>> m["confusion"], m["n"]
    ([[1, 1], [0, 2]], 4)
    """
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: pass one name per class, e.g. params.EMOTIONS")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    num_classes = len(labels)
    confusion = confusion_matrix(y_true, y_pred, num_classes)  # (C, C)
    support = confusion.sum(axis=1)  # (C,) true count per class
    predicted = confusion.sum(axis=0)  # (C,) predicted count per class
    hits = np.diag(confusion)  # (C,)
    n = int(support.sum())

    present = support > 0
    recall = np.divide(hits, support, out=np.zeros(num_classes), where=present)
    precision = np.divide(hits, predicted, out=np.zeros(num_classes), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes), where=denominator > 0)

    return {
        "ua": _round(recall[present].mean()),
        "wa": _round(hits.sum() / n),
        "f1_weighted": _round((f1 * support).sum() / n),
        "f1_macro": _round(f1[present].mean()),
        "recall": {label: _round(recall[i]) for i, label in enumerate(labels) if present[i]},
        "n": n,
        "confusion": confusion.tolist(),
    }


def summarize_seeds(values: Sequence[float]) -> dict:
    """Mean and population std (``ddof=0``) of one metric over seeds.

    >>> summarize_seeds([0.5, 0.7])
    {'mean': 0.6, 'std': 0.1, 'n': 2}
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence of floats, got {values!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"values must be finite, got {values!r}")
    return {"mean": _round(array.mean()), "std": _round(array.std(ddof=0)), "n": int(array.size)}


def _seven_class(scores: np.ndarray) -> np.ndarray:
    return np.round(np.clip(scores, -3.0, 3.0))


def _five_class(scores: np.ndarray) -> np.ndarray:
    """MMSA's Acc-5 classes: scores clipped to [-2, 2], then rounded (``np.round``: half to even)."""
    return np.round(np.clip(scores, -2.0, 2.0))


def regression_metrics(y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float]) -> dict:
    """Sentiment-regression metrics as CMU-MOSI / MOSEI papers report them.

    - ``mae``, ``pearson`` (Pearson r; 0 when either side is constant).
    - ``acc2_has0`` / ``f1_has0``: negative (< 0) vs non-negative (>= 0), all utterances.
    - ``acc2_non0`` / ``f1_non0``: negative vs positive, utterances with a true score of 0 excluded.
    - ``acc7``: scores clipped to [-3, 3] and rounded to the 7 integer classes.
    - ``acc5``: as MMSA reports it (``MetricsTop``, MOSI / MOSEI regression): both sides clipped
      to [-2, 2] and rounded to the 5 integer classes.
    F1 is weighted by class support, as in the MMSA toolkit. Rows with a NaN reference are dropped.

    >>> m = regression_metrics([-2.0, -0.4, 0.0, 1.2, 2.6], [-1.6, 0.3, 0.2, 1.0, 2.0])
    >>> m["mae"], m["acc2_has0"], m["acc2_non0"], m["acc7"], m["acc5"]
    (0.42, 0.8, 0.75, 0.8, 1.0)
    """
    true, pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {true.shape} and {pred.shape}")
    known = ~np.isnan(true)
    true, pred = true[known], pred[known]
    if not true.size:
        raise ValueError("no utterance has a reference sentiment score")
    if not np.all(np.isfinite(pred)):
        raise ValueError("y_pred holds NaN or inf")

    def _binary(reference: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
        metrics = classification_metrics(reference.astype(int), predicted.astype(int), ["neg", "pos"])
        return metrics["wa"], metrics["f1_weighted"]

    acc2_has0, f1_has0 = _binary(true >= 0, pred >= 0)
    nonzero = true != 0
    acc2_non0, f1_non0 = _binary(true[nonzero] > 0, pred[nonzero] > 0) if nonzero.any() else (0.0, 0.0)
    pearson = 0.0
    if true.std() > 0 and pred.std() > 0:
        pearson = float(np.corrcoef(true, pred)[0, 1])
    return {
        "mae": _round(np.abs(true - pred).mean()),
        "pearson": _round(pearson),
        "acc2_has0": _round(acc2_has0),
        "f1_has0": _round(f1_has0),
        "acc2_non0": _round(acc2_non0),
        "f1_non0": _round(f1_non0),
        "acc7": _round((_seven_class(true) == _seven_class(pred)).mean()),
        "acc5": _round((_five_class(true) == _five_class(pred)).mean()),
        "n": int(true.size),
    }
