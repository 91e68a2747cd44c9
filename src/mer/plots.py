"""PNG figures for the pipeline's reports, rendered headless with matplotlib's Agg backend.

Every function creates the parent directory, saves one PNG, closes its figure (so long
``dvc repro`` runs do not accumulate open figures) and returns the path written.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     out = plot_bars({"concat": 0.61, "beta": 0.66}, Path(tmp) / "ua.png", "UA", "UA")
...     out.name, out.stat().st_size > 0
('ua.png', True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: stages run under dvc/CI with no display
import matplotlib.pyplot as plt  # after matplotlib.use, so pyplot never picks a GUI backend
from matplotlib.figure import Figure

DPI = 120


def _save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as PNG, creating parent dirs, and close it."""
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.tight_layout()
        figure.savefig(out_path, dpi=DPI, format="png")
    finally:
        plt.close(figure)
    return out_path


def plot_confusion(confusion: np.ndarray | list, labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Confusion heatmap: cells show counts, shading is row-normalised (per-class recall).

    Args:
        confusion (`int` array-like of shape `(C, C)`): rows true, columns predicted, as in
            :func:`mer.metrics.confusion_matrix` or the ``confusion`` entry of the metrics.
        labels (sequence of str): ``C`` class names for both axes.
        path (str | Path): PNG to write.
        title (str): figure title.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = plot_confusion([[3, 1], [0, 2]], ["anger", "sad"], Path(tmp) / "cm.png", "dev")
    ...     out.suffix
    '.png'
    """
    counts = np.asarray(confusion)
    if counts.size == 0:
        raise ValueError("confusion is empty: pass a (C, C) matrix of counts")
    labels = list(labels)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be square (C, C), got shape {counts.shape}")
    if len(labels) != counts.shape[0]:
        raise ValueError(
            f"labels has {len(labels)} names but confusion is {counts.shape[0]}x{counts.shape[1]}; "
            "pass one label per class"
        )
    row_totals = counts.sum(axis=1, keepdims=True)  # (C, 1)
    # rows with no support stay blank instead of dividing by zero
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)  # (C, C)

    size = max(4.0, 0.9 * len(labels) + 2.0)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="row share (recall)")
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(counts.shape[0]):
        for col in range(counts.shape[1]):
            colour = "white" if shares[row, col] > 0.5 else "black"  # legible on dark cells
            axes.text(col, row, f"{counts[row, col]:g}", ha="center", va="center", color=colour)
    return _save(figure, path)


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str) -> Path:
    """Training curves: one subplot per metric, one line per run, x = epoch (1-based).

    Args:
        curves (``{run_name: {metric_name: per-epoch values}}``): runs may lack a metric or have
            different numbers of epochs.
        path (str | Path): PNG to write.
        title (str): figure title.

    >>> import tempfile
    >>> curves = {"seed0": {"loss": [1.0, 0.6], "ua": [0.4, 0.5]}, "seed1": {"loss": [0.9, 0.7]}}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plot_curves(curves, Path(tmp) / "c.png", "train").name
    'c.png'
    """
    if not curves:
        raise ValueError("curves is empty: pass {run_name: {metric_name: per-epoch values}}")
    metric_names: list[str] = []
    for run_name, metrics in curves.items():
        if not metrics:
            raise ValueError(f"curves[{run_name!r}] is empty: pass at least one metric per run")
        for metric_name in metrics:
            if metric_name not in metric_names:
                metric_names.append(metric_name)

    figure, axes_row = plt.subplots(
        1, len(metric_names), figsize=(4.5 * len(metric_names), 3.6), squeeze=False
    )
    for axes, metric_name in zip(axes_row[0], metric_names, strict=True):
        for run_name, metrics in curves.items():
            if metric_name not in metrics:
                continue
            values = np.asarray(metrics[metric_name], dtype=np.float64)
            epochs = np.arange(1, values.size + 1)
            axes.plot(epochs, values, marker="o" if values.size < 20 else None, label=run_name)
        axes.set_title(metric_name)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    return _save(figure, path)


def plot_fewshot(rows: Sequence[Mapping], path: str | Path, title: str, metric: str = "ua") -> Path:
    """Few-shot adaptation: ``metric`` against the target-data fraction (%), one line per setting.

    Args:
        rows (sequence of dict): e.g. ``{"fraction": 10, "setting": "no_adapter", "ua": 0.61,
            "ua_std": 0.02}``; ``<metric>_std``, when present, draws error bars.
        path (str | Path): PNG to write.
        title (str): figure title.
        metric (str, "ua"): key of the value to plot.

    >>> import tempfile
    >>> rows = [{"fraction": 10, "setting": "adapter", "ua": 0.6, "ua_std": 0.02},
    ...         {"fraction": 50, "setting": "adapter", "ua": 0.7, "ua_std": 0.01}]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plot_fewshot(rows, Path(tmp) / "f.png", "few-shot").name
    'f.png'
    """
    if not rows:
        raise ValueError("rows is empty: pass dicts with 'fraction', 'setting' and the metric")
    std_key = f"{metric}_std"
    by_setting: dict[str, list[tuple[float, float, float | None]]] = {}
    for index, row in enumerate(rows):
        missing = [key for key in ("fraction", "setting", metric) if key not in row]
        if missing:
            raise ValueError(
                f"rows[{index}] lacks {missing}: {dict(row)!r}; "
                f"each row needs 'fraction', 'setting' and {metric!r}"
            )
        std = row.get(std_key)
        by_setting.setdefault(str(row["setting"]), []).append(
            (float(row["fraction"]), float(row[metric]), None if std is None else float(std))
        )

    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for setting, points in by_setting.items():
        points.sort(key=lambda point: point[0])
        fractions = [point[0] for point in points]
        values = [point[1] for point in points]
        if any(point[2] is not None for point in points):
            errors = [0.0 if point[2] is None else point[2] for point in points]
            axes.errorbar(fractions, values, yerr=errors, marker="o", capsize=3, label=setting)
        else:
            axes.plot(fractions, values, marker="o", label=setting)
    axes.set_xlabel("target data used for adaptation (%)")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_bars(
    values: Mapping[str, float],
    path: str | Path,
    title: str,
    ylabel: str,
    errors: Mapping[str, float] | None = None,
) -> Path:
    """One bar per entry, value printed on top, e.g. UA per model.

    Args:
        values (``{name: value}``): bars in insertion order.
        path (str | Path): PNG to write.
        title (str): figure title.
        ylabel (str): y-axis label.
        errors (``{name: std}``, optional): error bars (e.g. std over seeds).
    """
    if not values:
        raise ValueError("values is empty: pass {name: value}, e.g. {'concat': 0.61}")
    names = list(values)
    heights = [float(values[name]) for name in names]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2.0), 3.8))
    yerr = [float(errors.get(name, 0.0)) for name in names] if errors else None
    bars = axes.bar(names, heights, color="tab:blue", yerr=yerr, capsize=3 if yerr else 0)
    axes.bar_label(bars, fmt="%.3f", fontsize="small")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.tick_params(axis="x", labelrotation=30)
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_grouped_bars(
    groups: Mapping[str, Mapping[str, float]], path: str | Path, title: str, ylabel: str
) -> Path:
    """Bars grouped on the x axis, one colour per series, e.g. mean gate per emotion and modality.

    Args:
        groups (``{group: {series: value}}``): x-axis groups in insertion order; a series missing
            from a group leaves a gap.

    >>> import tempfile
    >>> groups = {"anger": {"text": 0.9, "audio": 1.2}, "sadness": {"text": 1.1, "audio": 0.8}}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plot_grouped_bars(groups, Path(tmp) / "g.png", "gates", "weight").name
    'g.png'
    """
    if not groups:
        raise ValueError("groups is empty: pass {group: {series: value}}")
    names = list(groups)
    series = list(dict.fromkeys(s for values in groups.values() for s in values))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2.0), 3.8))
    positions = np.arange(len(names))
    for i, name in enumerate(series):
        heights = [float(groups[g].get(name, np.nan)) for g in names]
        axes.bar(positions + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
    axes.set_xticks(positions, names)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.tick_params(axis="x", labelrotation=20)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)
