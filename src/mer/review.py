"""A PR-review summary: what a change did to metrics, params and plots, as one Markdown block.

``python -m mer.review --rev main`` compares the workspace with a git revision and prints
Markdown ready to paste as a pull-request comment:

1. a heading naming the base revision (with its short sha) and the workspace;
2. ``### Verdicts``: the noise-aware comparison (:func:`verdict_section`). The workspace's
   per-fold test predictions (``data/predictions/{source,ablation}/<model>/<fold>/seed<k>.parquet``)
   are paired by fold, seed and utterance with ``<rev>``'s, read from DVC's cache through
   ``dvc.api.DVCFileSystem``, and :mod:`mer.uncertainty` gives each headline metric of the main
   model (``fusion``; UA, WA, weighted F1, or MAE, r, Acc-2 for regression) and UA (MAE) of every
   other model on both sides: base, new, Δ, the 95 % interval of Δ (test-utterance sampling and
   seed variation) and a verdict from the interval alone (better / worse / within noise). When
   that is impossible the section says why and what to run: the workspace has no predictions
   (``dvc repro``), ``<rev>`` predates per-fold predictions, or its predictions are not in the
   local cache (``dvc pull``, or ``dvc repro`` at ``<rev>``);
3. ``dvc metrics diff <rev> --md`` (changed metrics only) or one line saying nothing changed;
4. ``dvc params diff <rev> --md``, likewise;
5. the plot data that changed: every file named in ``dvc.yaml``'s top-level ``plots:``, every
   ``.tsv`` curve of a dvclive run one of them belongs to, and every ``.csv`` under ``plots/``,
   compared byte for byte with ``git show <rev>:<path>``; each one that differs (or is new) gets
   a PNG in ``--out`` (curves: base dashed, workspace solid; confusion matrices: base left,
   workspace right), linked with a path relative to the repo root.

Plot data here is committed to git (``cache: false``); a plot file that git ignores (a
DVC-cached output) has no base in git and is skipped with a warning.

>>> _is_empty_table("| Path | Metric | HEAD | workspace | Change |\\n|---|---|---|---|---|\\n")
True
>>> _png_name("dvclive/fusion/plots/metrics/dev/ua.tsv")
'dvclive-fusion-plots-metrics-dev-ua.png'
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator

from mer import metric_keys, predictions
from mer.logs import setup_logging
from mer.predictions import ABLATION_ROOT, SOURCE_ROOT, Files, Frames
from mer.uncertainty import N_BOOT, Comparison, Runs, align, compare, draws

if TYPE_CHECKING:
    from dvc.api import DVCFileSystem

logger = logging.getLogger(__name__)

DATA_SUFFIXES = (".csv", ".tsv", ".json")
# dvclive writes these next to the metric in every .tsv; they are not curves to compare
NON_METRIC_COLUMNS = ("step", "timestamp")
LIVE_PLOTS = "/plots/metrics/"  # dvclive's per-metric .tsv folder inside a run directory


class ReviewError(RuntimeError):
    """A review cannot be made (unknown revision, not a git repository, dvc missing)."""


@dataclass
class PlotSpec:
    """How one plot data file is drawn, from its ``dvc.yaml`` plot definition(s).

    Attributes:
        path (str): file path relative to the repo root, POSIX separators.
        x (str | None): x column (``None``: ``step`` if present, else the first column).
        y (list[str]): y columns (empty: every numeric column except x / step / timestamp).
        confusion (bool): draw as confusion matrices (``template: confusion*``), x = actual,
            y = predicted.
    """

    path: str
    x: str | None = None
    y: list[str] = field(default_factory=list)
    confusion: bool = False


# ---------------------------------------------------------------- subprocess helpers


def _dvc_executable() -> str:
    """``dvc`` next to the running interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / ("dvc.exe" if os.name == "nt" else "dvc")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dvc")
    if found is None:
        raise ReviewError(
            f"dvc not found next to {sys.executable} or on PATH; install the requirements (`make setup`)"
        )
    return found


