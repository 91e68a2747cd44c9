"""Collect a DVC experiment sweep into one Markdown table and one plot.

The sweep itself is plain DVC::

    dvc exp run --queue -S fusion.beta=0.0,0.25,0.5,1.0   # one queued experiment per value
    dvc queue start -j 1                                   # runs them (train -> transfer -> evaluate)
    python -m mer.sweep --param fusion.beta                # reports/sweep/sweep.md + sweep.png

The collector reads ``dvc exp show --json``. In DVC 3.67 that is a list of rows: the ``workspace``
first, then the baseline commit (``HEAD``), whose ``experiments`` list holds one entry per
experiment, ``{"name", "executor": {"state", ...} | None, "revs": [{"rev", "name", "data",
"error"}]}``, and each ``data`` carries ``params[<file>]["data"]`` and ``metrics[<file>]["data"]``
as nested dicts. Failed, queued and running experiments are skipped (a failed one still reports
its baseline's metrics, so keeping it would be misleading). Metrics are flattened to
``<file>:<dotted.key>``, e.g. ``metrics/source.json:test.fusion.ua``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUMMARY_FILE = "metrics/source.json"  # the default metric comes from here
MAIN_MODEL = "fusion"  # preferred when several keys end in "ua" (the main model, not a baseline)
FINISHED = {None, "success"}  # executor state of a usable experiment (None: not run by a queue)


class SweepError(ValueError):
    """A sweep cannot be collected or reported; the message says what is missing and the fix."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level with dotted keys; lists and scalars are leaves.

    >>> flatten({"test": {"fusion": {"ua": 0.9}}, "n": 3, "fractions": [10, 20]})
    {'test.fusion.ua': 0.9, 'n': 3, 'fractions': [10, 20]}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _file_values(blocks: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"<file>": {"data": {...}}}`` (params or metrics of one rev) as ``{"<file>:<key>": value}``.

    Files that DVC could not read (``{"error": ...}`` instead of ``data``) are left out.
    """
    values: dict[str, Any] = {}
    for file_name, block in (blocks or {}).items():
        data = (block or {}).get("data")
        if isinstance(data, Mapping):
            values.update({f"{file_name}:{key}": value for key, value in flatten(data).items()})
    return values


_MISSING = object()


def _param_value(params: Mapping[str, Any], param: str) -> Any:
    """The value of ``param`` (``fusion.beta`` or ``params.yaml:fusion.beta``) or ``_MISSING``."""
    if param in params:
        return params[param]
    matches = [value for key, value in params.items() if key.split(":", 1)[1] == param]
    return matches[0] if matches else _MISSING


def _row(entry: Mapping[str, Any], kind: str, baseline: str, param: str) -> dict[str, Any]:
    data = entry["data"]
    rev = str(entry.get("rev") or data.get("rev") or "")
    name = entry.get("name") or (rev if kind == "workspace" else rev[:7])
    params = _file_values(data.get("params"))
    value = _param_value(params, param)
    return {
        "experiment": name,
        "rev": rev,
        "kind": kind,
        "baseline": baseline,
        "value": None if value is _MISSING else value,
        "has_param": value is not _MISSING,
        "params": params,
        "metrics": _file_values(data.get("metrics")),
    }


def parse_exp_show(entries: Sequence[Mapping[str, Any]], param: str) -> tuple[list[dict], list[str]]:
    """Rows of a ``dvc exp show --json`` payload, and the experiments skipped (``name (state)``).

    Each row is ``{"experiment", "rev", "kind" ("workspace" | "baseline" | "experiment"),
    "baseline", "value" (of ``param``; None where absent), "has_param", "params" and "metrics"
    (both ``{"<file>:<key>": value}``)}``. The workspace row is kept only when it holds results that no
    commit or experiment has (uncommitted changes), so a clean workspace is not a duplicate point.
    """
    rows: list[dict] = []
    workspace: dict | None = None
    skipped: list[str] = []
    for entry in entries:
        if not entry.get("data"):
            skipped.append(f"{entry.get('name') or entry.get('rev')} (unreadable: {entry.get('error')})")
            continue
        if entry.get("rev") == "workspace":
            workspace = _row(entry, "workspace", "", param)
            continue
        baseline = _row(entry, "baseline", "", param)
        baseline["baseline"] = baseline["experiment"]
        rows.append(baseline)
        for experiment in entry.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            revs = experiment.get("revs") or []
            name = experiment.get("name") or (revs[0].get("rev", "")[:7] if revs else "?")
            # revs[0] is the experiment's latest commit (older ones are checkpoints)
            if state not in FINISHED or not revs or revs[0].get("error") or not revs[0].get("data"):
                skipped.append(f"{name} ({state or 'error'})")
                continue
            row = _row(revs[0], "experiment", baseline["experiment"], param)
            row["experiment"] = name
            rows.append(row)
    if workspace is not None:
        fingerprint = (repr(workspace["value"]), json.dumps(workspace["metrics"], sort_keys=True))
        known = {(repr(r["value"]), json.dumps(r["metrics"], sort_keys=True)) for r in rows}
        if fingerprint not in known:
            rows.insert(0, workspace)
    return rows, skipped


def _dvc_command() -> list[str]:
    """The DVC of this interpreter's environment if installed there, else the one on PATH."""
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    found = shutil.which("dvc")
    if found is None:
        raise SweepError("dvc not found: install it in this environment (pip install dvc) or put it on PATH")
    return [found]


