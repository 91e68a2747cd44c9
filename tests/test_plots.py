"""Each plot writes a PNG that reads back as an image; bad input fails with the argument's name."""

from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from mer.plots import plot_bars, plot_confusion, plot_curves, plot_fewshot


def _assert_png(path: Path) -> None:
    assert path.suffix == ".png"
    assert path.is_file() and path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert height > 0 and width > 0
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)


def test_plot_confusion_writes_png_and_creates_parent_dirs(tmp_path):
    target = tmp_path / "nested" / "dir" / "confusion.png"
    out = plot_confusion([[5, 1, 0], [2, 3, 0], [0, 0, 0]], ["anger", "happy", "neutral"], target, "dev")
    assert out == target
    _assert_png(out)


def test_plot_confusion_accepts_str_path(tmp_path):
    out = plot_confusion([[1, 0], [0, 1]], ["a", "b"], str(tmp_path / "cm.png"), "t")
    assert isinstance(out, Path)
    _assert_png(out)


def test_plot_curves_one_subplot_per_metric(tmp_path):
    curves = {
        "concat": {"loss": [1.2, 0.9, 0.7], "ua": [0.3, 0.45, 0.5]},
        "beta": {"loss": [1.1, 0.8], "ua": [0.35, 0.5], "wa": [0.4, 0.55]},
    }
    _assert_png(plot_curves(curves, tmp_path / "curves.png", "training"))


def test_plot_fewshot_with_and_without_std(tmp_path):
    rows = [
        {"fraction": 50, "setting": "adapter", "ua": 0.70, "ua_std": 0.01},
        {"fraction": 10, "setting": "adapter", "ua": 0.60, "ua_std": 0.02},
        {"fraction": 10, "setting": "no_adapter", "ua": 0.55},
        {"fraction": 50, "setting": "no_adapter", "ua": 0.62},
    ]
    _assert_png(plot_fewshot(rows, tmp_path / "fewshot.png", "few-shot"))
    wa_rows = [{"fraction": 10, "setting": "adapter", "ua": 0.6, "wa": 0.65}]
    _assert_png(plot_fewshot(wa_rows, tmp_path / "fewshot_wa.png", "few-shot", metric="wa"))


def test_plot_bars(tmp_path):
    _assert_png(plot_bars({"text": 0.52, "audio": 0.48, "beta": 0.66}, tmp_path / "ua.png", "UA", "UA"))


def test_figures_are_closed(tmp_path):
    before = len(plt.get_fignums())
    plot_bars({"a": 1.0}, tmp_path / "a.png", "t", "y")
    plot_confusion([[1]], ["a"], tmp_path / "b.png", "t")
    plot_curves({"r": {"loss": [1.0]}}, tmp_path / "c.png", "t")
    plot_fewshot([{"fraction": 1, "setting": "s", "ua": 0.1}], tmp_path / "d.png", "t")
    assert len(plt.get_fignums()) == before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda out: plot_confusion([], [], out, "t"), "confusion is empty"),
        (lambda out: plot_confusion([[1, 0]], ["a"], out, "t"), "square"),
        (lambda out: plot_confusion([[1, 0], [0, 1]], ["a"], out, "t"), "labels has 1 names"),
        (lambda out: plot_curves({}, out, "t"), "curves is empty"),
        (lambda out: plot_curves({"run": {}}, out, "t"), r"curves\['run'\] is empty"),
        (lambda out: plot_fewshot([], out, "t"), "rows is empty"),
        (
            lambda out: plot_fewshot([{"fraction": 1, "setting": "s"}], out, "t"),
            r"rows\[0\] lacks \['ua'\]",
        ),
        (lambda out: plot_bars({}, out, "t", "y"), "values is empty"),
    ],
)
def test_bad_input_raises_naming_the_argument(tmp_path, call, message):
    out = tmp_path / "never.png"
    with pytest.raises(ValueError, match=message):
        call(out)
    assert not out.exists()