def _run(args: list[str], repo: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` in ``repo``, capturing bytes; on failure raise naming the command and stderr."""
    try:
        result = subprocess.run(args, cwd=repo, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise ReviewError(f"{args[0]} not found: {error}") from error
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise ReviewError(f"`{' '.join(args)}` failed in {repo} (exit {result.returncode}): {stderr}")
    return result


def _git(args: list[str], repo: Path) -> str:
    git = shutil.which("git")
    if git is None:
        raise ReviewError("git not found on PATH; mer.review compares git revisions")
    return _run([git, *args], repo).stdout.decode().strip()


def _resolve_rev(rev: str, repo: Path) -> tuple[str, str]:
    """``(full sha, short sha)`` of ``rev`` in ``repo``; raise naming the rev / path if impossible."""
    if not repo.is_dir():
        raise ReviewError(f"repo {repo} is not a directory")
    try:
        _git(["rev-parse", "--git-dir"], repo)
    except ReviewError as error:
        raise ReviewError(f"{repo} is not a git repository (mer.review compares git revisions)") from error
    try:
        sha = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo)
    except ReviewError as error:
        raise ReviewError(
            f"unknown revision {rev!r} in {repo}: pass a branch, tag or commit, e.g. --rev main or --rev HEAD"
        ) from error
    return sha, _git(["rev-parse", "--short", sha], repo)


# ---------------------------------------------------------------- dvc diffs


def _is_empty_table(markdown: str) -> bool:
    """True when a ``dvc ... diff --md`` table has no rows (only its header and separator)."""
    rows = [line for line in markdown.splitlines() if line.strip().startswith("|")]
    return len(rows) <= 2


def _dvc_diff(kind: str, rev: str, repo: Path) -> tuple[str, int]:
    """``dvc {metrics,params} diff <rev> --md`` without the ``provenance.*`` rows ("" when nothing
    else changed), and how many provenance rows were left out."""
    result = _run([_dvc_executable(), kind, "diff", rev, "--md"], repo)
    lines = result.stdout.decode().strip().splitlines()
    # provenance (commit, code hash, ...) changes on every re-run: one summary line, not rows
    kept = [line for line in lines if "| provenance." not in line]
    table = "\n".join(kept)
    return ("" if _is_empty_table(table) else table), len(lines) - len(kept)


# ---------------------------------------------------------------- plot files


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(item) for item in value]


def _plot_specs(dvc_yaml: str) -> dict[str, PlotSpec | str]:
    """Plot data files of a ``dvc.yaml``'s top-level ``plots:``: ``{path: spec}``, directories
    as ``{dir/: dir/}`` (expanded by the caller, which knows the files)."""
    document = yaml.safe_load(dvc_yaml) or {}
    specs: dict[str, PlotSpec | str] = {}
    for entry in document.get("plots") or []:
        name, props = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        props = props or {}
        template = str(props.get("template", ""))
        y_field = props.get("y")
        x_field = props.get("x")
        # y either names the columns of the file in `name`, or maps files to their columns
        files = dict(y_field) if isinstance(y_field, dict) else {name: y_field}
        for path, columns in files.items():
            path = str(path)
            if path.endswith("/"):
                specs[path] = path
                continue
            if not path.endswith(DATA_SUFFIXES):
                continue  # a plot id that is a title, or an image
            x_column = x_field.get(path) if isinstance(x_field, dict) else x_field
            spec = specs.setdefault(path, PlotSpec(path))
            if isinstance(spec, PlotSpec):
                spec.x = spec.x or (str(x_column) if x_column else None)
                spec.y += [column for column in _as_list(columns) if column not in spec.y]
                spec.confusion = spec.confusion or template.startswith("confusion")
    return specs


def _tracked_files(rev: str, folder: str, repo: Path) -> list[str]:
    """Files under ``folder`` in git at ``rev`` (empty if the folder is not there)."""
    listing = _run(["git", "ls-tree", "-r", "--name-only", rev, "--", folder], repo, check=False)
    return listing.stdout.decode().split() if listing.returncode == 0 else []


def _workspace_files(folder: str, repo: Path) -> list[str]:
    root = repo / folder
    if not root.is_dir():
        return []
    return [path.relative_to(repo).as_posix() for path in sorted(root.rglob("*")) if path.is_file()]


def _review_files(rev: str, repo: Path) -> list[PlotSpec]:
    """Every plot data file to compare: dvc.yaml's top-level plots (workspace and ``rev``) and
    every csv under ``plots/``."""
    specs: dict[str, PlotSpec | str] = {}
    base_yaml = _run(["git", "show", f"{rev}:dvc.yaml"], repo, check=False)
    sources = [base_yaml.stdout.decode()] if base_yaml.returncode == 0 else []
    if (repo / "dvc.yaml").is_file():
        sources.append((repo / "dvc.yaml").read_text())
    for source in sources:
        for path, spec in _plot_specs(source).items():
            existing = specs.get(path)
            if isinstance(existing, PlotSpec) and isinstance(spec, PlotSpec):
                existing.x = existing.x or spec.x
                existing.y += [column for column in spec.y if column not in existing.y]
                existing.confusion = existing.confusion or spec.confusion
            else:
                specs.setdefault(path, spec)
    folders = [path for path, spec in specs.items() if isinstance(spec, str)]
    files = {path: spec for path, spec in specs.items() if isinstance(spec, PlotSpec)}
    # a referenced dvclive curve brings its run's other curves (train loss, beta): a change
    # often moves those while the declared dev curve stays put
    folders += sorted(
        {path[: path.index(LIVE_PLOTS) + len(LIVE_PLOTS)] for path in files if LIVE_PLOTS in path}
    )
    for folder in [*folders, "plots/"]:
        suffixes = (".csv",) if folder == "plots/" else DATA_SUFFIXES
        for path in _tracked_files(rev, folder, repo) + _workspace_files(folder, repo):
            if path.endswith(suffixes):
                files.setdefault(path, PlotSpec(path))
    return [files[path] for path in sorted(files)]


def _read_table(content: bytes, path: str) -> pd.DataFrame:
    if path.endswith(".json"):
        return pd.read_json(io.BytesIO(content))
    return pd.read_csv(io.BytesIO(content), sep="\t" if path.endswith(".tsv") else ",")


def _png_name(path: str) -> str:
    """A flat PNG file name for a plot data path."""
    return Path(path).with_suffix("").as_posix().replace("/", "-") + ".png"


# ---------------------------------------------------------------- rendering


def _render_curves(
    spec: PlotSpec, base: pd.DataFrame | None, work: pd.DataFrame, base_label: str, title: str, out: Path
) -> Path:
    """One line per y column: workspace solid, base dashed in the same colour."""
    from mer import plots  # Agg backend set there; import only when a plot changed

    frames = [frame for frame in (base, work) if frame is not None]
    columns = [c for frame in frames for c in frame.columns]
    x_column = spec.x if spec.x in columns else ("step" if "step" in columns else columns[0])
    y_columns = [c for c in spec.y if c in columns] or [
        c
        for c in dict.fromkeys(columns)
        if c != x_column
        and c not in NON_METRIC_COLUMNS
        and all(pd.api.types.is_numeric_dtype(f[c]) for f in frames if c in f)
    ]
    figure, axes = plots.plt.subplots(figsize=(6.5, 4.0))
    colours = plots.plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, column in enumerate(y_columns):
        colour = colours[index % len(colours)]
        for frame, style, label in ((base, "--", base_label), (work, "-", "workspace")):
            if frame is None or column not in frame or x_column not in frame:
                continue
            ordered = frame.sort_values(x_column)
            axes.plot(ordered[x_column], ordered[column], style, color=colour, marker="o", markersize=3,
                      label=f"{column} ({label})")  # fmt: skip
    if all(pd.api.types.is_integer_dtype(frame[x_column]) for frame in frames if x_column in frame):
        x_values = sorted({int(value) for frame in frames if x_column in frame for value in frame[x_column]})
        if len(x_values) <= 12:
            axes.set_xticks(x_values)  # the measured fractions / epochs themselves
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps, never 0.25
    axes.set_xlabel(x_column)
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return plots._save(figure, out)


def _confusion_counts(frame: pd.DataFrame, actual: str, predicted: str, labels: list[str]) -> np.ndarray:
    counts = pd.crosstab(frame[actual].astype(str), frame[predicted].astype(str))
    return counts.reindex(index=labels, columns=labels, fill_value=0).to_numpy()  # (C, C)


def _render_confusion(
    spec: PlotSpec, base: pd.DataFrame | None, work: pd.DataFrame, titles: tuple[str, str], out: Path
) -> Path:
    """Two row-normalised confusion heatmaps side by side: base (left), workspace (right)."""
    from mer import plots

    actual, predicted = spec.x or "actual", (spec.y[0] if spec.y else "predicted")
    frames = [frame for frame in (base, work) if frame is not None]
    labels = sorted({str(v) for frame in frames for column in (actual, predicted) for v in frame[column]})
    size = max(4.0, 0.9 * len(labels) + 2.0)
    figure, axes_pair = plots.plt.subplots(1, 2, figsize=(2 * size, size * 0.85))
    ticks = np.arange(len(labels))
    for axes, frame, title in zip(axes_pair, (base, work), titles, strict=True):
        axes.set_title(title, fontsize="medium")
        if frame is None:
            axes.text(0.5, 0.5, "not in base", ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            continue
        counts = _confusion_counts(frame, actual, predicted, labels)  # (C, C)
        totals = counts.sum(axis=1, keepdims=True)  # (C, 1)
        shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)  # (C, C)
        axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        axes.set_xticks(ticks, labels, rotation=45, ha="right")
        axes.set_yticks(ticks, labels)
        axes.set_xlabel(predicted)
        axes.set_ylabel(actual)
        for row in range(len(labels)):
            for col in range(len(labels)):
                colour = "white" if shares[row, col] > 0.5 else "black"  # legible on dark cells
                axes.text(col, row, f"{counts[row, col]:g}", ha="center", va="center", color=colour)
    figure.suptitle(spec.path)
    return plots._save(figure, out)


def _is_confusion(spec: PlotSpec, work: pd.DataFrame) -> bool:
    return spec.confusion or list(work.columns) == ["actual", "predicted"]


# ---------------------------------------------------------------- noise-aware verdicts


PREDICTION_ROOTS = (SOURCE_ROOT, ABLATION_ROOT)
# a model's key in the verdict table: its folder name, an ablation recipe's prefixed with "ablation/"
MODEL_PREFIXES = {SOURCE_ROOT: "", ABLATION_ROOT: "ablation/"}
MAIN_MODEL = metric_keys.MAIN_MODEL  # compared first, on every headline metric
HEADLINE_METRICS = metric_keys.HEADLINE
OTHER_METRICS = {task: (metric,) for task, metric in metric_keys.PRIMARY.items()}
METRIC_NAMES = {"ua": "UA", "wa": "WA", "f1_weighted": "weighted F1", "f1_macro": "macro F1",
                "mae": "MAE", "pearson": "Pearson r", "acc2_non0": "Acc-2 (non-0)",
                "acc2_has0": "Acc-2 (has-0)"}  # fmt: skip
IDENTICAL = "unchanged (identical predictions)"

# {model: {fold: {seed: path relative to the repo root}}}
Layout = dict[str, Files]
# {fold: {seed: predictions frame}} of one model
FoldFrames = Frames


class BaseUnavailable(Exception):
    """The base revision's predictions cannot be compared; ``str()`` is the Markdown to print."""


def _missing_content_errors() -> tuple[type[Exception], ...]:
    """What DVC raises when a revision's ``dvc.lock`` names an output whose content is not in the
    local cache: ``DataIndexDirError`` (a directory's ``.dir`` manifest is missing),
    ``FileNotFoundError`` ("No storage files available"), ``PathMissingError`` and the other
    ``DvcException``s. Imported here: dvc is slow to import."""
    from dvc.exceptions import DvcException
    from dvc_data.index import DataIndexError, StorageError

    return (FileNotFoundError, DataIndexError, StorageError, DvcException)


def _model_key(folder: str) -> str | None:
    """``fusion`` for ``data/predictions/source/fusion``, ``ablation/x`` for an ablation folder.

    >>> _model_key("data/predictions/ablation/no_gate"), _model_key("data/predictions/source")
    ('ablation/no_gate', None)
    """
    for root, prefix in MODEL_PREFIXES.items():
        if folder.startswith(root + "/"):
            return prefix + folder[len(root) + 1 :].split("/")[0]
    return None


def prediction_layout(paths: Iterable[str]) -> Layout:
    """Group per-fold test prediction files by model, fold and seed (:func:`mer.predictions.layout`).

    Keeps ``data/predictions/source/<model>/<fold>/seed<k>.parquet`` (model key ``<model>``) and
    ``data/predictions/ablation/<recipe>/<fold>/seed<k>.parquet`` (key ``ablation/<recipe>``);
    drops dev-split files (``<fold>/dev/seed<k>.parquet``), files without a fold folder (the
    layout before per-fold predictions) and everything else. The main model comes first.

    >>> layout = prediction_layout([
    ...     "data/predictions/source/concat/main/seed1.parquet",
    ...     "data/predictions/source/fusion/main/seed0.parquet",
    ...     "data/predictions/source/fusion/main/dev/seed0.parquet",
    ...     "data/predictions/source/fusion/seed0.parquet",
    ...     "data/predictions/ablation/no_gate/1/seed2.parquet",
    ...     "data/predictions/source/.gitignore",
    ... ])
    >>> {model: {fold: sorted(seeds) for fold, seeds in folds.items()} for model, folds in layout.items()}
    {'fusion': {'main': [0]}, 'ablation/no_gate': {'1': [2]}, 'concat': {'main': [1]}}
    """
    paths = [path.lstrip("/") for path in paths]
    layout: Layout = {}
    for root, prefix in MODEL_PREFIXES.items():
        layout |= {prefix + model: folds for model, folds in predictions.layout(paths, root).items()}
    return {model: layout[model] for model in sorted(layout, key=lambda model: (model != MAIN_MODEL, model))}


def _workspace_prediction_files(repo: Path) -> list[str]:
    """Prediction parquet files on disk, relative to ``repo``."""
    return [
        path.relative_to(repo).as_posix()
        for root in PREDICTION_ROOTS
        if (repo / root).is_dir()
        for path in sorted((repo / root).rglob("seed*.parquet"))
    ]


def _base_prediction_files(fs: DVCFileSystem) -> tuple[list[str], list[str]]:
    """Prediction files at the revision ``fs`` reads, and the folders its ``dvc.lock`` names whose
    listing (a directory output's ``.dir`` manifest) is not in the local cache."""
    errors = _missing_content_errors()
    files: list[str] = []
    unreadable: list[str] = []
    for root in PREDICTION_ROOTS:
        try:
            if not fs.isdir(root):
                continue
            entries = sorted(str(entry).lstrip("/") for entry in fs.ls(root, detail=False))
        except errors:
            unreadable.append(root)
            continue
        for entry in entries:
            try:
                if fs.isdir(entry):
                    files += [str(path).lstrip("/") for path in fs.find(entry, detail=False)]
            except errors:
                unreadable.append(entry)
    return files, unreadable


def _has_dvc_remote(repo: Path) -> bool:
    """True when ``dvc remote list`` names a remote (one to ``dvc pull`` from)."""
    try:
        listing = _run([_dvc_executable(), "remote", "list"], repo, check=False)
    except ReviewError:
        return False
    return listing.returncode == 0 and bool(listing.stdout.strip())


def missing_cache_message(rev: str, repo: Path, paths: Sequence[str]) -> str:
    """Why there is no verdict when ``rev``'s ``dvc.lock`` names predictions whose content is not
    in the local cache, and how to get them: ``dvc pull`` with a remote, else ``dvc repro`` at
    ``rev`` (stashing uncommitted changes first when there are any)."""
    named = ", ".join(f"`{path}`" for path in paths)
    dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], repo))
    stash, pop = ("git stash; ", "; git stash pop") if dirty else ("", "")
    if _has_dvc_remote(repo):
        how = (
            f"fetch them from the DVC remote with `{stash}git checkout {rev}; dvc pull; "
            f"git checkout -{pop}; dvc checkout`, then run the review again."
        )
    else:
        how = (
            "no DVC remote is configured (`dvc remote list` is empty), so reproduce them at that "
            f"revision with `{stash}git checkout {rev}; dvc repro` (or `dvc exp run`), then come back "
            f"with `git checkout -{pop}; dvc checkout` and run the review again."
        )
    return (
        f"No verdict: `{rev}`'s `dvc.lock` names its test predictions ({named}) but their content is "
        f"not in the local DVC cache; {how}"
    )