def exp_show(repo: str | Path = ".") -> list[dict]:
    """The parsed output of ``dvc exp show --json`` in ``repo``."""
    command = [*_dvc_command(), "exp", "show", "--json"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise SweepError(f"`dvc exp show --json` failed in {Path(repo).resolve()}:\n{result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise SweepError(
            f"`dvc exp show --json` printed no JSON ({error}): {result.stdout[:500]!r}"
        ) from None


def collect(param: str, repo: str | Path = ".") -> list[dict]:
    """Every finished experiment of the current baseline, and the baseline, with ``param``'s value.

    Rows are as in :func:`parse_exp_show`. Raises :class:`SweepError` when there is no finished
    experiment or when no row has ``param``.
    """
    rows, skipped = parse_exp_show(exp_show(repo), param)
    for item in skipped:
        logger.warning("skipping experiment %s; see `dvc queue status` / `dvc queue logs`", item)
    if not any(row["kind"] == "experiment" for row in rows):
        pending = f" (not finished: {', '.join(skipped)})" if skipped else ""
        raise SweepError(
            f"no experiments found in {Path(repo).resolve()}{pending}; run a sweep first, e.g. "
            f"`dvc exp run --queue -S {param}=0.0,0.5,1.0` then `dvc queue start -j 1`"
        )
    if not any(row["has_param"] for row in rows):
        available = sorted({key.split(":", 1)[1] for row in rows for key in row["params"]})
        raise SweepError(
            f"param {param!r} not found in any experiment; available params: {', '.join(available)}"
        )
    return rows


def _components(key: str) -> list[str]:
    return re.split(r"[.:/]", key)


def metric_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every numeric metric key of the rows, in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        for key, value in row["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.setdefault(key, None)
    return list(keys)


def default_metric(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main model's UA in ``metrics/source.json``: a key whose last part is ``ua``.

    Of several (every baseline has its UA too), the one naming the main model ``fusion``, else
    the least nested one (``source/test/ua`` before ``source/test/audio/ua``), else the first;
    keys that merely end in ``ua`` (``fusion_minus_concat_ua``) only when nothing else does.

    >>> rows = [{"metrics": {"metrics/source.json:fusion_minus_concat_ua": 0.1,
    ...                      "metrics/source.json:test.audio.ua": 0.6,
    ...                      "metrics/source.json:test.fusion.ua": 0.9}}]
    >>> default_metric(rows)
    'metrics/source.json:test.fusion.ua'
    """
    keys = metric_keys(rows)
    summary = [key for key in keys if key.startswith(f"{SUMMARY_FILE}:")] or keys
    exact = [key for key in summary if _components(key)[-1] == "ua"]
    if exact:
        return min(
            exact,
            key=lambda k: (MAIN_MODEL not in _components(k), len(_components(k)), exact.index(k)),
        )
    loose = [key for key in summary if key.endswith("ua")]
    if loose:
        return loose[0]
    raise SweepError(f"no metric ending in 'ua' in {SUMMARY_FILE}; pass --metric, one of: {', '.join(keys)}")


def resolve_metrics(rows: Sequence[Mapping[str, Any]], metrics: str | Sequence[str] | None) -> list[str]:
    """Full ``<file>:<key>`` names for ``metrics`` (full names or keys unique across files).

    None gives :func:`default_metric`. Raises :class:`SweepError` listing the available keys.
    """
    if metrics is None:
        return [default_metric(rows)]
    keys = metric_keys(rows)
    resolved = []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        matches = [key for key in keys if key == metric] or [
            key for key in keys if key.split(":", 1)[1] == metric
        ]
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "is not a metric of any experiment"
            candidates = matches or keys
            raise SweepError(f"metric {metric!r} {problem}; available: {', '.join(candidates)}")
        resolved.append(matches[0])
    return resolved


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sort_key(row: Mapping[str, Any]) -> tuple:
    value = row["value"]
    order = {"workspace": 0, "baseline": 1, "experiment": 2}[row["kind"]]
    if _is_number(value):
        return (0, float(value), "", order, row["experiment"])
    return (1 if value is not None else 2, 0.0, str(value), order, row["experiment"])


def _cell(value: Any, metric: bool = False) -> str:
    """A table cell: metrics as ``0.9706`` (4 decimals, as in metrics/*.json), params as given."""
    if value is None:
        return "—"
    if metric and isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", r"\|")


def sweep_markdown(rows: Sequence[Mapping[str, Any]], param: str, metrics: Sequence[str]) -> str:
    """A Markdown table: experiment, ``param``'s value, each metric; sorted by the value.

    >>> rows = [{"experiment": "b", "kind": "experiment", "value": 1.0, "metrics": {"m:ua": 0.8}},
    ...         {"experiment": "a", "kind": "experiment", "value": 0.0, "metrics": {"m:ua": 0.7}}]
    >>> print(sweep_markdown(rows, "fusion.beta", ["m:ua"]))
    | experiment | fusion.beta | m:ua |
    |---|---|---|
    | a | 0.0 | 0.7000 |
    | b | 1.0 | 0.8000 |
    """
    lines = [
        "| " + " | ".join(["experiment", param, *metrics]) + " |",
        "|" + "---|" * (2 + len(metrics)),
    ]
    for row in sorted(rows, key=_sort_key):
        name = row["experiment"] if row["kind"] == "experiment" else f"{row['experiment']} ({row['kind']})"
        cells = [name, _cell(row["value"]), *(_cell(row["metrics"].get(m), metric=True) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(
    rows: Sequence[Mapping[str, Any]], param: str, metrics: Sequence[str], path: str | Path
) -> Path:
    """Each metric against ``param``'s value, one labelled point per experiment, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs under dvc/CI with no display
    import matplotlib.pyplot as plt  # after matplotlib.use, so pyplot never picks a GUI backend

    points = [row for row in sorted(rows, key=_sort_key) if row["value"] is not None]
    numeric = all(_is_number(row["value"]) for row in points)
    categories = list(dict.fromkeys(str(row["value"]) for row in points))

    def position(row: Mapping[str, Any]) -> float:
        return float(row["value"]) if numeric else float(categories.index(str(row["value"])))

    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for index, metric in enumerate(metrics):
        plotted = [row for row in points if _is_number(row["metrics"].get(metric))]
        xs = [position(row) for row in plotted]
        ys = [float(row["metrics"][metric]) for row in plotted]
        axes.plot(xs, ys, marker="o", linestyle=":", label=metric)
        for row, x, y in zip(plotted, xs, ys, strict=True) if index == 0 else ():  # names once
            axes.annotate(row["experiment"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if not numeric:
        axes.set_xticks(range(len(categories)), categories)
    axes.margins(x=0.1)  # room for the point labels at both ends
    axes.set_xlabel(param)
    axes.set_ylabel(metrics[0] if len(metrics) == 1 else "metric")
    axes.set_title(f"Sweep of {param} ({sum(r['kind'] == 'experiment' for r in points)} experiments)")
    axes.grid(alpha=0.3)
    if len(metrics) > 1:
        axes.legend(fontsize="small")
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.tight_layout()
        figure.savefig(out_path, dpi=120, format="png")
    finally:
        plt.close(figure)
    return out_path


def write_sweep(
    rows: Sequence[Mapping[str, Any]],
    param: str,
    metric: str | Sequence[str] | None,
    out_dir: str | Path,
) -> tuple[Path, Path]:
    """Write ``sweep.md`` (the table of :func:`sweep_markdown`) and ``sweep.png`` to ``out_dir``.

    ``metric`` is one name or several (``<file>:<key>`` or a key unique across files), or None
    for :func:`default_metric`. Returns ``(markdown_path, png_path)``.
    """
    metrics = resolve_metrics(rows, metric)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, png_path = out_dir / "sweep.md", out_dir / "sweep.png"
    markdown_path.write_text(sweep_markdown(rows, param, metrics) + "\n")
    plot_sweep(rows, param, metrics, png_path)
    logger.info("wrote %s and %s", markdown_path, png_path)
    return markdown_path, png_path


def main(argv: Sequence[str] | None = None) -> str:
    """``python -m mer.sweep --param fusion.beta``: write the sweep's table and plot, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--param", required=True, help="the swept param, e.g. fusion.beta")
    parser.add_argument(
        "--metric",
        action="append",
        help="<file>:<key> or a key unique across metrics files (repeatable); default: the main UA",
    )
    parser.add_argument("--out", default="reports/sweep", help="folder for sweep.md and sweep.png")
    parser.add_argument("--repo", default=".", help="the DVC repository holding the experiments")
    args = parser.parse_args(argv)
    from mer.logs import setup_logging

    setup_logging()
    try:
        rows = collect(args.param, args.repo)
        markdown_path, _ = write_sweep(rows, args.param, args.metric, args.out)
    except SweepError as error:
        parser.exit(2, f"error: {error}\n")
    markdown = markdown_path.read_text()
    print(markdown, end="")
    return markdown


if __name__ == "__main__":
    main()
