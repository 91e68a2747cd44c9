"""A PR-review summary: what a change did to metrics, params and plots, as one Markdown block.

``python -m mer.review --rev main`` compares the workspace with a git revision and prints
Markdown ready to paste as a pull-request comment:

1. a heading naming the base revision (with its short sha) and the workspace;
2. ``dvc metrics diff <rev> --md`` (changed metrics only) or one line saying nothing changed;
3. ``dvc params diff <rev> --md``, likewise;
4. the plot data that changed: every file named in ``dvc.yaml``'s top-level ``plots:``, every
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator

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
    """The Markdown review of the workspace against ``rev``: heading, metrics, params, plots.

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

    sections = [
        f"## mer review: `{rev}` (`{short}`) → {workspace}",
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
        description="Print a Markdown PR-review summary of metrics, params and plots against a revision.",
    )
    parser.add_argument("--rev", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--out", default="reports/review", help="folder for the PNGs of changed plots")
    parser.add_argument("--repo", default=".", help="repository root (default: current directory)")
    args = parser.parse_args()
    from mer.logs import setup_logging

    setup_logging()
    try:
        markdown = review_markdown(args.rev, args.out, args.repo)
    except ReviewError as error:
        raise SystemExit(f"mer.review: {error}") from None
    print(markdown, end="")


if __name__ == "__main__":
    main()