def predates_layout_message(rev: str) -> str:
    """Why there is no verdict when ``rev`` has no per-fold predictions of the main model."""
    return (
        f"No verdict: `{rev}` predates per-fold predictions (its `dvc.lock` names no "
        f"`{SOURCE_ROOT}/{MAIN_MODEL}/<fold>/seed<k>.parquet`), so only the metrics diff "
        "below compares it; re-run `dvc repro` at that revision to get them (if its code writes them; "
        "otherwise review against a later revision)."
    )


def workspace_missing_message() -> str:
    """Why there is no verdict when the workspace has no per-fold predictions of the main model."""
    return (
        "No verdict: the workspace has no per-fold test predictions "
        f"(`{SOURCE_ROOT}/{MAIN_MODEL}/<fold>/seed<k>.parquet`); run `dvc repro` first."
    )


def read_base_predictions(
    rev: str, repo: Path, models: Sequence[str] | None = None
) -> tuple[dict[str, FoldFrames], list[str]]:
    """The per-fold test predictions at ``rev``, read through DVC's cache.

    Args:
        rev (str): git revision.
        repo (Path): repository root.
        models (Sequence[str] | None, None): model keys to read (``None``: every one found).

    Returns:
        ``({model: {fold: {seed: frame}}}, notes)``: every readable model, and one Markdown line
        per other model whose predictions are not in the local cache.

    Raises:
        BaseUnavailable: the main model's predictions cannot be read (``rev`` predates per-fold
            predictions, or their content is not in the local cache); the message says what to run.
    """
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(str(repo), rev=rev)
    except _missing_content_errors() as error:
        raise BaseUnavailable(f"No verdict: DVC cannot read `{rev}` ({error}).") from error
    try:
        return _read_base_predictions(fs, rev, repo, models)
    finally:
        fs.close()


