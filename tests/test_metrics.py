"""Metrics cross-checked against values computed by hand on tiny cases."""

import json

import numpy as np
import pytest

from mer.metrics import classification_metrics, confusion_matrix, summarize_seeds

LABELS = ["anger", "happiness", "neutral"]


def test_confusion_matrix_counts_rows_true_cols_predicted():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    confusion = confusion_matrix(y_true, y_pred, 3)
    assert confusion.dtype == np.int64
    assert confusion.shape == (3, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert confusion.sum() == y_true.size


def test_imbalanced_case_ua_differs_from_wa():
    # 6 anger, 2 happiness, 2 neutral; the model says "anger" to everything but one neutral.
    y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 0, 0, 0, 0, 0, 2, 0])
    metrics = classification_metrics(y_true, y_pred, LABELS)
    # recall: anger 6/6, happiness 0/2 (never predicted), neutral 1/2
    assert metrics["recall"] == {"anger": 1.0, "happiness": 0.0, "neutral": 0.5}
    assert metrics["ua"] == round((1.0 + 0.0 + 0.5) / 3, 4) == 0.5
    assert metrics["wa"] == 0.7  # 7 of 10
    # precision: anger 6/9, happiness 0 (never predicted -> 0, not NaN), neutral 1/1
    f1_anger = 2 * (6 / 9) * 1.0 / (6 / 9 + 1.0)  # 0.8
    f1_neutral = 2 * 1.0 * 0.5 / 1.5  # 0.6667
    assert metrics["f1_macro"] == round((f1_anger + 0.0 + f1_neutral) / 3, 4) == 0.4889
    assert metrics["f1_weighted"] == round((6 * f1_anger + 2 * 0.0 + 2 * f1_neutral) / 10, 4)
    assert metrics["f1_weighted"] == 0.6133
    assert metrics["n"] == 10
    assert metrics["confusion"] == [[6, 0, 0], [2, 0, 0], [1, 0, 1]]
    assert metrics["ua"] != metrics["wa"]


def test_perfect_predictions():
    y_true = np.array([2, 0, 1, 1, 0])
    metrics = classification_metrics(y_true, y_true.copy(), LABELS)
    assert metrics["ua"] == metrics["wa"] == metrics["f1_macro"] == metrics["f1_weighted"] == 1.0
    assert metrics["recall"] == {"anger": 1.0, "happiness": 1.0, "neutral": 1.0}
    assert metrics["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 1]]


def test_class_absent_from_y_true_is_left_out_of_ua_and_macro_f1():
    # "neutral" has no support but is predicted once; it must not drag UA or macro F1 to NaN/0.
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])
    metrics = classification_metrics(y_true, y_pred, LABELS)
    assert set(metrics["recall"]) == {"anger", "happiness"}
    assert metrics["ua"] == 0.75  # (1/2 + 2/2) / 2
    assert metrics["wa"] == 0.75
    # f1 anger: p=1, r=0.5 -> 0.6667; happiness: p=1, r=1 -> 1
    assert metrics["f1_macro"] == round((2 / 3 + 1.0) / 2, 4) == 0.8333
    assert metrics["f1_weighted"] == 0.8333


def test_class_with_no_support_and_no_predictions_gives_no_nan():
    metrics = classification_metrics([0, 1], [0, 1], LABELS)
    values = [metrics["ua"], metrics["wa"], metrics["f1_macro"], metrics["f1_weighted"]]
    assert not any(np.isnan(values))
    assert metrics["confusion"][2] == [0, 0, 0]


def test_metrics_are_json_ready_python_types():
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 2, 2]), LABELS)
    assert json.loads(json.dumps(metrics)) == metrics
    assert type(metrics["ua"]) is float and type(metrics["n"]) is int
    assert all(type(cell) is int for row in metrics["confusion"] for cell in row)
    assert all(type(value) is float for value in metrics["recall"].values())


def test_accepts_lists_and_integral_floats():
    from_lists = classification_metrics([0, 1, 1], [0, 1, 0], LABELS)
    from_floats = classification_metrics(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]), LABELS)
    assert from_lists == from_floats


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1], [0], "differ in length: 2 != 1"),
        ([], [], "empty"),
        ([0, 3], [0, 1], "class id 3"),
        ([0, 1], [0, -1], "class id -1"),
        ([0, 0.5], [0, 1], "0.5"),
        ([[0, 1]], [[0, 1]], "1-D"),
        (["a", "b"], [0, 1], "integer class ids"),
    ],
)
def test_invalid_inputs_raise_with_the_offending_value(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, LABELS)


def test_out_of_range_names_the_argument():
    with pytest.raises(ValueError, match=r"y_pred holds class id 5, outside \[0, 3\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)


def test_empty_or_duplicate_labels_raise():
    with pytest.raises(ValueError, match="labels is empty"):
        classification_metrics([0], [0], [])
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0], [0], ["anger", "anger"])


def test_summarize_seeds_population_std():
    summary = summarize_seeds([0.6, 0.7, 0.8])
    # population std: sqrt(((-.1)^2 + 0 + .1^2) / 3) = 0.08165
    assert summary == {"mean": 0.7, "std": 0.0816, "n": 3}
    assert summarize_seeds([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}


@pytest.mark.parametrize("values", [[], [0.5, float("nan")]])
def test_summarize_seeds_rejects_empty_and_nan(values):
    with pytest.raises(ValueError, match="values"):
        summarize_seeds(values)


def test_acc5_clips_to_two_and_rounds_as_mmsa():
    from mer.metrics import regression_metrics

    # MMSA's MetricsTop: clip both sides to [-2, 2], round (half to even), compare
    truth = np.array([2.4, -2.6, 0.5, 1.4, -1.0])
    preds = np.array([3.0, -2.2, -0.4, 1.6, -1.0])
    expected = np.mean(np.round(np.clip(preds, -2, 2)) == np.round(np.clip(truth, -2, 2)))
    metrics = regression_metrics(truth, preds)
    assert metrics["acc5"] == pytest.approx(expected) == 0.8  # 1.4 vs 1.6 is the one miss
    assert metrics["acc7"] == 0.4  # 2.4 vs 3.0 and -2.6 vs -2.2 differ only below the [-2, 2] clip