def _read_base_predictions(
    fs: DVCFileSystem, rev: str, repo: Path, models: Sequence[str] | None
) -> tuple[dict[str, FoldFrames], list[str]]:
    """:func:`read_base_predictions` through an open ``DVCFileSystem`` of ``rev``."""
    errors = _missing_content_errors()
    try:
        files, unreadable = _base_prediction_files(fs)
    except errors as error:
        raise BaseUnavailable(f"No verdict: DVC cannot read `{rev}` ({error}).") from error
    layout = prediction_layout(files)
    main_dir = f"{SOURCE_ROOT}/{MAIN_MODEL}"
    if MAIN_MODEL not in layout:
        if main_dir in unreadable or SOURCE_ROOT in unreadable:
            raise BaseUnavailable(missing_cache_message(rev, repo, [main_dir]))
        raise BaseUnavailable(predates_layout_message(rev))

    def read(path: str) -> bytes:
        with fs.open(path, "rb") as handle:
            return handle.read()

    wanted = [model for model in layout if models is None or model in models]
    missing = [path for path in unreadable if models is None or _model_key(path) in models]
    frames: dict[str, FoldFrames] = {}
    for model in wanted:
        try:
            frames[model] = predictions.read_frames(layout[model], read)
        except errors as error:
            if model == MAIN_MODEL:
                raise BaseUnavailable(missing_cache_message(rev, repo, [main_dir])) from error
            missing.append(model)
    notes = [f"- `{path}`: not compared, its `{rev}` predictions are not in the local DVC cache."
             for path in missing]  # fmt: skip
    return frames, notes


def _num_classes(frames: Iterable[pd.DataFrame]) -> int:
    """Classes of classification prediction frames: the larger of max label / prediction id + 1
    and the number of ``prob_<class>`` columns (0 for regression frames).

    >>> _num_classes([pd.DataFrame({"label_id": [0, 2], "pred_id": [1, 1]}), pd.DataFrame({"prob_a": [1.0]})])
    3
    """
    count = 0
    for frame in frames:
        probs = sum(1 for column in frame.columns if str(column).startswith("prob_"))
        ids = [int(frame[c].max()) + 1 for c in ("label_id", "pred_id") if c in frame and len(frame)]
        count = max(count, probs, *ids)
    return count


@dataclass(frozen=True)
class ModelVerdict:
    """The workspace (new) against the base on one model's shared folds, seeds and utterances.

    Attributes:
        model (str): model key (``fusion``, a baseline recipe, ``ablation/<recipe>``).
        base (dict[str, float]): each metric at the base (mean over folds and seeds).
        new (dict[str, float]): each metric in the workspace.
        comparisons (dict[str, Comparison]): ``new - base`` with its interval and verdict.
        identical (bool): every compared prediction is the same on both sides.
    """

    model: str
    base: dict[str, float]
    new: dict[str, float]
    comparisons: dict[str, Comparison]
    identical: bool


def compare_model(
    model: str,
    base: FoldFrames,
    new: FoldFrames,
    metrics: Mapping[str, Sequence[str]] | None = None,
    n_boot: int | None = None,
) -> ModelVerdict:
    """One model's workspace predictions against its base predictions (:func:`mer.uncertainty.compare`).

    Args:
        model (str): model key, for the table.
        base (FoldFrames): ``{fold: {seed: predictions frame}}`` at the base revision.
        new (FoldFrames): the same in the workspace.
        metrics (Mapping[str, Sequence[str]] | None, None): metrics per task (``classification``,
            ``regression``); ``None``: :data:`HEADLINE_METRICS`.
        n_boot (int | None, None): utterance bootstrap draws (``None``: ``mer.uncertainty.N_BOOT``).

    Raises:
        ValueError: nothing to pair (no shared fold, seed or utterance), the labels of shared
            utterances disagree, or one side is a classifier and the other a regressor.
    """
    metrics = HEADLINE_METRICS if metrics is None else metrics
    classes = _num_classes(frame for side in (base, new) for fold in side.values() for frame in fold.values())
    new_runs, base_runs = Runs.from_frames(new, classes), Runs.from_frames(base, classes)
    if new_runs.task != base_runs.task:
        raise ValueError(f"the base is a {base_runs.task} model, the workspace a {new_runs.task} model")
    new_runs, base_runs = align(new_runs, base_runs)
    chosen = tuple(metrics[new_runs.task])
    comparisons = compare(new_runs, base_runs, chosen, n_boot=N_BOOT if n_boot is None else n_boot)
    observed = [draws(runs, chosen, n_boot=0) for runs in (base_runs, new_runs)]  # {metric: (1, F, S)}
    base_values, new_values = ({m: float(values[m][0].mean()) for m in chosen} for values in observed)
    identical = all(
        np.array_equal(new_runs.folds[fold].predictions, base_runs.folds[fold].predictions)
        for fold in new_runs.folds
    )
    return ModelVerdict(model, base_values, new_values, comparisons, identical)


def _verdict_rows(result: ModelVerdict) -> list[str]:
    """One Markdown table row per metric of ``result``."""
    rows = []
    for metric, comparison in result.comparisons.items():
        verdict = IDENTICAL if result.identical else comparison.verdict
        rows.append(
            f"| {result.model} | {METRIC_NAMES.get(metric, metric)} | {result.base[metric]:.3f} "
            f"| {result.new[metric]:.3f} | {comparison.delta:+.3f} "
            f"| [{comparison.low:+.3f}, {comparison.high:+.3f}] | {verdict} |"
        )
    return rows


def _design(comparison: Comparison) -> str:
    """``2 folds, 3 seeds, 800 test utterances``: what a comparison paired."""
    folds = f"{comparison.n_folds} fold{'s' if comparison.n_folds != 1 else ''}"
    seeds = f"{comparison.n_seeds} seed{'s' if comparison.n_seeds != 1 else ''}"
    return f"{folds}, {seeds}, {comparison.n_test} test utterances"


def verdict_table(
    rev: str, base: dict[str, FoldFrames], new: dict[str, FoldFrames], n_boot: int | None = None
) -> str:
    """The Markdown verdict table of the workspace (``new``) against ``rev`` (``base``).

    The main model gets every headline metric; every other model present on both sides gets one
    (UA, or MAE for regression). A model that cannot be paired gets a line instead of rows, and
    so does a model found only in the workspace.
    """
    rows: list[str] = []
    notes: list[str] = []
    designs: dict[str, str] = {}
    for model in new:
        if model not in base:
            notes.append(f"- `{model}`: new in the workspace, no base to compare with.")
            continue
        metrics = HEADLINE_METRICS if model == MAIN_MODEL else OTHER_METRICS
        try:
            result = compare_model(model, base[model], new[model], metrics, n_boot)
        except ValueError as error:
            notes.append(f"- `{model}`: not compared ({error}).")
            continue
        rows += _verdict_rows(result)
        designs[model] = _design(next(iter(result.comparisons.values())))
    if not rows:
        return "\n".join(["No verdict: no model could be paired with the base.", *notes])
    main_design = designs.get(MAIN_MODEL) or next(iter(designs.values()))
    header = (
        f"Workspace (new) against `{rev}` (base) on the same test utterances, paired by utterance and "
        "seed: the 95% interval of Δ = new - base covers test-utterance sampling and seed variation, "
        "and the verdict comes from that interval alone (better or worse only when it excludes 0; "
        f"each row on its own; see `mer.uncertainty`). Compared: {main_design}"
        f"{f' ({MAIN_MODEL})' if MAIN_MODEL in designs else ''}."
    )
    notes += [f"- `{model}`: compared on {design}." for model, design in designs.items()
              if design != main_design]  # fmt: skip
    table = [
        f"| Model | Metric | Base (`{rev}`) | New (workspace) | Δ | 95% interval of Δ | Verdict |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    return "\n\n".join(part for part in (header, "\n".join(table), "\n".join(notes)) if part)


def verdict_section(rev: str, repo: str | Path = ".", n_boot: int | None = None) -> str:
    """The body of the ``### Verdicts`` section: the workspace against ``rev``, noise included.

    Reads the workspace's per-fold test predictions from disk and ``rev``'s through DVC's cache
    (``dvc.api.DVCFileSystem``), pairs them by fold, seed and utterance and gives, per headline
    metric, base, new, Δ, the 95 % interval of Δ and the verdict (:func:`verdict_table`). When
    there is nothing to compare it returns the reason instead, never a traceback: the workspace
    has no predictions (run ``dvc repro``), ``rev`` predates per-fold predictions, or ``rev``'s
    predictions are not in the local cache (``dvc pull``, or ``dvc repro`` at ``rev``).

    Args:
        rev (str): git revision to compare with.
        repo (str | Path, "."): the git + DVC repository.
        n_boot (int | None, None): utterance bootstrap draws per comparison
            (``None``: ``mer.uncertainty.N_BOOT``).
    """
    repo = Path(repo).resolve()
    work_layout = prediction_layout(_workspace_prediction_files(repo))
    messages = [] if MAIN_MODEL in work_layout else [workspace_missing_message()]
    base: dict[str, FoldFrames] = {}
    notes: list[str] = []
    try:
        base, notes = read_base_predictions(rev, repo, list(work_layout))
    except BaseUnavailable as error:
        messages.append(str(error))
    if messages:
        return "\n\n".join(messages)

    def read(path: str) -> bytes:
        return (repo / path).read_bytes()

    new = {model: predictions.read_frames(files, read) for model, files in work_layout.items()}
    table = verdict_table(rev, base, new, n_boot)
    return "\n\n".join(part for part in (table, "\n".join(notes)) if part)


# ---------------------------------------------------------------- the review


def _plots_section(rev: str, short: str, repo: Path, out_dir: Path) -> list[str]:
    """Markdown lines for the plot data that differs from ``rev``; writes one PNG per file."""
    lines: list[str] = []
    for spec in _review_files(rev, repo):
        if _run(["git", "check-ignore", "-q", spec.path], repo, check=False).returncode == 0:
            logger.warning("%s is ignored by git (a DVC-cached output): no base to compare", spec.path)
            continue
        shown = _run(["git", "show", f"{rev}:{spec.path}"], repo, check=False)
        base_bytes = shown.stdout if shown.returncode == 0 else None
        work_path = repo / spec.path
        work_bytes = work_path.read_bytes() if work_path.is_file() else None
        if base_bytes == work_bytes:
            continue
        if work_bytes is None:
            lines.append(f"- `{spec.path}`: removed in the workspace")
            continue
        status = "new" if base_bytes is None else "changed"
        try:
            base = None if base_bytes is None else _read_table(base_bytes, spec.path)
            work = _read_table(work_bytes, spec.path)
        except (ValueError, pd.errors.EmptyDataError) as error:  # ParserError is a ValueError
            logger.warning("%s: not a readable table (%s); listed without a figure", spec.path, error)
            lines.append(f"- `{spec.path}` ({status}; not a readable table, no figure)")
            continue
        out = out_dir / _png_name(spec.path)
        if _is_confusion(spec, work):
            _render_confusion(spec, base, work, (f"base {rev} ({short})", "workspace"), out)
        else:
            title = f"{spec.path}: {rev} ({short}, dashed) vs workspace"
            _render_curves(spec, base, work, rev, title, out)
        logger.info("%s %s: wrote %s", spec.path, status, out)
        link = Path(os.path.relpath(out, repo)).as_posix()
        lines.append(f"- `{spec.path}` ({status})\n\n  ![{spec.path}]({link})")
    return lines


def review_markdown(rev: str = "main", out_dir: str | Path = "reports/review", repo: str | Path = ".") -> str:
    """The Markdown review of the workspace against ``rev``: heading, verdicts, metrics, params, plots.

    Args:
        rev (str, "main"): git revision to compare with (branch, tag, sha, ``HEAD~1``).
        out_dir (str | Path, "reports/review"): where the PNGs of changed plots go; a relative
            path is taken relative to ``repo``. Nothing is written when no plot changed.
        repo (str | Path, "."): the git + DVC repository (dvc and git run there).

    Returns:
        Markdown text; image links are relative to ``repo``.

    Raises:
        ReviewError: ``rev`` is unknown, ``repo`` is not a git repository, dvc is missing, or a
            dvc command fails (its message is included).
    """
    repo = Path(repo).resolve()
    _, short = _resolve_rev(rev, repo)
    out_dir = Path(out_dir)
    out_dir = out_dir if out_dir.is_absolute() else repo / out_dir
    head = _git(["rev-parse", "--short", "HEAD"], repo)
    dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], repo))
    workspace = f"workspace (HEAD `{head}`{', uncommitted changes' if dirty else ''})"

    metrics, provenance_rows = _dvc_diff("metrics", rev, repo)
    params, _ = _dvc_diff("params", rev, repo)
    if provenance_rows:
        note = f"({provenance_rows} provenance entries changed: the numbers were recomputed.)"
        metrics = f"{metrics}\n\n{note}" if metrics else f"No metric changed against `{rev}`. {note}"
    plot_lines = _plots_section(rev, short, repo, out_dir)
    verdicts = verdict_section(rev, repo)

    sections = [
        f"## mer review: `{rev}` (`{short}`) → {workspace}",
        "### Verdicts",
        verdicts,
        "### Metrics",
        metrics or f"No metric changed against `{rev}`.",
        "### Params",
        params or f"No param changed against `{rev}`.",
        "### Plots",
        "\n".join(plot_lines) if plot_lines else f"No plot data changed against `{rev}`.",
    ]
    return "\n\n".join(sections) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mer.review",
        description="Print a Markdown PR review (verdicts, metrics, params, plots) against a revision.",
    )
    parser.add_argument("--rev", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--out", default="reports/review", help="folder for the PNGs of changed plots")
    parser.add_argument("--repo", default=".", help="repository root (default: current directory)")
    args = parser.parse_args()
    setup_logging()
    try:
        markdown = review_markdown(args.rev, args.out, args.repo)
    except ReviewError as error:
        raise SystemExit(f"mer.review: {error}") from None
    print(markdown, end="")


if __name__ == "__main__":
    main()
